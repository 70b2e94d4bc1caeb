"""The engine build's control flow (the real adapter + builder code) over a test double of the
``tensorrt`` module: fixed input dims, rejected profiles, the target device's scope, strict and
merged timing caches, the FP16 path per version and FP32 pins that match no layer.

:class:`FakeTensorRTModule` is a test double, not TensorRT: it builds no engine (its "plan" is
a few bytes) and proves nothing about TensorRT itself; it stands in for the failure and
version behaviours that cannot be produced here. Its network is read from the real ONNX file
with the parser's documented naming rule; ``pytest -m tensorrt`` does the same on a GPU for real.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import pytest

from paddleocr_trt.backend.onnx.naming import parser_layer_name
from paddleocr_trt.backend.trt import adapter, builder
from paddleocr_trt.backend.trt.adapter import api as adapter_api
from paddleocr_trt.backend.trt.adapter import build as adapter_build
from paddleocr_trt.backend.trt.config import BuildSettings
from paddleocr_trt.errors import EngineBuildError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import ShapeProfile, default_profiles


class FakeTensorRTModule:
    """Test double of the ``tensorrt`` module for the build path (names as in the manifest)."""

    def __init__(self, version: str, *, reject_profiles: bool = False) -> None:
        self.__version__ = version
        self.calls: list[tuple[Any, ...]] = []
        self.reject_profiles = reject_profiles
        self.current_device: int | None = None
        self.float32, self.float16 = "float32", "float16"
        fake = self

        class Dims(tuple):
            pass

        class ILogger:
            class Severity:
                INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

            def __init__(self) -> None:
                pass

        class IProgressMonitor:
            def __init__(self) -> None:
                pass

        class NetworkDefinitionCreationFlag:
            EXPLICIT_BATCH, STRONGLY_TYPED = 0, 5

        class MemoryPoolType:
            WORKSPACE = "WORKSPACE"

        class BuilderFlag:
            TF32, FP16 = "TF32", "FP16"
            OBEY_PRECISION_CONSTRAINTS = "OBEY_PRECISION_CONSTRAINTS"
            PREFER_PRECISION_CONSTRAINTS = "PREFER_PRECISION_CONSTRAINTS"

        class ITensor:
            def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
                self.name, self.shape, self.dtype = name, shape, dtype

        class ILayer:
            def __init__(self, name: str, outputs: list[ITensor]) -> None:
                self.name, self._outs, self.precision = name, outputs, None
                self.num_outputs = len(outputs)

            def get_output(self, k: int) -> ITensor:
                return self._outs[k]

            def set_output_type(self, k: int, dtype: str) -> None:
                fake.calls.append(("set_output_type", self.name, k, dtype))

        class INetworkDefinition:
            def __init__(self, flags: int) -> None:
                self.flags, self.inputs, self.layers = flags, [], []

            num_inputs = property(lambda self: len(self.inputs))
            num_layers = property(lambda self: len(self.layers))

            def get_input(self, i: int) -> ITensor:
                return self.inputs[i]

            def get_layer(self, i: int) -> ILayer:
                return self.layers[i]

        class ParserError:
            pass

        class OnnxParser:
            def __init__(self, network: INetworkDefinition, logger: Any) -> None:
                self.network, self.num_errors = network, 0

            def parse_from_file(self, path: str) -> bool:
                model = onnx.load(path)
                for value in model.graph.input:
                    dims = tuple(d.dim_value or -1 for d in value.type.tensor_type.shape.dim)
                    self.network.inputs.append(ITensor(value.name, dims, "float32"))
                for node in model.graph.node:
                    outs = [ITensor(o, (), "float32") for o in node.output]
                    self.network.layers.append(ILayer(parser_layer_name(node), outs))
                return True

        class IOptimizationProfile:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

            def set_shape(self, name: str, mn: Dims, op: Dims, mx: Dims) -> None:
                self.shapes[name] = (tuple(mn), tuple(op), tuple(mx))

        class ITimingCache:
            def __init__(self, data: bytes) -> None:
                self.entries = set(data.decode().split(";")) - {""}

            def serialize(self) -> bytes:
                return ";".join(sorted(self.entries)).encode()

            def combine(self, other: ITimingCache, ignore_mismatch: bool) -> bool:
                fake.calls.append(("combine", ignore_mismatch))
                self.entries |= other.entries
                return True

        class IBuilderConfig:
            def __init__(self, network: INetworkDefinition | None = None) -> None:
                self.flags, self.profiles, self.network = [], [], network
                self.cache: ITimingCache | None = None
                self.builder_optimization_level = 3
                self.progress_monitor = None

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                pass

            def set_flag(self, flag: str) -> None:
                self.flags.append(flag)

            def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
                for t in fake.network.inputs:  # TensorRT refuses ranges over fixed dims
                    lo, _, hi = profile.shapes[t.name]
                    fixed_ok = all(d < 0 or lo[i] == hi[i] == d for i, d in enumerate(t.shape))
                    if fake.reject_profiles or not fixed_ok:
                        return -1
                self.profiles.append(profile.shapes)
                return len(self.profiles) - 1

            def create_timing_cache(self, data: bytes) -> ITimingCache:
                return ITimingCache(bytes(data))

            def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
                fake.calls.append(("set_timing_cache", ignore_mismatch, sorted(cache.entries)))
                if not ignore_mismatch and any(e.startswith("other-gpu") for e in cache.entries):
                    return False
                self.cache = cache
                return True

            def get_timing_cache(self) -> ITimingCache | None:
                return self.cache

        class Builder:
            def __init__(self, logger: Any) -> None:
                pass

            def create_network(self, flags: int) -> INetworkDefinition:
                fake.network = INetworkDefinition(flags)
                return fake.network

            def create_builder_config(self) -> IBuilderConfig:
                fake.config = IBuilderConfig()
                return fake.config

            def create_optimization_profile(self) -> IOptimizationProfile:
                return IOptimizationProfile()

            def build_serialized_network(self, network: Any, config: IBuilderConfig) -> bytes:
                fake.calls.append(("build", fake.current_device, list(config.flags)))
                config.cache.entries.add(f"tactic-{len(fake.calls)}")
                return b"fake-plan"

        for cls in (Dims, ILogger, IProgressMonitor, NetworkDefinitionCreationFlag, MemoryPoolType,
                    BuilderFlag, ITensor, ILayer, INetworkDefinition, ParserError, OnnxParser,
                    IOptimizationProfile, ITimingCache, IBuilderConfig, Builder):  # fmt: skip
            setattr(self, cls.__name__, cls)


@pytest.fixture
def fake_trt(monkeypatch) -> Iterator[Any]:
    def install(version: str = "10.16.1", **kw: Any) -> FakeTensorRTModule:
        fake = FakeTensorRTModule(version, **kw)
        monkeypatch.setattr(adapter_api, "_module", fake)

        @contextlib.contextmanager
        def device_scope(device_id: int) -> Iterator[None]:
            previous, fake.current_device = fake.current_device, device_id
            try:
                yield
            finally:
                fake.current_device = previous

        monkeypatch.setattr(builder, "device_scope", device_scope)
        return fake

    yield install


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
    builder.save_timing_cache(cache_file, b"tactic-new")
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
def test_fp16_path_per_version(fake_trt, onnx_models, tmp_path, version, strongly_typed) -> None:
    fake = fake_trt(version)
    rec = onnx_models[ModelType.RECOGNITION].onnx_path
    settings = BuildSettings(precision="fp16", workspace_bytes=1 << 30, progress=False)
    result = builder.build_engine(rec, tmp_path / "r.plan", settings, default_profiles("rec"))
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
