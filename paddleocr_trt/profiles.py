"""Optimization profiles (min/opt/max input shapes) and the choice of one per call.

A TensorRT engine only accepts shapes inside one of its optimization profiles. PaddleOCR 3.x
feeds shapes far outside the spec's single profile: det images at near-native size (H and W
multiples of 32 from 32 up to 4000, one image per call) and rec batches 48 px high and 320 to
3200 px wide. Three mechanisms keep every call correct:

1. *Several profiles per engine* (:func:`default_profiles`): buckets that cover what PaddleOCR
   really sends (det: batch-1 native sizes in two side buckets; rec: the spec's W=320 profile and
   width buckets; cls: spec + 80x160). Cost: build time grows roughly linearly with the number
   of profiles (TensorRT tunes tactics per profile), each profile used at run time needs its own
   execution context, and a wide profile gets tactics tuned for its ``opt`` shape only. Context
   memory is per profile (contexts are made with ON_PROFILE_CHANGE), and the defaults are sized
   so all contexts of det+rec+cls together stay within :data:`ACTIVATION_BUDGET_BYTES`.
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

import numpy as np

from .errors import PaddleOCRTRTError
from .log import get_logger
from .model_types import ModelType

logger = get_logger("profiles")

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
DET_SMALL_SIDE = 1920  # edge between the two batch-1 det buckets (multiple of 32)
DET_LARGE_OPT = 2560
#: Rec width buckets hold up to this batch (PaddleOCR sends 6); bigger batches are split.
REC_BUCKET_MAX_BATCH = 16
#: Activation memory all contexts of the default det+rec+cls profiles may need together, fp32
#: (ONNX-shape-inference estimate): 4 GiB of a 16 GB card, leaving the rest for the CUDA
#: contexts, the native Paddle models of the pipeline (and the fallback), I/O buffers and the
#: builder's workspace during a build.
ACTIVATION_BUDGET_BYTES = 4 << 30
#: The most one context (one profile) may need, fp32.
CONTEXT_BUDGET_BYTES = 2 << 30
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
    det_side_edges: Sequence[int] = (DET_SMALL_SIDE,),
    rec_width_edges: Sequence[int] = (960, REC_MAX_WIDTH),
    bucket_max_batch: int = REC_BUCKET_MAX_BATCH,
    layout: str | None = None,
) -> list[dict[str, ShapeProfile]]:
    """Profiles covering what PaddleOCR 3.x sends, within :data:`ACTIVATION_BUDGET_BYTES`.

    det: batch-1 native-size buckets, sides ``32..det_side_edges[0]`` (opt 960), then up to
    ``det_max_side`` (opt 2560); PaddleOCR never batches det images. The spec's batch-50 det
    profile is *not* a default: its context alone needs about 11 GiB fp32 / 5.5 GiB fp16 of
    activations (``tests/test_activation_memory.py``); pass ``spec_profile("det")`` in
    ``PipelineOptions.profiles`` to get it on a card that holds it. rec: the spec (W=320, batch
    50), then one profile per width bucket between consecutive ``rec_width_edges`` (first bucket
    from W=32, opt at the bucket middle, batch opt 6 = PaddleOCR's rec batch, max
    ``bucket_max_batch``; larger batches are split). cls: spec plus the PP-LCNet text-line
    orientation input 80x160; profiles that conflict with a network's fixed dims are dropped or
    narrowed at build time (:func:`fit_static_dims`).

    ``layout`` "NHWC" gives the same ranges as (N, H, W, 3), for a fused graph's uint8 image
    input; default: NHWC for the names in :data:`NHWC_INPUTS`, else NCHW.
    """
    layout = (layout or ("NHWC" if input_name in NHWC_INPUTS else "NCHW")).upper()
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
    mt = ModelType.parse(model_type)
    profiles: list[ShapeProfile] = []
    if mt is ModelType.DETECTION:
        opt = 960
        edges = [int(e) for e in det_side_edges if int(e) < int(det_max_side)]
        for hi in [*edges, int(det_max_side)]:
            side = min(opt, hi)
            profiles.append(_p((1, 3, 32, 32), (1, 3, side, side), (1, 3, hi, hi)))
            opt = DET_LARGE_OPT
    elif mt is ModelType.RECOGNITION:
        profiles.append(spec_profile(mt))
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
        profiles.append(spec_profile(mt))
        profiles.append(_p((1, 3, 80, 160), (16, 3, 80, 160), (50, 3, 80, 160)))
    if layout == "NHWC":
        profiles = [to_nhwc(p) for p in profiles]
    return [{input_name: p} for p in profiles]


def _fixed(d: object) -> int | None:
    """A network dim as a fixed size, or None when dynamic (-1, 0, None, a symbolic name)."""
    return int(d) if isinstance(d, (int, np.integer)) and int(d) > 0 else None


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


def _fit_one(sp: ShapeProfile, net_shape: Sequence[object]) -> ShapeProfile | str:
    """``sp`` narrowed to the network's fixed dims, or why it cannot be."""
    if len(sp.min) != len(net_shape):
        return f"rank {len(sp.min)} != network rank {len(net_shape)}"
    mn, op, mx = list(sp.min), list(sp.opt), list(sp.max)
    for i, d in enumerate(net_shape):
        fixed = _fixed(d)
        if fixed is None:
            continue
        if not sp.min[i] <= fixed <= sp.max[i]:
            return f"dim {i} is fixed to {fixed}, profile range {sp.min[i]}..{sp.max[i]}"
        mn[i] = op[i] = mx[i] = fixed
    return ShapeProfile(tuple(mn), tuple(op), tuple(mx))


