"""Optimization-profile selection and batch splitting (pure functions, real defaults)."""

from __future__ import annotations

import pytest

from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import (
    ShapeNotCoveredError,
    ShapeProfile,
    default_profiles,
    fit_static_dims,
    select_profile,
    select_profile_for_split,
    smaller_profiles,
    spec_profile,
    split_batch,
)


def test_spec_profiles_match_the_spec() -> None:
    det = spec_profile("det")
    assert (det.min, det.opt, det.max) == ((1, 3, 640, 640), (16, 3, 960, 960), (50, 3, 1920, 1088))
    rec = spec_profile("rec")
    assert (rec.min, rec.max) == ((1, 3, 48, 320), (50, 3, 48, 320))
    cls = spec_profile("cls")
    assert (cls.min, cls.max) == ((1, 3, 48, 192), (50, 3, 48, 192))


def test_profile_rejects_inconsistent_ranges() -> None:
    with pytest.raises(ValueError):
        ShapeProfile((2, 3), (1, 3), (4, 3))
    with pytest.raises(ValueError):
        ShapeProfile((1, 3), (1, 3, 4), (1, 3, 4))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((1, 3, 960, 1280), 0),  # PaddleOCR 3.x native-size det: the small-side bucket
        ((1, 3, 1920, 1920), 0),
        ((1, 3, 64, 4000), 1),  # the large-side bucket
        ((1, 3, 4000, 4000), 1),
        ((1, 3, 4032, 32), None),  # beyond max_side_limit
        ((2, 3, 64, 64), None),  # det buckets are batch 1 only (PaddleOCR never batches det)
        ((16, 3, 960, 960), None),  # the spec's batch-50 det profile is not a default
    ],
)
def test_det_selection(shape: tuple[int, ...], expected: int | None) -> None:
    assert select_profile(default_profiles(ModelType.DETECTION), {"x": shape}) == expected


def test_det_batches_split_into_batch_one_calls() -> None:
    index, chunk = select_profile_for_split(
        default_profiles(ModelType.DETECTION), {"x": (16, 3, 960, 960)}
    )
    assert (index, chunk) == (0, 1)


def test_rec_width_buckets_cover_paddleocr_widths() -> None:
    profiles = default_profiles("rec")
    assert select_profile(profiles, {"x": (50, 3, 48, 320)}) == 0  # spec: only it holds 50
    for width in (321, 700, 960, 961, 2000, 3200):
        idx = select_profile(profiles, {"x": (6, 3, 48, width)})
        assert idx is not None and profiles[idx]["x"].contains((6, 3, 48, width))
    assert select_profile(profiles, {"x": (6, 3, 48, 3201)}) is None
    assert select_profile(profiles, {"x": (6, 3, 32, 320)}) is None


def test_tightest_profile_wins_and_order_breaks_ties() -> None:
    wide = {"x": ShapeProfile((1, 8), (4, 8), (64, 8))}
    tight = {"x": ShapeProfile((1, 8), (2, 8), (4, 8))}
    assert select_profile([wide, tight], {"x": (3, 8)}) == 1
    assert select_profile([tight, dict(tight)], {"x": (3, 8)}) == 0
    assert select_profile([wide, tight], {"y": (3, 8)}) is None


def test_split_for_batches_above_every_max() -> None:
    profiles = default_profiles("rec")
    shapes = {"x": (123, 3, 48, 320)}
    assert select_profile(profiles, shapes) is None
    index, chunk = select_profile_for_split(profiles, shapes)
    assert chunk == 50 and profiles[index]["x"].contains((chunk, 3, 48, 320))  # the spec
    slices = split_batch(123, chunk)
    assert [(s.start, s.stop) for s in slices] == [(0, 50), (50, 100), (100, 123)]
    assert select_profile_for_split(profiles, {"x": (123, 3, 48, 5000)}) is None


