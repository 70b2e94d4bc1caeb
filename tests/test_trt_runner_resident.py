"""TensorRTRunner with resident outputs, driven through test doubles of the adapter and executor.

Nothing here runs TensorRT or a GPU: :class:`FakeDetAdapter` (over the shared doubles of
``fixtures.trt_runner_doubles``) and :class:`FakeResidentExecutor` are test doubles that compute
with a real ONNX Runtime session of the real PP-OCRv4 det model.
The executor double returns ``HostResidentMap`` where the real CudaExecutor returns a
``DeviceResidentMap`` (same protocol; the device version is tested on a GPU in
tests/gpu/test_cuda_resident_gpu.py). What is tested is the runner's control flow: names
validated and passed to every executor, split batches and OOM halves joined without a copy,
fallback results wrapped so the caller always gets a ResidentMap, nothing changed by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from fixtures.trt_runner_doubles import OrtAdapterDouble, ProfileEnqueuerDouble, make_runner

from paddleocr_trt.backend.cuda.concat import BatchConcatMap
from paddleocr_trt.backend.cuda.resident import resident_indices
from paddleocr_trt.engines.onnxruntime import OnnxRuntimeRunner
from paddleocr_trt.engines.tensorrt.adapter import EngineExecutionError
from paddleocr_trt.engines.tensorrt.runner import TensorRTRunner
from paddleocr_trt.errors import OutOfMemoryError
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.postprocess.resident import HostResidentMap, ResidentMap
from paddleocr_trt.profiles import ShapeProfile

Shape = tuple[int, ...]
PROFILE = ShapeProfile((1, 3, 64, 64), (2, 3, 96, 128), (2, 3, 128, 128))


class FakeDetAdapter(OrtAdapterDouble):
    """Test double of the adapter: one profile; "engine" = ONNX Runtime over the det model."""

    def __init__(self, onnx_path: Any, *, fail_enqueue: bool = False, oom_above: int = 99):
        super().__init__(onnx_path, [PROFILE])
        self.fail_enqueue = fail_enqueue
        self.oom_above = oom_above
        self.executors: list[FakeResidentExecutor] = []

    def create_enqueuer(self, index: int) -> ProfileEnqueuerDouble:
        return ProfileEnqueuerDouble(self, index)


class FakeResidentExecutor:
    """Test double of ``CudaExecutor``: records its arguments; resident outputs come back as
    HostResidentMap (where the real executor returns a DeviceResidentMap)."""

    def __init__(self, enqueuer: ProfileEnqueuerDouble, **kwargs: Any) -> None:
        fake = self.fake = enqueuer.fake
        self.kwargs = kwargs
        self.stream_handle = 0x1000
        self.resident = resident_indices(
            kwargs["resident_outputs"], kwargs["output_names"], len(kwargs["output_dtypes"])
        )
        fake.executors.append(self)

    def run(self, inputs: Sequence[np.ndarray]) -> list[Any]:
        fake = self.fake
        if fake.fail_enqueue:
            raise EngineExecutionError("TensorRT execute_async_v3: fake failure")
        if len(inputs[0]) > fake.oom_above:
            raise OutOfMemoryError(f"fake OOM at batch {len(inputs[0])}")
        outs = fake.compute(inputs)
        return [HostResidentMap(o) if i in self.resident else o for i, o in enumerate(outs)]

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def det_onnx(onnx_models) -> Any:
    return onnx_models[ModelType.DETECTION].onnx_path


@pytest.fixture(scope="module")
def native(det_onnx) -> Iterator[OnnxRuntimeRunner]:
    with OnnxRuntimeRunner(det_onnx, name="fallback") as r:
        yield r


def _runner(monkeypatch, fake: FakeDetAdapter, fallback=None, **kw: Any) -> TensorRTRunner:
    return make_runner(monkeypatch, fake, FakeResidentExecutor, "det", fallback=fallback, **kw)


def _x(batch: int, h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32)


def _assert_windows(resident: Any, expected: np.ndarray) -> None:
    assert isinstance(resident, ResidentMap) and resident.shape == expected.shape
    n, _, h, w = expected.shape
    for b in range(n):
        for y0, y1, x0, x1 in [(0, h, 0, w), (h // 3, h // 2, 5, w - 1), (h - 1, h, w - 7, w)]:
            np.testing.assert_allclose(
                resident.window(b, 0, y0, y1, x0, x1), expected[b, 0, y0:y1, x0:x1], atol=1e-5
            )


def test_nothing_resident_by_default(monkeypatch, det_onnx, native) -> None:
    fake = FakeDetAdapter(det_onnx)
    with _runner(monkeypatch, fake) as runner:
        (out,) = runner.infer([_x(2)])
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, native.infer([_x(2)])[0], atol=1e-5)
    assert fake.executors[0].kwargs["resident_outputs"] == []


def test_resident_output_by_name_reaches_the_executor(monkeypatch, det_onnx, native) -> None:
    fake = FakeDetAdapter(det_onnx)
    name = fake.session.get_outputs()[0].name
    with _runner(monkeypatch, fake, resident_outputs=[name]) as runner:
        assert runner.resident_outputs == [name]
        (prob,) = runner.infer([_x(2, w=128)])
        (split,) = runner.infer([_x(3, seed=1)])  # above the profile's max batch 2: split
    kwargs = fake.executors[0].kwargs
    assert kwargs["resident_outputs"] == [name] and kwargs["output_names"] == [name]
    assert isinstance(prob, HostResidentMap)  # what the executor (double) returned, as is
    _assert_windows(prob, native.infer([_x(2, w=128)])[0])
    assert isinstance(split, BatchConcatMap) and [p.shape[0] for p in split.parts] == [2, 1]
    _assert_windows(split, native.infer([_x(3, seed=1)])[0])
    split.release()
    with pytest.raises(RuntimeError, match="after release"):
        split.window(0, 0, 0, 1, 0, 1)


def test_oom_halves_are_joined_as_one_map(monkeypatch, det_onnx, native) -> None:
    fake = FakeDetAdapter(det_onnx, oom_above=1)
    name = fake.session.get_outputs()[0].name
    with _runner(monkeypatch, fake, resident_outputs=[name]) as runner:
        (prob,) = runner.infer([_x(2, seed=2)])
    assert isinstance(prob, BatchConcatMap) and len(prob.parts) == 2
    _assert_windows(prob, native.infer([_x(2, seed=2)])[0])


def test_fallback_results_are_resident_maps_too(monkeypatch, det_onnx, native) -> None:
    fake = FakeDetAdapter(det_onnx)
    name = fake.session.get_outputs()[0].name
    with _runner(monkeypatch, fake, native, resident_outputs=[name]) as runner:
        wide = _x(1, w=256)  # outside the profile: per-call fallback
        (prob,) = runner.infer([wide])
        assert runner.fallback_calls == 1
        assert isinstance(prob, HostResidentMap) and prob.nbytes == 0
        _assert_windows(prob, native.infer([wide])[0])
        fake.fail_enqueue = True  # a runtime failure: fallback for good, still a map
        (again,) = runner.infer([_x(1)])
        assert runner.disabled_reason is not None and isinstance(again, HostResidentMap)
        (later,) = runner.infer([_x(1, seed=4)])
        assert runner.runtime_fallback_calls == 2 and isinstance(later, HostResidentMap)
        _assert_windows(later, native.infer([_x(1, seed=4)])[0])


def test_resident_names_are_checked(monkeypatch, det_onnx) -> None:
    fake = FakeDetAdapter(det_onnx)
    name = fake.session.get_outputs()[0].name
    with pytest.raises(ValueError, match=r"det: no output named \['prob'\]"):
        _runner(monkeypatch, fake, resident_outputs=["prob"])
    with pytest.raises(TypeError, match="sequence of names"):
        _runner(monkeypatch, fake, resident_outputs=name)
    with pytest.raises(ValueError, match="twice"):
        _runner(monkeypatch, fake, resident_outputs=[name, name])
