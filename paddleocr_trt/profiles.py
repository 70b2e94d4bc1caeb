"""Optimization profiles (min/opt/max input shapes) and the choice of one per call.

A TensorRT engine only accepts shapes inside one of its optimization profiles. PaddleOCR 3.x
feeds shapes far outside the spec's single profile: det images at near-native size (H and W
multiples of 32 from 32 up to 4000, one image per call) and rec batches 48 px high and 320 to
3200 px wide. Three mechanisms keep every call correct:

1. *Several profiles per engine* (:func:`default_profiles`): the spec's profile first, then
   buckets that cover what PaddleOCR really sends (det: batch-1 native sizes; rec: width
   buckets). Cost: build time grows roughly linearly with the number of profiles (TensorRT tunes
   tactics per profile), each profile used at run time needs its own execution context (device
   memory), and a wide profile gets tactics tuned for its ``opt`` shape only, so shapes far from
   ``opt`` may run slower than in a tight profile.
2. *Batch splitting* (:func:`split_batch`): a batch larger than every covering profile's max batch
   is cut into chunks of that profile's max batch.
3. *Per-call native fallback*: a shape no profile covers (even at batch 1) is served by the
   native runner (``select_profile`` returns None; the runner counts it and logs once).

OPEN ITEM (needs a real TensorRT GPU machine): measure build time, engine size, context memory
and latency of the bucketed default against a single wide profile and against the spec profile
alone, for PP-OCRv4 mobile and server det/rec; then tune the bucket edges and ``opt`` shapes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import PaddleOCRTRTError
from .model_types import ModelType

Shape = tuple[int, ...]


class ShapeNotCoveredError(PaddleOCRTRTError, ValueError):
    """An input shape lies outside every optimization profile of an engine."""


@dataclass(frozen=True)
class ShapeProfile:
    """min/opt/max of one input; ``min <= opt <= max`` element-wise, same rank."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        mn, op, mx = (tuple(int(d) for d in s) for s in (self.min, self.opt, self.max))
        object.__setattr__(self, "min", mn)
        object.__setattr__(self, "opt", op)
        object.__setattr__(self, "max", mx)
        if not len(mn) == len(op) == len(mx):
            raise ValueError(f"profile ranks differ: min {mn}, opt {op}, max {mx}")
        if any(d < 1 for d in mn) or not all(
            a <= b <= c for a, b, c in zip(mn, op, mx, strict=True)
        ):
            raise ValueError(f"profile needs 1 <= min <= opt <= max per dim: {mn} {op} {mx}")

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= int(d) <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


#: One optimization profile: input name -> its range.
Profile = Mapping[str, ShapeProfile]

#: Inputs that take NHWC images (the uint8 input of a fused det/cls graph,
#: ``backend.onnx.fuse.UINT8_INPUT``); every other image input is NCHW.
NHWC_INPUTS = frozenset({"image_uint8"})

DET_MAX_SIDE = 4000  # PaddleX OCR.yaml max_side_limit; 4000 = 125 * 32
REC_HEIGHT = 48
REC_MAX_WIDTH = 3200


def _p(mn: Shape, op: Shape, mx: Shape) -> ShapeProfile:
    return ShapeProfile(mn, op, mx)


def spec_profile(model_type: ModelType | str) -> ShapeProfile:
    """The profile of the project spec (kept first so batched callers get its tuning)."""
    mt = ModelType.parse(model_type)
    if mt is ModelType.DETECTION:
        return _p((1, 3, 640, 640), (16, 3, 960, 960), (50, 3, 1920, 1088))
    if mt is ModelType.RECOGNITION:
        return _p((1, 3, 48, 320), (16, 3, 48, 320), (50, 3, 48, 320))
    return _p((1, 3, 48, 192), (16, 3, 48, 192), (50, 3, 48, 192))