@pytest.mark.parametrize(("batch", "max_batch"), [(0, 4), (1, 4), (4, 4), (9, 4), (7, 1)])
def test_split_batch_covers_in_order(batch: int, max_batch: int) -> None:
    slices = split_batch(batch, max_batch)
    covered = [i for s in slices for i in range(s.start, s.stop)]
    assert covered == list(range(batch))
    assert all(0 < s.stop - s.start <= max_batch for s in slices)
    with pytest.raises(ValueError):
        split_batch(batch, 0)


def test_fit_static_dims_drops_conflicting_profiles() -> None:
    cls = default_profiles("cls")
    assert [p["x"].max[2:] for p in fit_static_dims(cls, {"x": (-1, 3, 48, 192)})] == [(48, 192)]
    assert [p["x"].max[2:] for p in fit_static_dims(cls, {"x": (-1, 3, 80, 160)})] == [(80, 160)]
    assert len(fit_static_dims(cls, {"x": (-1, 3, -1, -1)})) == 2
    with pytest.raises(ShapeNotCoveredError):
        fit_static_dims(cls, {"x": (-1, 3, 32, 100)})


def test_fit_static_dims_narrows_ranges_to_fixed_dims() -> None:
    """A fixed dim inside a range: min = opt = max = the fixed size (TensorRT rejects any other
    profile for a static dim); symbolic names and -1 stay dynamic; a fixed batch narrows too."""
    det = default_profiles("det")
    fitted = fit_static_dims(det, {"x": ("batch", 3, 640, "w")})
    assert [(p["x"].min, p["x"].max) for p in fitted] == [
        ((1, 3, 640, 32), (1, 3, 640, 1920)),
        ((1, 3, 640, 32), (1, 3, 640, 4000)),
    ]
    rec = default_profiles("rec")
    fixed_batch = fit_static_dims(rec, {"x": (4, 3, 48, -1)})
    assert all(p["x"].min[0] == p["x"].opt[0] == p["x"].max[0] == 4 for p in fixed_batch)
    assert len(fixed_batch) == 3
    with pytest.raises(ShapeNotCoveredError, match="names inputs"):
        fit_static_dims(rec, {"image": (-1, 3, 48, -1)})


def test_smaller_profiles_halve_batches_then_drop_the_largest() -> None:
    rec = smaller_profiles(default_profiles("rec"))
    assert rec is not None
    assert [p["x"].max[0] for p in rec] == [25, 8, 8]
    assert all(p["x"].min[0] <= p["x"].opt[0] <= p["x"].max[0] for p in rec)
    det = default_profiles("det")  # batch 1 already: drop the 4000 px bucket
    step = smaller_profiles(det)
    assert step == [det[0]]
    assert smaller_profiles(step) is None


def test_fused_image_inputs_get_nhwc_profiles() -> None:
    from paddleocr_trt.backend.onnx.fuse import UINT8_INPUT
    from paddleocr_trt.profiles import NHWC_INPUTS, rename_input

    assert UINT8_INPUT in NHWC_INPUTS  # the name the fused graphs really use
    for mtype in (ModelType.DETECTION, ModelType.CLASSIFICATION):
        nchw = default_profiles(mtype, "x")
        nhwc = default_profiles(mtype, UINT8_INPUT)
        assert len(nhwc) == len(nchw)
        for a, b in zip(nchw, nhwc, strict=True):
            (pa,), (pb,) = a.values(), b.values()
            for s, t in ((pa.min, pb.min), (pa.opt, pb.opt), (pa.max, pb.max)):
                assert t == (s[0], s[2], s[3], 3)
        # a det page PaddleOCR sends at native size, as the adapted predictor sends it
        if mtype is ModelType.DETECTION:
            assert select_profile(nhwc, {UINT8_INPUT: (1, 1408, 3200, 3)}) is not None
            assert select_profile(nhwc, {UINT8_INPUT: (1, 3, 1408, 3200)}) is None
        # user profiles written for the float NCHW input follow the fused input
        assert rename_input(nchw, "x", UINT8_INPUT) == nhwc
    assert default_profiles(ModelType.RECOGNITION, "x", layout="NCHW") == default_profiles(
        ModelType.RECOGNITION, "x"
    )
    with pytest.raises(ValueError, match="layout"):
        default_profiles(ModelType.DETECTION, "x", layout="CHWN")