def fit_static_dims(
    profiles: Sequence[Profile], static_shapes: Mapping[str, Sequence[object]]
) -> list[dict[str, ShapeProfile]]:
    """Fit the profiles to the network's inputs (fixed dims as ints; -1/None/names = dynamic).

    A profile range that contains a fixed dim is narrowed to it (TensorRT rejects a profile
    whose min/opt/max differ from a static dim); a profile that excludes it is dropped, with
    the reason logged; duplicates left by narrowing are merged. Raises ShapeNotCoveredError when
    a profile names an input the network lacks, or when no profile is left.
    """
    kept: list[dict[str, ShapeProfile]] = []
    dropped: list[str] = []
    for idx, prof in enumerate(profiles):
        unknown = sorted(set(prof) - set(static_shapes))
        if unknown:
            raise ShapeNotCoveredError(
                f"optimization profile {idx} names inputs {unknown} the network does not have "
                f"(network inputs: {sorted(static_shapes)})"
            )
        fitted: dict[str, ShapeProfile] = {}
        for name, net_shape in static_shapes.items():
            sp = prof.get(name)
            result = _fit_one(sp, net_shape) if sp is not None else f"no range for {name!r}"
            if isinstance(result, str):
                dropped.append(f"profile {idx}: {name}: {result}")
                break
            fitted[name] = result
        else:
            if fitted not in kept:
                kept.append(fitted)
    if dropped:
        logger.info("profiles not applicable to the network: %s", "; ".join(dropped))
    if not kept:
        raise ShapeNotCoveredError(
            f"no optimization profile matches the network inputs {dict(static_shapes)} "
            f"({'; '.join(dropped)})"
        )
    return kept


def smaller_profiles(profiles: Sequence[Profile]) -> list[dict[str, ShapeProfile]] | None:
    """A smaller profile set for the next attempt after a GPU OOM (context creation or build).

    Halves every max batch above 1 (opt and min clamped); once every profile is batch 1, drops
    the profile with the largest max volume (its shapes then fall back per call). None when
    nothing is left to shrink (one batch-1 profile).
    """
    if any(sp.max[0] > 1 for prof in profiles for sp in prof.values()):
        out = []
        for prof in profiles:
            shrunk = {}
            for name, sp in prof.items():
                batch = max(1, sp.max[0] // 2)
                shrunk[name] = ShapeProfile(
                    (min(sp.min[0], batch), *sp.min[1:]),
                    (min(sp.opt[0], batch), *sp.opt[1:]),
                    (batch, *sp.max[1:]),
                )
            out.append(shrunk)
        return out
    if len(profiles) <= 1:
        return None
    largest = max(range(len(profiles)), key=lambda i: (_max_volume(profiles[i]), i))
    return [dict(p) for i, p in enumerate(profiles) if i != largest]


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
