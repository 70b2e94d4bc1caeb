"""Real validation tensors, preprocessed by PaddleX's own processors.

Validating an artifact on random noise says nothing about OCR: a det map on noise is all
background, a rec model on noise emits blanks. So the inputs are real images put through the
exact preprocessing PaddleX applies in the pipeline (its ``ReadImage``, ``DetResizeForTest``,
``NormalizeImage``, ``OCRReisizeNormImg``, ``Resize``/``Normalize``, ``ToBatch``), at several
shapes: small, typical, and the largest a profile admits (``max_shape``), since an engine that
is right at 320 px can still be wrong at its profile's edge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..log import get_logger
from ..model_types import ModelType

log = get_logger("comparator")

#: Long-side lengths for det inputs: small and typical (PaddleX's PP-OCRv4 default is 960).
DEFAULT_DET_SIDES: tuple[int, ...] = (320, 960)
#: The shape det batches (N > 1) are resized to: images differ in size, a batch cannot.
DET_BATCH_SHAPE: tuple[int, int] = (640, 640)
DEFAULT_REC_IMAGE_SHAPE: tuple[int, int, int] = (3, 48, 320)
DEFAULT_CLS_SIZE: tuple[int, int] = (192, 48)  # (width, height), as in inference.yml

_IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": 1 / 255}
_HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "scale": 1 / 255}


@dataclass(frozen=True, repr=False)
class EncodedImage:
    """An image file's bytes in memory (``name`` for messages): decoded exactly as PaddleX's
    ``ReadImage`` decodes the file (:func:`decode_image`), so no path is opened to read it.
    The validation images the cache renders are handed on this way (issue 19)."""

    name: str
    data: bytes

    def __repr__(self) -> str:
        return f"EncodedImage({self.name!r}, {len(self.data)} bytes)"


ImageInput = str | Path | np.ndarray | EncodedImage


def build_validation_inputs(
    model_type: ModelType | str,
    images: Sequence[ImageInput],
    *,
    model_dir: str | Path | None = None,
    shapes: Sequence[int] | None = None,
    batch_sizes: Sequence[int] = (1,),
    max_shape: Sequence[int] | None = None,
    boxes: Sequence[Sequence[np.ndarray]] | None = None,
) -> list[np.ndarray]:
    """Float32 NCHW tensors ready for ``runner.infer([x])``.

    images: file paths (read as PaddleX reads them), :class:`EncodedImage` (a file's bytes,
        decoded the same way) or BGR uint8 arrays.
    model_dir: a model dir whose ``inference.yml`` supplies the preprocessing parameters
        (PP-OCR defaults otherwise).
    shapes: det only: long-side lengths (default :data:`DEFAULT_DET_SIDES`).
    batch_sizes: batch sizes to build (det batches use :data:`DET_BATCH_SHAPE`; rec batches
        group crops by aspect ratio like the pipeline and pad to the widest).
    max_shape: ``(N, C, H, W)``, the profile's largest shape: adds one input of exactly that
        shape and keeps every other input within it.
    boxes: rec/cls only: text polygons per image (e.g. PaddleX det ``dt_polys``); without them
        the crops are the horizontal ink bands of each image (no model needed).
    """
    mtype = ModelType.parse(model_type)
    config = _load_config(model_dir)
    if not images:
        raise ValueError("build_validation_inputs needs at least one image")
    if max_shape is not None and len(max_shape) != 4:
        raise ValueError(f"max_shape must be (N, C, H, W), got {tuple(max_shape)}")
    if mtype is ModelType.DETECTION:
        tensors = _det_inputs(images, config, shapes or DEFAULT_DET_SIDES, batch_sizes, max_shape)
    else:
        crops = _crops(images, boxes)
        if not crops:
            raise ValueError("no text crops found in the validation images")
        if mtype is ModelType.RECOGNITION:
            tensors = _rec_inputs(crops, config, batch_sizes, max_shape)
        else:
            tensors = _cls_inputs(crops, config, batch_sizes, max_shape)
    log.debug(
        "%s validation inputs: %s", mtype.value, [tuple(int(d) for d in t.shape) for t in tensors]
    )
    return tensors


# -- configuration --------------------------------------------------------------------------


def _load_config(model_dir: Any) -> dict[str, Any]:
    """inference.yml of a resolved model (from memory) or a model dir; {} for None."""
    from ..model_resolve import model_config

    return model_config(model_dir)


def _op_args(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    """Arguments of the preprocessing op ``name`` in inference.yml (None if absent)."""
    for op in (config.get("PreProcess") or {}).get("transform_ops") or []:
        if isinstance(op, dict) and name in op:
            return dict(op[name] or {})
    return None


def _read_images(images: Sequence[ImageInput], fmt: str) -> list[np.ndarray]:
    from paddlex.inference.common.reader import ReadImage

    reader = ReadImage(format=fmt)
    out = []
    for image in images:
        if isinstance(image, EncodedImage):
            out.append(decode_image(image, fmt))
        elif isinstance(image, np.ndarray):
            out.append(reader.read(image))
        else:
            out.append(reader.read(str(image)))
    return out


def decode_image(image: EncodedImage, fmt: str) -> np.ndarray:
    """What PaddleX's ``ReadImage(format=fmt).read(path)`` returns for a file holding
    ``image.data``: its OpenCV reader (``np.frombuffer`` + ``cv2.imdecode`` with
    ``IMREAD_COLOR``, or ``IMREAD_GRAYSCALE`` for GRAY), then BGR -> RGB for RGB."""
    import cv2

    flags = {"BGR": cv2.IMREAD_COLOR, "RGB": cv2.IMREAD_COLOR, "GRAY": cv2.IMREAD_GRAYSCALE}
    blob = cv2.imdecode(np.frombuffer(image.data, np.uint8), flags=flags[fmt])
    if blob is None:
        raise ValueError(f"Image read Error: {image.name} cannot be decoded")
    if fmt == "RGB":
        if blob.ndim != 3:
            raise RuntimeError("Array is not 3-dimensional.")
        blob = cv2.cvtColor(blob, cv2.COLOR_BGR2RGB)
    return blob


# -- detection ------------------------------------------------------------------------------


def _det_inputs(
    images: Sequence[ImageInput],
    config: dict[str, Any],
    sides: Sequence[int],
    batch_sizes: Sequence[int],
    max_shape: Sequence[int] | None,
) -> list[np.ndarray]:
    finish = det_finisher(config)
    return [finish(r) for r in det_resized(images, config, sides, batch_sizes, max_shape)]


def det_finisher(config: dict[str, Any]) -> Callable[[list[np.ndarray]], np.ndarray]:
    """PaddleX's det steps after resizing (normalise, CHW, batch) with inference.yml's values."""
    from paddlex.inference.models.common import ToBatch, ToCHWImage
    from paddlex.inference.models.text_detection.processors import NormalizeImage

    norm = {**_IMAGENET, **(_op_args(config, "NormalizeImage") or {})}
    normalize = NormalizeImage(
        mean=norm["mean"], std=norm["std"], scale=norm["scale"], order=norm.get("order", "")
    )
    to_chw, to_batch = ToCHWImage(), ToBatch()

    def finish(resized: list[np.ndarray]) -> np.ndarray:
        return to_batch(imgs=to_chw(imgs=normalize(imgs=resized)))[0]

    return finish


def det_resized(
    images: Sequence[ImageInput],
    config: dict[str, Any],
    sides: Sequence[int],
    batch_sizes: Sequence[int],
    max_shape: Sequence[int] | None,
) -> Iterator[list[np.ndarray]]:
    """The resized (still uint8 HWC) images of each det input, as PaddleX's resize leaves them."""
    from paddlex.inference.models.text_detection.processors import DetResizeForTest

    decode = _op_args(config, "DecodeImage") or {}
    raw = _read_images(images, decode.get("img_mode", "BGR"))
    max_hw = (int(max_shape[2]), int(max_shape[3])) if max_shape is not None else None
    max_side_limit = min(max_hw) if max_hw else 4000
    for side in sides:
        resize = DetResizeForTest(limit_side_len=int(side), limit_type="max")
        for image in raw:
            resized, _shape = resize(imgs=[image], max_side_limit=max_side_limit)
            yield resized
    for batch in (b for b in batch_sizes if b > 1):
        shape = DET_BATCH_SHAPE
        if max_hw:
            shape = (min(shape[0], max_hw[0]), min(shape[1], max_hw[1]))
        resize = DetResizeForTest(image_shape=list(shape))
        yield resize(imgs=_cycle(raw, batch))[0]
    if max_shape is not None:
        resize = DetResizeForTest(image_shape=list(max_hw))
        yield resize(imgs=_cycle(raw, int(max_shape[0])))[0]


