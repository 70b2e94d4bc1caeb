"""The engine build's control flow (the real adapter + builder code) over a test double of the
``tensorrt`` module: fixed input dims, rejected profiles, the target device's scope, strict and
merged timing caches, the FP16 path per version and FP32 pins that match no layer.

:class:`FakeTensorRTModule` is a test double, not TensorRT: it builds no engine (its "plan" is
a few bytes) and proves nothing about TensorRT itself; it stands in for the failure and
version behaviours that cannot be produced here. Its network is read from the real ONNX file
with the parser's documented naming rule; ``pytest -m tensorrt`` does the same on a GPU for real.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest

from paddleocr_trt.cache.safedir import SafeDir
from paddleocr_trt.engines.tensorrt import adapter, builder
from paddleocr_trt.engines.tensorrt.adapter import build as adapter_build
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.errors import EngineBuildError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import ShapeProfile, default_profiles


def _fixed_cls(onnx_models, tmp_path: Path) -> Path:
    """The real cls model with its H/W fixed to 80x160 (as PP-LCNet text-line orientation)."""
    model = onnx.load(str(onnx_models[ModelType.CLASSIFICATION].onnx_path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims[2:], (80, 160), strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = size
    path = tmp_path / "cls-fixed.onnx"
    onnx.save(model, str(path))
    return path


SETTINGS = BuildSettings(workspace_bytes=1 << 30, progress=False)


def test_fixed_dims_fit_the_profiles_and_build_on_the_target_device(
    fake_trt, onnx_models, tmp_path
) -> None:
    fake = fake_trt()
    onnx_path = _fixed_cls(onnx_models, tmp_path)
    result = builder.build_engine(
        onnx_path, tmp_path / "cls.plan", SETTINGS, default_profiles("cls"), device_id=3,
        timing_cache_dir=tmp_path / "timing", gpu_tag="Fake GPU-sm90",
    )  # fmt: skip
    assert [p["x"].max for p in result.profiles] == [(50, 3, 80, 160)]
    assert fake.config.profiles == [{"x": ((1, 3, 80, 160), (16, 3, 80, 160), (50, 3, 80, 160))}]
    assert [c[1] for c in fake.calls if c[0] == "build"] == [3]


def test_a_rejected_profile_is_a_build_error(fake_trt, onnx_models, tmp_path, monkeypatch) -> None:
    fake_trt()
    onnx_path = _fixed_cls(onnx_models, tmp_path)
    monkeypatch.setattr(adapter_build, "fit_profiles_to_network", lambda p, i: list(p))
    with pytest.raises(EngineBuildError, match="rejected optimization profile 0"):
        adapter.build_serialized_engine(onnx_path, SETTINGS, default_profiles("cls"))


def test_profiles_that_cannot_fit_are_a_build_error(fake_trt, onnx_models, tmp_path) -> None:
    fake_trt()
    onnx_path = _fixed_cls(onnx_models, tmp_path)
    with pytest.raises(EngineBuildError, match="do not fit the network"):
        adapter.build_serialized_engine(onnx_path, SETTINGS, default_profiles("cls")[:1])


def test_timing_cache_is_per_gpu_strict_and_merged(fake_trt, onnx_models, tmp_path, caplog) -> None:
    fake = fake_trt()
    onnx_path = onnx_models[ModelType.CLASSIFICATION].onnx_path
    timing = tmp_path / "timing"
    after_first: list[str] = []
    for i in range(2):
        builder.build_engine(
            onnx_path, tmp_path / f"{i}.plan", SETTINGS, default_profiles("cls"),
            timing_cache_dir=timing, gpu_tag="Fake GPU-sm90",
        )  # fmt: skip
        (cache_file,) = timing.glob("*.cache")
        after_first = after_first or sorted(cache_file.read_bytes().decode().split(";"))
    assert "10.16.1" in cache_file.name and "Fake_GPU-sm90" in cache_file.name
    loads = [c for c in fake.calls if c[0] == "set_timing_cache"]
    assert [c[1] for c in loads] == [False, False]  # never ignore_mismatch
    assert loads[0][2] == [] and loads[1][2] == after_first != []  # the 2nd build reused it
    assert ("combine", False) in fake.calls  # the 2nd build merged into the file
    assert set(after_first) < set(cache_file.read_bytes().decode().split(";"))
    # Another process merged its entry meanwhile: the file keeps both.
    cache_file.write_bytes(cache_file.read_bytes() + b";from-other-process")
    with SafeDir.open_path(timing) as directory:  # through the held dir, as the build child
        builder.save_timing_cache(directory, cache_file.name, b"tactic-new")
    assert set(cache_file.read_bytes().decode().split(";")) >= {"from-other-process", "tactic-new"}
    # A cache from another GPU is refused (strict load) and the build starts empty.
    cache_file.write_bytes(b"other-gpu-entry")
    with caplog.at_level(logging.WARNING):
        builder.build_engine(
            onnx_path, tmp_path / "c.plan", SETTINGS, default_profiles("cls"),
            timing_cache_dir=timing, gpu_tag="Fake GPU-sm90",
        )  # fmt: skip
    assert "refused the timing cache" in caplog.text
    assert [c for c in fake.calls if c[0] == "set_timing_cache"][-1][2] == []


@pytest.mark.parametrize(
    ("version", "strongly_typed"), [("10.11.0", False), ("10.12.0", True), ("11.4.0", True)]
)
def test_fp16_path_per_version(
    fake_trt, onnx_models, tmp_path, caplog, version, strongly_typed
) -> None:
    fake = fake_trt(version)
    rec = onnx_models[ModelType.RECOGNITION].onnx_path
    settings = BuildSettings(precision="fp16", workspace_bytes=1 << 30, progress=False)
    with caplog.at_level(logging.INFO, logger="paddleocr_trt"):
        result = builder.build_engine(rec, tmp_path / "r.plan", settings, default_profiles("rec"))
    estimates = [r for r in caplog.records if "of activations (estimate)" in r.getMessage()]
    assert len(estimates) == len(default_profiles("rec"))
    (build_flags,) = [c[2] for c in fake.calls if c[0] == "build"]
    if strongly_typed:
        assert result.precision == "fp16-onnx" and result.onnx_path.name.endswith(".fp16.onnx")
        assert "FP16" not in build_flags
        assert fake.network.flags == 1 << 5  # STRONGLY_TYPED
    else:
        assert result.precision == "fp16-flag" and result.onnx_path == rec
        assert "FP16" in build_flags
        assert fake.network.flags == 1 << 0  # EXPLICIT_BATCH


def test_fp32_pins_name_parser_layers_and_unmatched_ones_are_reported(
    fake_trt, onnx_models, tmp_path, caplog
) -> None:
    fake = fake_trt("10.11.0")  # the flag path pins layers in the network
    rec = onnx_models[ModelType.RECOGNITION].onnx_path
    model = onnx.load(str(rec))
    unnamed_by_export = next(n.name for n in model.graph.node if n.name.startswith("node_of_"))
    settings = BuildSettings(
        precision="fp16", workspace_bytes=1 << 30, progress=False,
        fp32_layers=(unnamed_by_export, "Conv__3"),  # the second: the old <op>__<idx> naming
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        result = builder.build_engine(rec, tmp_path / "r.plan", settings, default_profiles("rec"))
    assert result.pinned_layers == (unnamed_by_export,)
    assert result.unmatched_pins == ("Conv__3",)
    assert "match no TensorRT layer" in caplog.text and "Conv__3" in caplog.text
    assert ("set_output_type", unnamed_by_export, 0, "float32") in fake.calls


def test_build_warns_first_about_nodes_the_parser_rejects(fake_trt, tmp_path, caplog) -> None:
    from onnx import TensorProto, helper

    fake_trt("11.4.0")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    graph = helper.make_graph([node], "g", [x], [y])
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    profiles = [{"x": ShapeProfile((1, 4), (2, 4), (4, 4))}]
    with caplog.at_level(logging.WARNING):
        builder.build_engine(path, tmp_path / "bad.plan", SETTINGS, profiles)
    assert "may reject" in caplog.text and "uniq (Unique): operator" in caplog.text
