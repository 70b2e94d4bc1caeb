"""The seam between our runners and the PaddleX predictors that hold them (issue 11).

PaddleX 3.7 builds a model's runner in ``create_predictor`` (our ``build_runner`` answers) and
passes it to the predictor's constructor; ``RunnerPredictor.__init__`` stores it as
``self.runner`` *before* the subclass builds its pre/post-processing (``pre_tfs``, ``post_op``,
``preprocessors``), and ``BasePredictor.apply`` then calls ``self.process`` per batch. So:

* ``RunnerPredictor.__init__`` is wrapped: when the runner it receives is ours, the predictor's
  class gets a wrapped ``process`` (once per class);
* the wrapped ``process``, on an instance holding our runner: the first time, adapts the
  predictor if the runner runs a fused graph (``fused_model_type``) and hands the runner the
  stock steps it took out (:meth:`FusedEngineRunner.claim`), or abandons the engine if the
  adaptation fails; every time, adds the call's wall time to the stage timers (host time =
  ``process`` time minus the runner's own time, :func:`~.report.take_stage_timings`).

Instances holding any other runner run the original ``process`` untouched.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Any

from ..log import get_logger
from ..model_types import ModelType
from .report import add_process_time, is_our_runner

log = get_logger("integration")
_PATCHED = "__paddleocr_trt_patched__"
_SEEN = "_paddleocr_trt_runner_seen"
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Wrap ``RunnerPredictor.__init__`` (idempotent; called when we build a runner, by which
    time PaddleX's model package is fully imported)."""
    global _installed
    if _installed:
        return
    with _lock:
        if _installed:
            return
        from paddlex.inference.models.predictors.runner_predictor import RunnerPredictor

        original = RunnerPredictor.__init__
        if not getattr(original, _PATCHED, False):

            @functools.wraps(original)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                original(self, *args, **kwargs)
                if _is_ours(self.__dict__.get("runner")):
                    _wrap_process(type(self))

            setattr(__init__, _PATCHED, True)
            RunnerPredictor.__init__ = __init__
        _installed = True


def _is_ours(runner: object) -> bool:
    return runner is not None and is_our_runner(runner)


def _wrap_process(cls: type) -> None:
    original = cls.process
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    def process(self: Any, *args: Any, **kwargs: Any) -> Any:
        runner = self.__dict__.get("runner")
        if not _is_ours(runner):
            return original(self, *args, **kwargs)
        if self.__dict__.get(_SEEN) is not runner:
            prepare(self, runner)
        from ..fusion.predictors import process_call
        from ..fusion.views import input_view_scope

        start = time.perf_counter()
        try:
            # adapted steps read its arguments; its batch may go straight into engine buffers
            with process_call(self, *args, **kwargs), input_view_scope():
                return original(self, *args, **kwargs)
        finally:
            add_process_time(runner.model_name, time.perf_counter() - start)

    setattr(process, _PATCHED, True)
    with _lock:
        if not getattr(cls.process, _PATCHED, False):
            cls.process = process
            log.debug("timing and adapting %s.process", cls.__name__)


def ensure_prepared(predictor: Any) -> None:
    """Adapt ``predictor`` now if it holds our runner and was not yet: for callers that use its
    steps (``pre_tfs``, ``post_op``...) without going through ``process`` (the pipelined path)."""
    runner = predictor.__dict__.get("runner")
    if _is_ours(runner) and predictor.__dict__.get(_SEEN) is not runner:
        prepare(predictor, runner)


def prepare(predictor: Any, runner: Any) -> None:
    """Adapt ``predictor`` to ``runner``'s fused graph (if it runs one), once per runner."""
    predictor.__dict__[_SEEN] = runner
    mtype = getattr(runner, "fused_model_type", None)
    if not isinstance(mtype, ModelType):
        return
    from ..fusion import predictors as fusion
    from .fused_runner import host_steps_of

    adapt = {
        ModelType.DETECTION: fusion.adapt_text_det_predictor,
        ModelType.RECOGNITION: fusion.adapt_text_rec_predictor,
        ModelType.CLASSIFICATION: fusion.adapt_textline_orientation_predictor,
    }[mtype]
    try:
        adapt(predictor)
        record = getattr(predictor, fusion.ADAPTED_ATTR)
    except Exception as exc:
        runner.abandon(
            f"its {type(predictor).__name__} could not be adapted to the fused graph "
            f"({type(exc).__name__}: {exc})"
        )
        return
    runner.claim(host_steps_of(record))
    log.debug("%s adapted to its fused %s graph", type(predictor).__name__, mtype.value)