def _cycle(items: Sequence[Any], count: int) -> list[Any]:
    return [items[i % len(items)] for i in range(count)]


# -- text-line crops -------------------------------------------------------------------------


def _crops(
    images: Sequence[ImageInput], boxes: Sequence[Sequence[np.ndarray]] | None
) -> list[np.ndarray]:
    """BGR text-line crops: from given polygons (PaddleX's own cropper) or from ink bands."""
    raw = _read_images(images, "BGR")
    if boxes is not None:
        if len(boxes) != len(raw):
            raise ValueError(f"got boxes for {len(boxes)} images but {len(raw)} images")
        from paddlex.inference.pipelines.components import CropByPolys

        cropper = CropByPolys(det_box_type="quad")
        crops = []
        for image, polys in zip(raw, boxes, strict=True):
            if len(polys):
                crops.extend(cropper(image, [np.asarray(p, dtype=np.float32) for p in polys]))
        return [c for c in crops if c.size]
    return [crop for image in raw for crop in _ink_bands(image)]


def _ink_bands(image: np.ndarray, min_height: int = 6) -> Iterator[np.ndarray]:
    """Horizontal bands of rows holding ink, each trimmed to its ink columns plus a margin."""
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    background = float(np.median(gray))
    ink = np.abs(gray - background) > 60
    rows = ink.any(axis=1)
    start = None
    for y, has_ink in enumerate([*rows.tolist(), False]):
        if has_ink and start is None:
            start = y
        elif not has_ink and start is not None:
            top, bottom, start = start, y, None
            if bottom - top < min_height:
                continue
            cols = np.flatnonzero(ink[top:bottom].any(axis=0))
            pad = max(2, (bottom - top) // 4)
            y0, y1 = max(0, top - pad), min(image.shape[0], bottom + pad)
            x0, x1 = max(0, cols[0] - pad), min(image.shape[1], cols[-1] + 1 + pad)
            yield np.ascontiguousarray(image[y0:y1, x0:x1])


# -- recognition ----------------------------------------------------------------------------


def _rec_inputs(
    crops: list[np.ndarray],
    config: dict[str, Any],
    batch_sizes: Sequence[int],
    max_shape: Sequence[int] | None,
) -> list[np.ndarray]:
    from paddlex.inference.models.text_recognition.processors import OCRReisizeNormImg, ToBatch

    shape = (_op_args(config, "RecResizeImg") or {}).get("image_shape", DEFAULT_REC_IMAGE_SHAPE)
    resize = OCRReisizeNormImg(rec_image_shape=list(shape))
    if max_shape is not None:
        resize.max_imgW = int(max_shape[3])  # a profile's width cap replaces PaddleX's 3200
    to_batch = ToBatch()
    # The pipeline sorts an image's crops by aspect ratio before batching: similar widths share
    # a batch, so the padding is what PaddleX really feeds the model.
    ordered = sorted(crops, key=lambda c: c.shape[1] / max(c.shape[0], 1))
    tensors: list[np.ndarray] = []
    for batch in batch_sizes:
        for i in range(0, len(ordered), batch):
            tensors.append(to_batch(resize(ordered[i : i + batch]))[0])
    if max_shape is not None:
        n, _, height, width = (int(d) for d in max_shape)
        rows = [_tile_to_width(crops, k, width / height) for k in range(n)]
        wide = to_batch([resize.resize_norm_img(row, width / height) for row in rows])[0]
        tensors.append(wide)
    return tensors


def _tile_to_width(crops: list[np.ndarray], offset: int, max_ratio: float) -> np.ndarray:
    """Crops side by side (starting at ``offset``) up to an aspect ratio of ``max_ratio``."""
    import cv2

    height = 48
    parts: list[np.ndarray] = []
    width = 0
    for i in range(len(crops) * 4):
        crop = crops[(offset + i) % len(crops)]
        scaled_w = max(1, round(crop.shape[1] * height / crop.shape[0]))
        if parts and (width + scaled_w) / height > max_ratio:
            break
        parts.append(cv2.resize(crop, (scaled_w, height)))
        width += scaled_w
    return np.concatenate(parts, axis=1)


# -- text-line orientation ------------------------------------------------------------------


def _cls_inputs(
    crops: list[np.ndarray],
    config: dict[str, Any],
    batch_sizes: Sequence[int],
    max_shape: Sequence[int] | None,
) -> list[np.ndarray]:
    finish = cls_finisher(config)
    return [finish(r) for r in cls_resized(crops, config, batch_sizes, max_shape)]


def cls_finisher(config: dict[str, Any]) -> Callable[[list[np.ndarray]], np.ndarray]:
    """PaddleX's classifier steps after resizing (normalise, CHW, batch)."""
    from paddlex.inference.models.common import Normalize, ToBatch, ToCHWImage

    norm = {**_HALF, **(_op_args(config, "NormalizeImage") or {})}
    normalize = Normalize(scale=norm["scale"], mean=norm["mean"], std=norm["std"])
    to_chw, to_batch = ToCHWImage(), ToBatch()

    def finish(resized: list[np.ndarray]) -> np.ndarray:
        return to_batch(imgs=to_chw(imgs=normalize(imgs=resized)))[0]

    return finish


def cls_resized(
    crops: list[np.ndarray],
    config: dict[str, Any],
    batch_sizes: Sequence[int],
    max_shape: Sequence[int] | None,
) -> Iterator[list[np.ndarray]]:
    """The resized (still uint8 RGB HWC) crops of each classifier input."""
    from paddlex.inference.common.reader import ReadImage
    from paddlex.inference.models.common import Resize

    size = (_op_args(config, "ResizeImage") or {}).get("size", DEFAULT_CLS_SIZE)
    resize = Resize(target_size=list(size), size_divisor=None, interp="LINEAR", backend="cv2")
    to_rgb = ReadImage(format="RGB")  # the classifier converts the pipeline's BGR crops
    # Upright and upside-down copies of every crop: both labels must be exercised.
    samples = [
        to_rgb.read(c) for crop in crops for c in (crop, np.ascontiguousarray(crop[::-1, ::-1]))
    ]
    for batch in batch_sizes:
        for i in range(0, len(samples), batch):
            yield resize(imgs=samples[i : i + batch])
    if max_shape is not None:
        yield resize(imgs=_cycle(samples, int(max_shape[0])))
