"""Our runner over a fused graph, built so the user's results never depend on what happens.

An engine over a fused graph (:mod:`paddleocr_trt.fusion`) only works with a PaddleX predictor
adapted to it (det/cls send uint8 NHWC, rec decodes (index, max prob)); the adaptation happens in
:mod:`.predictor_hook` when the predictor first runs. Every other path ends in native Paddle fed
exactly what stock PaddleX would feed it:

* the predictor is adapted (:meth:`FusedEngineRunner.claim`) and the engine fails at inference,
  or TensorRT meets a shape no profile covers: :class:`HostNormalizingNative` normalises the
  uint8 batch on the host with the predictor's *own* stock steps (the ones the adaptation took
  out) and runs Paddle; rec gets Paddle's softmax, which the adapted decoder also accepts
  (same first-index argmax as ``CTCLabelDecode``);
* the predictor is never adapted (an unknown predictor class, an adaptation that raised, a
  caller that bypasses ``process``): the first call abandons the engine for good (one warning)
  and Paddle gets the stock float input, returning the stock outputs.

Why not :func:`~paddleocr_trt.fusion.restore_predictor` on fallback: the failing call's input
is already uint8 by then and must be answered; normalising on the host answers it and every
later call identically, without reaching back into the predictor from its runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend.base import BaseRunner
from ..log import get_logger, warn_once
from ..model_types import ModelType
from .fallback import GuardedRunner, LazyNativeRunner, on_cpu

log = get_logger("integration")

HostSteps = Callable[[np.ndarray], np.ndarray]


class HostNormalizingNative(BaseRunner):
    """Native Paddle behind a fused engine; accepts what the adapted predictor sends.

    A uint8 NHWC batch goes through ``host_steps`` (the predictor's stock Normalize, ToCHW and
    ToBatch, handed over by :meth:`FusedEngineRunner.claim`) first; a float batch (from a
    predictor that was never adapted) goes to Paddle as it is.
    """

    backend = "paddle"

    def __init__(self, native: LazyNativeRunner) -> None:
        super().__init__(native.name)
        self.native = native
        self.host_steps: HostSteps | None = None

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        inputs = list(inputs)
        if inputs and inputs[0].dtype == np.uint8 and inputs[0].ndim == 4:
            if self.host_steps is None:
                raise RuntimeError(
                    f"{self.name}: got uint8 images but no host normalisation was handed over"
                )
            # Paddle takes the normalised image only (det's db_thresh is the fused graph's)
            inputs = [self.host_steps(inputs[0])]
        return self.native.infer(inputs)

    def close(self) -> None:
        self.native.close()
        super().close()


class FusedEngineRunner(GuardedRunner):
    """:class:`GuardedRunner` over an engine whose graph is fused for ``model_type``.

    ``fused_model_type`` is the marker :mod:`.predictor_hook` reads to adapt the predictor.
    """

    def __init__(
        self,
        primary: BaseRunner,
        fallback: HostNormalizingNative,
        model_name: str,
        model_type: ModelType,
    ) -> None:
        super().__init__(primary, fallback, model_name)
        self.host = fallback
        self.fused_model_type = model_type
        self.claimed = False
        #: calls answered by native Paddle because their input was not the fused graph's
        self.stock_inputs = 0

    def claim(self, host_steps: HostSteps | None) -> None:
        """The predictor is adapted; ``host_steps`` normalise its uint8 batches for Paddle."""
        self.host.host_steps = host_steps
        self.claimed = True

    def abandon(self, why: str) -> None:
        """Run native Paddle for this model from now on (one warning)."""
        if self.failure is not None:
            return
        self.failure = why
        warn_once(
            ("fused-engine-abandoned", self.name),
            "%s: %s; running native Paddle inference for this model instead.",
            self.name,
            why,
        )
        self._close_primary()

    def input_views(self, shapes: Sequence[Sequence[int]]) -> Any:
        """The engine's input lease (``TensorRTRunner.input_views``) while it is in use and
        the predictor is adapted; None otherwise (after a fallback: plain arrays)."""
        if self.failure is not None or not self.claimed:
            return None
        ask = getattr(self.primary, "input_views", None)
        return ask(shapes) if callable(ask) else None

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not self.claimed and self.failure is None:
            self.abandon(
                f"the {self.primary.backend} engine runs a fused graph but its PaddleX "
                "predictor was not adapted to it"
            )
        if self.claimed and self._stock_input(inputs):
            return self.host.infer(inputs)
        outputs = super().infer(inputs)
        if self.fused_model_type is ModelType.DETECTION and len(outputs) == 2:
            outputs[0] = self._resident(outputs[0])
        return outputs

    def _stock_input(self, inputs: Sequence[np.ndarray]) -> bool:
        """A float batch the adapted steps built with PaddleX's stock steps, for images the
        fused graph does not take (``fusion.predictors.fused_takes``): native Paddle answers
        it, exactly as plain PaddleOCR would; the engine stays in use for other calls."""
        if self.fused_model_type is ModelType.RECOGNITION or not inputs:
            return False
        first = inputs[0]
        if getattr(first, "dtype", np.uint8) == np.uint8:
            return False
        if not self.stock_inputs:
            log.info(
                "%s: an input the fused %s graph does not take (%s); PaddleX's stock "
                "pre-processing and native Paddle answer such inputs",
                self.name,
                self.primary.backend,
                getattr(first, "dtype", "?"),
            )
        self.stock_inputs += 1
        return True

    def _resident(self, prob: object) -> object:
        """det's map as a resident output read window by window (``postprocess.db``).

        An engine that computed in host memory (ONNX Runtime on the CPU) copies nothing: only
        the windows read count as output bytes. Any other engine that returned the whole map
        as an array copied it all, and it is counted so.
        """
        from ..postprocess.resident import HostResidentMap
        from .report import add_output_bytes

        def count(nbytes: int) -> None:
            add_output_bytes(self.name, nbytes)

        if not isinstance(prob, np.ndarray):  # resident where the engine keeps it
            if hasattr(prob, "on_fetch"):
                prob.on_fetch = count  # type: ignore[attr-defined]
            return EngineTimedMap(prob, self.name)
        if not on_cpu(self.primary):
            count(prob.nbytes)
        return HostResidentMap(prob, on_fetch=count)


class EngineTimedMap:
    """A resident map whose box sums count as its model's engine time: they run in the engine
    that keeps the map (a graph on ONNX Runtime, a kernel on the GPU), not in host code."""

    def __init__(self, inner: object, model_name: str) -> None:
        self.inner = inner
        self.model_name = model_name

    def masked_sums(self, windows: Sequence) -> np.ndarray:
        from .report import add_engine_time

        start = time.perf_counter()
        try:
            return self.inner.masked_sums(windows)  # type: ignore[attr-defined]
        finally:
            add_engine_time(self.model_name, time.perf_counter() - start)

    def __getattr__(self, name: str) -> object:  # shape, dtype, window, release, ...
        return getattr(self.inner, name)


def host_steps_of(record: object) -> HostSteps | None:
    """The stock pre-processing steps an ``adapt_*`` call took out, as one batch function."""
    old_ops = getattr(record, "old_ops", None) or {}
    if not all(k in old_ops for k in ("Normalize", "ToCHW", "ToBatch")):
        return None

    def steps(batch: np.ndarray) -> np.ndarray:
        imgs = old_ops["Normalize"](imgs=list(batch))
        imgs = old_ops["ToCHW"](imgs=imgs)
        return old_ops["ToBatch"](imgs=imgs)[0]

    return steps
