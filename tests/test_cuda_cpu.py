"""The CUDA layer's logic that needs no GPU: device strings, grouping, availability, back-off."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys

import numpy as np
import pytest

from paddleocr_trt.backend.cuda import (
    DeviceGroup,
    DeviceInfo,
    DeviceSpec,
    cuda_available,
    group_by_model,
    parse_device,
    run_with_backoff,
)
from paddleocr_trt.errors import OutOfMemoryError


@pytest.mark.parametrize(
    ("text", "spec", "gpu_ids"),
    [
        ("gpu", DeviceSpec("gpu", None), (0,)),
        ("gpu:0", DeviceSpec("gpu", (0,)), (0,)),
        ("gpu:0,1", DeviceSpec("gpu", (0, 1)), (0, 1)),
        ("GPU:3", DeviceSpec("gpu", (3,)), (3,)),
        (" gpu:1, 2 ", DeviceSpec("gpu", (1, 2)), (1, 2)),
        ("cpu", DeviceSpec("cpu", None), ()),
        ("npu:0", DeviceSpec("npu", (0,)), ()),
    ],
)
def test_parse_device(text: str, spec: DeviceSpec, gpu_ids: tuple[int, ...]) -> None:
    parsed = parse_device(text)
    assert parsed == spec
    assert parsed.gpu_ids == gpu_ids
    assert parsed.is_cuda == (spec.device_type == "gpu")


@pytest.mark.parametrize(
    "text", ["", "gpu:", "gpu:a", "gpu:0:1", "cpu:0", "tpu", "gpu:0,0", "gpu:-1"]
)
def test_parse_device_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_device(text)


def test_parse_device_agrees_with_paddlex() -> None:
    """Same ids as PaddleX's own parser for every string both accept."""
    paddlex_device = pytest.importorskip("paddlex.utils.device")
    for text in ["gpu", "gpu:0", "gpu:0,1", "gpu:2,0", "cpu", "xpu:1"]:
        ptype, pids = paddlex_device.parse_device(text)
        ours = parse_device(text)
        assert ours.device_type == ptype
        assert ours.device_ids == (tuple(pids) if pids is not None else None)


def _info(table: dict[int, tuple[str, tuple[int, int]]]):
    def info(device_id: int) -> DeviceInfo:
        name, cc = table[device_id]
        return DeviceInfo(device_id, name, cc, 80 << 30, f"GPU-{device_id}")

    return info


def test_group_by_model_shares_identical_gpus() -> None:
    table = {
        0: ("NVIDIA H100 80GB HBM3", (9, 0)),
        1: ("NVIDIA A10", (8, 6)),
        2: ("NVIDIA H100 80GB HBM3", (9, 0)),
        3: ("NVIDIA A10", (8, 6)),
        4: ("NVIDIA H100 PCIe", (9, 0)),  # same arch, other model: its own engine
    }
    groups = group_by_model([2, 0, 1, 3, 4], info=_info(table))
    assert groups == [
        DeviceGroup("NVIDIA H100 80GB HBM3", (9, 0), (2, 0)),
        DeviceGroup("NVIDIA A10", (8, 6), (1, 3)),
        DeviceGroup("NVIDIA H100 PCIe", (9, 0), (4,)),
    ]
    # every requested id appears exactly once
    assert sorted(i for g in groups for i in g.device_ids) == [0, 1, 2, 3, 4]
    assert group_by_model([], info=_info(table)) == []


def test_cuda_available_gives_a_reason_here() -> None:
    ok, reason = cuda_available()
    assert isinstance(reason, str) and reason
    if importlib.util.find_spec("cuda") is None:
        assert not ok
        assert "cuda-python is not installed" in reason and "pip install" in reason
    elif not ok:
        assert "CUDA" in reason


