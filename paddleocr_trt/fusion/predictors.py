"""Adapt one live PaddleX predictor to an engine over a fused graph (per instance).

Why per instance: PaddleX's predictors keep their pre/post-processing in plain instance
attributes that ``process`` looks up on every call (det: ``pre_tfs["Normalize"/"ToCHW"/
"ToBatch"]``, text-line orientation: ``preprocessors[...]``, rec: ``post_op``), and call the
model as ``self.runner(x=x)``. Swapping exactly those entries changes what crosses the engine
boundary and nothing else: reading, resizing, sorting, cropping, DB post-processing and result
objects stay PaddleX's own code, and other instances are untouched.

* det / orientation: the host stops after resizing; the batch is the uint8 NHWC stack the fused
  graph normalises itself (4x fewer bytes than float32 NCHW).
* det also: ``ToBatch`` adds the ``db_thresh`` input (the call's ``thresh``, read from the
  ``process`` call in flight, :data:`PROCESS_CALL`) and ``post_op`` becomes
  :class:`~paddleocr_trt.postprocess.db.BitmapDBPostProcess` (packed bitmap + resident map).
* rec: ``post_op`` becomes :class:`~paddleocr_trt.postprocess.ctc.ArgmaxCTCDecoder` over the
  same character list, fed (index, max prob) instead of the softmax.

The caller owns the predictor's previous runner when it passes a new one.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..backend.onnx.fuse import CTC_INDEX_OUTPUT, CTC_PROB_OUTPUT, UINT8_INPUT
from ..backend.onnx.fuse_db import DB_THRESH_INPUT, db_thresh_input
from ..log import get_logger
from ..postprocess.ctc import ArgmaxCTCDecoder
from ..postprocess.db import BitmapDBPostProcess
from .views import leased_views

log = get_logger("fusion")

#: Attribute set on an adapted predictor (what was replaced); refuses a second pass.
ADAPTED_ATTR = "_paddleocr_trt_fused"
#: The predictor ``process`` call in flight in this thread: (predictor, args, kwargs). Set by
#: the hook around every ``process`` of a predictor holding our runner, and by
#: :func:`process_call` for callers that run the steps themselves (the pipelined path).
PROCESS_CALL: contextvars.ContextVar[tuple[Any, tuple, dict] | None] = contextvars.ContextVar(
    "paddleocr_trt_process_call", default=None
)


@contextlib.contextmanager
def process_call(predictor: Any, *args: Any, **kwargs: Any) -> Iterator[None]:
    """Run the block as if inside ``predictor.process(*args, **kwargs)`` (its arguments are
    what the adapted steps read, e.g. det's ``thresh``)."""
    token = PROCESS_CALL.set((predictor, args, kwargs))
    try:
        yield
    finally:
        PROCESS_CALL.reset(token)


@functools.lru_cache(maxsize=32)
def _process_signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.process)


def call_argument(predictor: Any, name: str) -> Any:
    """Argument ``name`` of ``predictor``'s ``process`` call in flight (None when none is)."""
    call = PROCESS_CALL.get()
    if call is None or call[0] is not predictor:
        return None
    _, args, kwargs = call
    try:
        bound = _process_signature(type(predictor)).bind_partial(predictor, *args, **kwargs)
    except TypeError:
        return kwargs.get(name)
    return bound.arguments.get(name)


def fused_takes(img: np.ndarray, *, rgba: bool) -> bool:
    """Whether the fused graph takes this resized image: uint8 HxWx3 (HxWx4 too where the stock
    normaliser converts RGBA -> RGB first, ``rgba``). Anything else takes PaddleX's stock steps."""
    channels = (3, 4) if rgba else (3,)
    return img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in channels