def default_profiles(
    model_type: ModelType | str,
    input_name: str = "x",
    *,
    det_max_side: int = DET_MAX_SIDE,
    rec_width_edges: Sequence[int] = (960, REC_MAX_WIDTH),
    bucket_max_batch: int = 50,
    layout: str | None = None,
) -> list[dict[str, ShapeProfile]]:
    """Spec profile plus buckets covering PaddleOCR 3.x's real shapes (see module docstring).

    det: spec, then batch-1 ``32..det_max_side`` (opt 960). rec: spec (W=320), then one profile
    per width bucket between consecutive ``rec_width_edges`` (first bucket starts at W=32, opt at
    the bucket middle, batch opt 6 = PaddleOCR's rec batch). cls: spec plus the PP-LCNet
    text-line-orientation input 80x160; profiles that conflict with a network's static dims are
    dropped at build time (:func:`fit_static_dims`).

    ``layout`` "NHWC" gives the same ranges as (N, H, W, 3), for a fused graph's uint8 image
    input; default: NHWC for the names in :data:`NHWC_INPUTS`, else NCHW.
    """
    layout = (layout or ("NHWC" if input_name in NHWC_INPUTS else "NCHW")).upper()
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
    mt = ModelType.parse(model_type)
    profiles = [spec_profile(mt)]
    if mt is ModelType.DETECTION:
        side = int(det_max_side)
        profiles.append(_p((1, 3, 32, 32), (1, 3, 960, 960), (1, 3, side, side)))
    elif mt is ModelType.RECOGNITION:
        lo = 32
        for hi in rec_width_edges:
            opt_w = min(hi, max(lo, (lo + hi) // 2))
            batch = int(bucket_max_batch)
            profiles.append(
                _p(
                    (1, 3, REC_HEIGHT, lo),
                    (min(6, batch), 3, REC_HEIGHT, opt_w),
                    (batch, 3, REC_HEIGHT, int(hi)),
                )
            )
            lo = int(hi)
    else:
        profiles.append(_p((1, 3, 80, 160), (16, 3, 80, 160), (50, 3, 80, 160)))
    if layout == "NHWC":
        profiles = [to_nhwc(p) for p in profiles]
    return [{input_name: p} for p in profiles]


def to_nhwc(profile: ShapeProfile) -> ShapeProfile:
    """The same ranges of an NCHW profile, as NHWC (what a fused uint8 image input takes)."""
    if len(profile.min) != 4:
        raise ValueError(f"only rank-4 image profiles have a layout, got {profile.min}")

    def perm(shape: Shape) -> Shape:
        return (shape[0], shape[2], shape[3], shape[1])

    return ShapeProfile(perm(profile.min), perm(profile.opt), perm(profile.max))


def rename_input(profiles: Sequence[Profile], old: str, new: str) -> list[dict[str, ShapeProfile]]:
    """Profiles written for input ``old`` as profiles of ``new`` (NHWC when ``new`` is in
    :data:`NHWC_INPUTS`): user profiles of the float NCHW ``x`` follow a fused graph's input."""
    if old == new:
        return [dict(p) for p in profiles]
    nhwc = new in NHWC_INPUTS
    out = []
    for prof in profiles:
        renamed = {k: v for k, v in prof.items() if k != old}
        if old in prof:
            renamed[new] = to_nhwc(prof[old]) if nhwc else prof[old]
        out.append(renamed)
    return out


def fit_static_dims(
    profiles: Sequence[Profile], static_shapes: Mapping[str, Sequence[int]]
) -> list[dict[str, ShapeProfile]]:
    """Keep the profiles whose ranges agree with the network's fixed dims (-1 = dynamic).

    Raises ShapeNotCoveredError when none is left, naming the network's shapes.
    """
    kept: list[dict[str, ShapeProfile]] = []
    for prof in profiles:
        ok = True
        for name, net_shape in static_shapes.items():
            sp = prof.get(name)
            if sp is None or len(sp.min) != len(net_shape):
                ok = False
                break
            for i, d in enumerate(net_shape):
                if int(d) >= 0 and not (sp.min[i] == sp.opt[i] == sp.max[i] == int(d)):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            kept.append(dict(prof))
    if not kept:
        raise ShapeNotCoveredError(
            f"no optimization profile matches the network inputs {dict(static_shapes)}"
        )
    return kept


def _max_volume(prof: Profile) -> int:
    return sum(math.prod(sp.max) for sp in prof.values())


def select_profile(profiles: Sequence[Profile], shapes: Mapping[str, Sequence[int]]) -> int | None:
    """Index of the tightest profile (smallest max volume, then lowest index) covering ``shapes``.

    The tightest one is preferred because its tactics were tuned nearest to the call's shape.
    None when no profile covers every input.
    """
    best: tuple[int, int] | None = None
    for idx, prof in enumerate(profiles):
        if all(name in prof and prof[name].contains(shape) for name, shape in shapes.items()):
            key = (_max_volume(prof), idx)
            if best is None or key < best:
                best = key
    return None if best is None else best[1]


def select_profile_for_split(
    profiles: Sequence[Profile], shapes: Mapping[str, Sequence[int]]
) -> tuple[int, int] | None:
    """(profile index, chunk size) for a batch no profile holds whole; None if even batch 1 fails.

    Among profiles covering one sample, the largest max batch wins (fewest chunks), then the
    tightest. Inputs share the batch dim (axis 0).
    """
    one = {name: (1, *tuple(shape)[1:]) for name, shape in shapes.items()}
    best: tuple[int, int, int] | None = None
    for idx, prof in enumerate(profiles):
        if all(name in prof and prof[name].contains(shape) for name, shape in one.items()):
            chunk = min(prof[name].max_batch for name in one)
            key = (-chunk, _max_volume(prof), idx)
            if best is None or key < best:
                best = key
    return None if best is None else (best[2], -best[0])


def split_batch(batch: int, max_batch: int) -> list[slice]:
    """Consecutive slices of at most ``max_batch`` covering ``range(batch)`` in order."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if batch < 0:
        raise ValueError(f"batch must be >= 0, got {batch}")
    return [slice(i, min(i + max_batch, batch)) for i in range(0, batch, max_batch)]


def profiles_to_dict(profiles: Sequence[Profile]) -> list[dict[str, dict[str, list[int]]]]:
    """JSON-able form (cache keys, manifests, logs)."""
    return [{name: sp.to_dict() for name, sp in sorted(p.items())} for p in profiles]