def test_importing_cuda_layer_does_not_import_cuda_python() -> None:
    code = (
        "import sys, paddleocr_trt.backend.cuda as c; "
        "assert not any(m == 'cuda' or m.startswith('cuda.') for m in sys.modules), "
        "[m for m in sys.modules if m.startswith('cuda')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _MemoryLimitedModel:
    """A real numpy "model" (x -> [2x, row sums]) that runs out of memory above a batch size."""

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self.calls: list[int] = []

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.calls.append(len(x))
        if len(x) > self.max_batch:
            raise OutOfMemoryError(f"batch {len(x)} needs more than the {self.max_batch} that fit")
        return [x * 2.0, x.reshape(len(x), -1).sum(axis=1)]


@pytest.mark.parametrize(("n", "max_batch"), [(16, 16), (16, 5), (13, 3), (7, 1), (10, 9)])
def test_run_with_backoff_keeps_order_and_every_item(
    n: int, max_batch: int, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(n * 100 + max_batch)
    batch = rng.standard_normal((n, 3, 4, 5)).astype(np.float32)
    model = _MemoryLimitedModel(max_batch)
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        doubled, sums = run_with_backoff(batch, model, what="rec batch")
    np.testing.assert_array_equal(doubled, batch * 2.0)
    np.testing.assert_allclose(sums, batch.reshape(n, -1).sum(axis=1), rtol=1e-6)
    successful = [c for c in model.calls if c <= max_batch]
    assert sum(successful) == n  # each item ran exactly once
    assert all(c <= max_batch for c in successful)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    if max_batch >= n:
        assert model.calls == [n] and not warnings
    else:
        assert warnings and all("rec batch" in r.getMessage() for r in warnings)
        assert "out of GPU memory" in warnings[0].getMessage()


def test_run_with_backoff_accepts_a_list_of_images() -> None:
    images = [np.full((3, 8, 8), i, dtype=np.float32) for i in range(6)]
    (out, _) = run_with_backoff(images, _MemoryLimitedModel(2), what="det")
    assert out.shape == (6, 3, 8, 8)
    assert [float(o[0, 0, 0]) for o in out] == [2.0 * i for i in range(6)]


def test_run_with_backoff_reraises_at_min_batch() -> None:
    model = _MemoryLimitedModel(max_batch=1)
    batch = np.ones((8, 2), dtype=np.float32)
    with pytest.raises(OutOfMemoryError, match="even at batch 2"):
        run_with_backoff(batch, model, what="det", min_batch=2)
    assert model.calls == [8, 4, 2]
    never = _MemoryLimitedModel(max_batch=0)
    with pytest.raises(OutOfMemoryError, match="det: out of GPU memory even at batch 1"):
        run_with_backoff(batch, never, what="det")


def test_run_with_backoff_passes_other_errors_through() -> None:
    def broken(x: np.ndarray) -> list[np.ndarray]:
        raise RuntimeError("not a memory problem")

    with pytest.raises(RuntimeError, match="not a memory problem"):
        run_with_backoff(np.ones((4, 2)), broken, what="det")
    with pytest.raises(ValueError):
        run_with_backoff(np.ones((4, 2)), broken, what="det", min_batch=0)


class _GraphDouble:
    """Test double for an instantiated CUDA graph (needs a GPU): records destroy()."""

    def __init__(self, name: str, destroyed: list[str]) -> None:
        self.name = name
        self._destroyed = destroyed

    def destroy(self) -> None:
        self._destroyed.append(self.name)


def test_graph_cache_evicts_least_recently_used_at_its_bound() -> None:
    from paddleocr_trt.backend.cuda.graph import GraphCache

    destroyed: list[str] = []
    cache = GraphCache(max_size=2)
    cache.put("a", _GraphDouble("a", destroyed))
    cache.put("b", _GraphDouble("b", destroyed))
    assert cache.get("a").name == "a"  # a is now the most recently used
    cache.put("c", _GraphDouble("c", destroyed))
    assert destroyed == ["b"] and cache.evictions == 1
    assert cache.keys() == ["a", "c"] and "b" not in cache and cache.get("b") is None
    cache.put("c", _GraphDouble("c2", destroyed))  # replacing a key destroys the old graph
    assert destroyed == ["b", "c"] and len(cache) == 2 and cache.evictions == 1
    assert cache.clear() == 2 and sorted(destroyed[2:]) == ["a", "c2"] and len(cache) == 0
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        GraphCache(max_size=0)


def test_cuda_graphs_are_opt_in_through_settings_and_pipeline_options() -> None:
    from paddleocr_trt.pipeline import PipelineOptions
    from paddleocr_trt.settings import ENV_CUDA_GRAPHS, cuda_graphs_enabled

    assert cuda_graphs_enabled({}) is False
    assert cuda_graphs_enabled({ENV_CUDA_GRAPHS: "1"}) is True
    assert cuda_graphs_enabled({ENV_CUDA_GRAPHS: " On "}) is True
    assert cuda_graphs_enabled({ENV_CUDA_GRAPHS: "0"}) is False
    options = PipelineOptions()
    assert options.use_cuda_graphs is False and options.cuda_graph_cache_size == 16
    with pytest.raises(ValueError, match="cuda_graph_cache_size must be >= 1"):
        PipelineOptions(use_cuda_graphs=True, cuda_graph_cache_size=0)