class KeepUint8:
    """Stands in for PaddleX's normalise step: the fused graph normalises.

    Keeps the one host-side conversion det's ``NormalizeImage`` does before normalising
    (RGBA -> RGB, ``rgba=True``) so 4-channel inputs behave as in stock PaddleX. A batch holding
    an image the fused graph does not take (float or uint16 arrays, 1/2/5 channels, 2-D) goes
    through ``stock``, PaddleX's own step (float32 out, or the stock exception); the steps after
    it and the runner (:class:`~paddleocr_trt.integration.fused_runner.FusedEngineRunner`) see
    the float batch and take the stock path too.
    """

    def __init__(self, stock: Any = None, *, rgba: bool = True) -> None:
        self.stock = stock
        self.rgba = rgba

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.stock is not None and not all(fused_takes(i, rgba=self.rgba) for i in imgs):
            return self.stock(imgs=imgs)
        out = []
        for img in imgs:
            if self.rgba and img.ndim == 3 and img.shape[2] == 4:
                img = cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"fused preprocessing needs HxWx3 images, got {img.shape}")
            out.append(img)
        return out


def _stock_batch(imgs: Sequence[np.ndarray]) -> bool:
    """A batch :class:`KeepUint8` handed to PaddleX's normaliser (float, not uint8)."""
    return any(img.dtype != np.uint8 for img in imgs)


class KeepHWC:
    """Stands in for ``ToCHWImage``: the fused graph transposes (a stock batch: ``stock``)."""

    def __init__(self, stock: Any = None) -> None:
        self.stock = stock

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.stock is not None and _stock_batch(imgs):
            return self.stock(imgs=imgs)
        return list(imgs)


def _runner_of(predictor: Any) -> Any:
    return getattr(predictor, "runner", None) if predictor is not None else None


def _same_shapes(imgs: Sequence[np.ndarray]) -> bool:
    return all(img.shape == imgs[0].shape for img in imgs)


class StackUint8:
    """Stands in for PaddleX's ``ToBatch``: ``np.stack`` without the float32 cast, written
    straight into the engine's pinned input buffer when its runner leases one (``views.py``)."""

    def __init__(self, predictor: Any = None, stock: Any = None) -> None:
        self.predictor = predictor
        self.stock = stock

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.stock is not None and _stock_batch(imgs):
            return self.stock(imgs=imgs)  # PaddleX's float32 NCHW batch: the stock path
        return self._stack(imgs, [])

    def _stack(self, imgs: Sequence[np.ndarray], extras: list[np.ndarray]) -> list[np.ndarray]:
        """[the uint8 stack, *extras] (the engine's further inputs), into leased views when
        the runner gives them."""
        if not imgs:
            return []
        for img in imgs:
            if img.dtype != np.uint8:
                raise TypeError(
                    f"the fused engine takes uint8 images, the resized image is {img.dtype}"
                )
        if _same_shapes(imgs):
            views = leased_views(
                _runner_of(self.predictor),
                [(len(imgs), *imgs[0].shape)] + [e.shape for e in extras],
                [np.uint8] + [e.dtype for e in extras],
            )
            if views is not None:
                np.stack(imgs, axis=0, out=views[0])
                for view, extra in zip(views[1:], extras, strict=True):
                    view[...] = extra
                return views
        return [np.ascontiguousarray(np.stack(imgs, axis=0)), *extras]


class StackUint8WithThresh(StackUint8):
    """det's ``ToBatch``: the uint8 stack plus ``db_thresh``, the threshold stock would apply
    (``thresh or predictor.thresh``, then ``DBPostProcess``'s own, as PaddleX chains them);
    both written into the engine's input buffers when its runner leases them."""

    def __init__(self, predictor: Any, stock_post_op: Any, stock: Any = None) -> None:
        super().__init__(predictor, stock)
        self.stock_post_op = stock_post_op

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.stock is not None and _stock_batch(imgs):
            return self.stock(imgs=imgs)  # no db_thresh: native Paddle takes the map's input
        thresh = (
            call_argument(self.predictor, "thresh")
            or getattr(self.predictor, "thresh", None)
            or self.stock_post_op.thresh
        )
        return self._stack(imgs, [db_thresh_input(thresh, len(imgs))])


class PadStackFloat32:
    """rec's ``ToBatch``: PaddleX's own (zero-pad every CHW image to the widest, stack, cast
    to float32), written into the engine's pinned input buffer when its runner leases one;
    otherwise PaddleX's step itself runs. Same values either way."""

    def __init__(self, predictor: Any, stock: Any) -> None:
        self.predictor = predictor
        self.stock = stock

    def __call__(self, imgs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if imgs and all(img.ndim == 3 and img.shape[:2] == imgs[0].shape[:2] for img in imgs):
            width = max(img.shape[2] for img in imgs)
            shape = (len(imgs), *imgs[0].shape[:2], width)
            views = leased_views(_runner_of(self.predictor), [shape], [np.float32])
            if views is not None:
                out = views[0]
                for row, img in zip(out, imgs, strict=True):
                    row[:, :, : img.shape[2]] = img  # the cast astype(float32) makes
                    row[:, :, img.shape[2] :] = 0
                return views
        return self.stock(imgs=imgs)


@dataclass
class _Adapted:
    """What an adaptation replaced, so :func:`restore_predictor` can put it back."""

    what: str
    ops: dict[str, Any] | None = None  # the pre-processing dict that was edited
    old_ops: dict[str, Any] = field(default_factory=dict)
    old_post_op: Any = None
    old_runner: Any = None


def _check_unadapted(predictor: Any) -> None:
    done = getattr(predictor, ADAPTED_ATTR, None)
    if done is not None:
        raise ValueError(f"{type(predictor).__name__} is already adapted ({done.what})")


def _check_runner(runner: Any, *, inputs: list[str] | None, outputs: list[str] | None) -> None:
    """Refuse a runner over the unfused graph early, when it says what its tensors are."""
    names_in = getattr(runner, "input_names", None)
    names_out = getattr(runner, "output_names", None)
    if inputs is not None and names_in is not None and list(names_in) != inputs:
        raise ValueError(f"{runner!r} takes {list(names_in)}; the fused graph takes {inputs}")
    if outputs is not None and names_out is not None and list(names_out) != outputs:
        raise ValueError(f"{runner!r} returns {list(names_out)}; the fused graph returns {outputs}")


def _set_runner(predictor: Any, runner: Any | None, record: _Adapted) -> None:
    if runner is not None:
        record.old_runner = predictor.runner
        predictor.runner = runner


_UINT8_STEPS = ("Normalize", "ToCHW", "ToBatch")


def _adapt_preprocessing(
    predictor: Any,
    ops: Any,
    runner: Any | None,
    kind: str,
    inputs: tuple[str, ...] = (),
    *,
    rgba: bool,
) -> Any:
    if not isinstance(ops, dict) or "Resize" not in ops:
        raise TypeError(f"{type(predictor).__name__} is not a PaddleX {kind} predictor")
    _check_unadapted(predictor)
    _check_runner(runner, inputs=[UINT8_INPUT, *inputs], outputs=None)
    missing = [k for k in _UINT8_STEPS if k not in ops]
    if missing:
        raise ValueError(
            f"{type(predictor).__name__} has no {missing} preprocessing step to move into the "
            "engine"
        )
    record = _Adapted("uint8 NHWC input", ops=ops, old_ops={k: ops[k] for k in _UINT8_STEPS})
    old = record.old_ops
    ops["Normalize"] = KeepUint8(old["Normalize"], rgba=rgba)
    ops["ToCHW"] = KeepHWC(old["ToCHW"])
    ops["ToBatch"] = StackUint8(predictor, old["ToBatch"])
    _set_runner(predictor, runner, record)
    setattr(predictor, ADAPTED_ATTR, record)
    log.debug("%s predictor %s feeds uint8 NHWC", kind, getattr(predictor, "model_name", "?"))
    return predictor


def adapt_text_det_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Make a ``TextDetRunnerPredictor`` feed uint8 NHWC + ``db_thresh`` to a det engine fused
    by :func:`~paddleocr_trt.fusion.graphs.fuse_model` and post-process its (resident map,
    packed bitmap)."""
    post_op = getattr(predictor, "post_op", None)
    if not callable(getattr(post_op, "boxes_from_bitmap", None)):
        raise TypeError(
            f"{type(predictor).__name__} is not a PaddleX text detection predictor "
            "(no DBPostProcess)"
        )
    ops = getattr(predictor, "pre_tfs", None)
    # det's NormalizeImage converts RGBA -> RGB before normalising
    _adapt_preprocessing(predictor, ops, runner, "text detection", (DB_THRESH_INPUT,), rgba=True)
    record = getattr(predictor, ADAPTED_ATTR)
    predictor.pre_tfs["ToBatch"] = StackUint8WithThresh(
        predictor, post_op, record.old_ops["ToBatch"]
    )
    record.old_post_op = post_op
    predictor.post_op = BitmapDBPostProcess(post_op)
    return predictor


def adapt_textline_orientation_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Make a ``ClasRunnerPredictor`` (text-line orientation) feed uint8 NHWC (RGB, as its
    reader converts) to an engine fused by ``prepend_uint8_normalize``."""
    # its Normalize takes exactly 3 channels (a 4-channel crop raises there, as stock)
    return _adapt_preprocessing(
        predictor, getattr(predictor, "preprocessors", None), runner, "classification", rgba=False
    )


def adapt_text_rec_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Make a ``TextRecRunnerPredictor`` decode (index, max prob) from an engine fused by
    :func:`~paddleocr_trt.backend.onnx.fuse.append_ctc_argmax`.

    The decoder also accepts one full softmax output, so a fallback to an unfused engine keeps
    working without :func:`restore_predictor`.
    """
    post_op = getattr(predictor, "post_op", None)
    character = getattr(post_op, "character", None)
    if character is None or not hasattr(predictor, "pre_tfs"):
        raise TypeError(
            f"{type(predictor).__name__} is not a PaddleX CTC text recognition predictor"
        )
    _check_unadapted(predictor)
    _check_runner(runner, inputs=None, outputs=[CTC_INDEX_OUTPUT, CTC_PROB_OUTPUT])
    record = _Adapted("CTC argmax output", old_post_op=post_op)
    predictor.post_op = ArgmaxCTCDecoder(
        character, reverse=bool(getattr(post_op, "reverse", False))
    )
    ops = predictor.pre_tfs
    if isinstance(ops, dict) and "ToBatch" in ops:  # the padded batch straight into the engine
        record.ops, record.old_ops = ops, {"ToBatch": ops["ToBatch"]}
        ops["ToBatch"] = PadStackFloat32(predictor, ops["ToBatch"])
    _set_runner(predictor, runner, record)
    setattr(predictor, ADAPTED_ATTR, record)
    return predictor


def restore_predictor(predictor: Any, runner: Any | None = None) -> Any:
    """Undo an ``adapt_*`` call: PaddleX's own steps come back (e.g. to fall back to an unfused
    engine). ``runner`` replaces the current runner; without it, the runner the adaptation
    replaced comes back if there was one. The caller owns the runner taken out."""
    record = getattr(predictor, ADAPTED_ATTR, None)
    if record is None:
        raise ValueError(f"{type(predictor).__name__} is not adapted")
    if record.ops is not None:
        record.ops.update(record.old_ops)
    if record.old_post_op is not None:
        predictor.post_op = record.old_post_op
    if runner is not None:
        predictor.runner = runner
    elif record.old_runner is not None:
        predictor.runner = record.old_runner
    delattr(predictor, ADAPTED_ATTR)
    return predictor
