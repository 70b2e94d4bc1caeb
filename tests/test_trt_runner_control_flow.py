"""TensorRTRunner's failure handling, driven through a test double of the TensorRT adapter.

Nothing here runs TensorRT or a GPU, and nothing here shows that TensorRT works: the failure
modes (no GPU memory for an execution context, a failing enqueue, the order of profile
selection and enqueue on streams) cannot be produced without a GPU, so a named double stands in
for the adapter (:class:`FakeTensorRTAdapter`, over the shared doubles of
``fixtures.trt_runner_doubles``) and for the CUDA executor (:class:`FakeExecutor`).
The double's "engine" computes with a real ONNX Runtime session of the real text-line
orientation model, and the fallback is a real ONNX Runtime runner, so every output compared
below is a real model output.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from fixtures.trt_runner_doubles import OrtAdapterDouble, cls_batch, make_runner

from paddleocr_trt.engines.tensorrt.adapter import EngineExecutionError
from paddleocr_trt.engines.tensorrt.runner import NoContextMemoryError, TensorRTRunner
from paddleocr_trt.errors import OutOfMemoryError
from paddleocr_trt.profiles import ShapeNotCoveredError, ShapeProfile

Shape = tuple[int, ...]
#: Profile 0 is the tight one for 48x192 inputs, profile 1 a wide bucket that also covers them.
PROFILES = [
    ShapeProfile((1, 3, 48, 192), (4, 3, 48, 192), (4, 3, 48, 192)),
    ShapeProfile((1, 3, 48, 32), (2, 3, 48, 320), (8, 3, 48, 640)),
]


class FakeTensorRTAdapter(OrtAdapterDouble):
    """Test double of the adapter's interface as TensorRTRunner uses it.

    Not TensorRT: ``deserialize_engine`` returns an engine double whose contexts record every
    call (``events``) and can be told to fail; results come from ONNX Runtime on CPU.
    """

    def __init__(
        self,
        onnx_path: Any,
        *,
        oom_profiles: Sequence[int] = (),
        oom_while_other_contexts: bool = False,
        fail_enqueue: bool = False,
    ) -> None:
        super().__init__(onnx_path, PROFILES)
        self.oom_profiles = set(oom_profiles)
        self.oom_while_other_contexts = oom_while_other_contexts
        self.fail_enqueue = fail_enqueue
        self.events: list[tuple[Any, ...]] = []
        self.live: list[FakeEnqueuer] = []

    def create_enqueuer(self, index: int) -> FakeEnqueuer:
        self.events.append(("create", index))
        if index in self.oom_profiles or (self.oom_while_other_contexts and self.live):
            raise OutOfMemoryError(f"creating a TensorRT execution context: fake OOM ({index})")
        enq = FakeEnqueuer(self, index)
        self.live.append(enq)
        return enq


class FakeEnqueuer:
    """Test double of ``adapter.TrtEnqueuer``: enforces select-before-use and one stream."""

    def __init__(self, fake: FakeTensorRTAdapter, index: int) -> None:
        self.fake = fake
        self.profile_index = index
        self.stream_handle: int | None = None

    def select_profile(self, stream_handle: int) -> None:
        self.fake.events.append(("select", self.profile_index, stream_handle))
        self.stream_handle = stream_handle

    def set_input_shapes(self, shapes: Sequence[Shape]) -> list[Shape]:
        if self.stream_handle is None:
            raise EngineExecutionError("input shapes before the profile was selected")
        if not PROFILES[self.profile_index].contains(shapes[0]):
            raise ShapeNotCoveredError(f"{shapes[0]} outside profile {self.profile_index}")
        self.fake.events.append(("shapes", self.profile_index, tuple(shapes[0])))
        return [(shapes[0][0], 2)]

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        pass

    def enqueue(self, stream_handle: int) -> None:
        self.fake.events.append(("enqueue", self.profile_index, stream_handle))
        if self.fake.fail_enqueue:
            raise EngineExecutionError("TensorRT execute_async_v3: fake failure")

    def release(self) -> None:
        if self in self.fake.live:
            self.fake.live.remove(self)


_streams = itertools.count(0x1000)


class FakeExecutor:
    """Test double of ``CudaExecutor``: its own stream handle; runs the enqueuer's call order
    (shapes, bind, enqueue on its stream) and computes with the fake's ONNX Runtime session."""

    def __init__(self, enqueuer: FakeEnqueuer, **_: Any) -> None:
        self.enqueuer = enqueuer
        self.stream_handle = next(_streams)

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.enqueuer.set_input_shapes([a.shape for a in inputs])
        self.enqueuer.bind([0], [0])
        self.enqueuer.enqueue(self.stream_handle)
        return self.enqueuer.fake.compute(inputs)

    def close(self) -> None:
        self.enqueuer.fake.events.append(("close", self.enqueuer.profile_index))
        self.enqueuer.release()


def _runner(monkeypatch, fake: FakeTensorRTAdapter, fallback=None) -> TensorRTRunner:
    return make_runner(monkeypatch, fake, FakeExecutor, "cls", fallback=fallback)


def test_profile_is_selected_on_the_stream_that_runs_it(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx)
    with _runner(monkeypatch, fake) as runner:
        (out,) = runner.infer([cls_batch(2)])
        runner.infer([cls_batch(1, width=320)])  # profile 1: a second context, another stream
    np.testing.assert_allclose(out, cls_fallback.infer([cls_batch(2)])[0], rtol=0, atol=1e-6)
    for index in (0, 1):
        mine = [e for e in fake.events if e[1] == index and e[0] != "close"]
        assert [e[0] for e in mine[:4]] == ["create", "select", "shapes", "enqueue"]
        select_stream, enqueue_stream = mine[1][2], mine[3][2]
        assert select_stream == enqueue_stream and select_stream != 0


def test_oom_at_context_creation_routes_to_another_profile(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx, oom_profiles=[0])
    with _runner(monkeypatch, fake, fallback=cls_fallback) as runner:
        (out,) = runner.infer([cls_batch(3)])
        assert runner.unusable_profiles == {0}
        assert runner.fallback_calls == 0 and runner.disabled_reason is None
        assert ("enqueue", 1) in {e[:2] for e in fake.events}
        (again,) = runner.infer([cls_batch(3)])
    assert [e for e in fake.events if e[0] == "create"] == [("create", 0), ("create", 1)]
    np.testing.assert_allclose(out, cls_fallback.infer([cls_batch(3)])[0], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out, again)


def test_oom_on_every_covering_profile_falls_back_per_call(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx, oom_profiles=[0, 1])
    with _runner(monkeypatch, fake, fallback=cls_fallback) as runner:
        (out,) = runner.infer([cls_batch(2)])
        assert runner.unusable_profiles == {0, 1}
        assert runner.fallback_calls == 1
        assert runner.disabled_reason is None  # memory, not a broken engine
    np.testing.assert_array_equal(out, cls_fallback.infer([cls_batch(2)])[0])


def test_oom_at_context_creation_without_fallback_is_an_oom_error(monkeypatch, cls_onnx) -> None:
    fake = FakeTensorRTAdapter(cls_onnx, oom_profiles=[0, 1])
    with _runner(monkeypatch, fake) as runner, pytest.raises(NoContextMemoryError) as info:
        runner.infer([cls_batch(2)])
    assert isinstance(info.value, OutOfMemoryError)  # the pipeline's "next attempt" signal


def test_context_oom_retries_once_after_releasing_other_contexts(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx)
    with _runner(monkeypatch, fake, fallback=cls_fallback) as runner:
        runner.infer([cls_batch(1, width=320)])  # profile 1's context is alive
        fake.oom_while_other_contexts = True
        (out,) = runner.infer([cls_batch(2)])  # profile 0: OOM, release profile 1, retry: fits
        assert runner.unusable_profiles == set()
    assert ("close", 1) in fake.events
    assert [e for e in fake.events if e[0] == "create"][-2:] == [("create", 0), ("create", 0)]
    np.testing.assert_allclose(out, cls_fallback.infer([cls_batch(2)])[0], rtol=0, atol=1e-6)


def test_runtime_failure_switches_to_fallback_for_good(
    monkeypatch, cls_onnx, cls_fallback, caplog
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx, fail_enqueue=True)
    with (
        caplog.at_level(logging.WARNING),
        _runner(monkeypatch, fake, fallback=cls_fallback) as runner,
    ):
        (first,) = runner.infer([cls_batch(2)])
        events = len(fake.events)
        (second,) = runner.infer([cls_batch(3, seed=1)])
        assert len(fake.events) == events  # the engine is not touched again
        assert runner.runtime_fallback_calls == 2
        assert runner.fallback_calls == 0
        assert "fake failure" in (runner.disabled_reason or "")
        summary = runner.fallback_summary()
        assert (summary["runtime_fallback_calls"], summary["fallback_calls"]) == (2, 0)
        assert summary["disabled_reason"] == runner.disabled_reason
    np.testing.assert_array_equal(first, cls_fallback.infer([cls_batch(2)])[0])
    np.testing.assert_array_equal(second, cls_fallback.infer([cls_batch(3, seed=1)])[0])
    warnings = [r for r in caplog.records if "TensorRT failed" in r.getMessage()]
    assert len(warnings) == 1


def test_runtime_failure_without_fallback_is_raised(monkeypatch, cls_onnx) -> None:
    fake = FakeTensorRTAdapter(cls_onnx, fail_enqueue=True)
    with _runner(monkeypatch, fake) as runner, pytest.raises(EngineExecutionError):
        runner.infer([cls_batch(2)])


def test_shape_outside_profiles_stays_a_per_call_fallback(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx)
    with _runner(monkeypatch, fake, fallback=cls_fallback) as runner:
        wide = cls_batch(1, width=1024)  # wider than every profile
        (out,) = runner.infer([wide])
        assert runner.fallback_calls == 1 and runner.disabled_reason is None
        (split,) = runner.infer([cls_batch(11)])  # 11 > max batch 8 of the covering profile: split
        assert runner.fallback_calls == 1
    np.testing.assert_array_equal(out, cls_fallback.infer([wide])[0])
    np.testing.assert_allclose(split, cls_fallback.infer([cls_batch(11)])[0], rtol=0, atol=1e-6)
    assert ("shapes", 1, (8, 3, 48, 192)) in fake.events


def test_memory_preflight_skips_a_context_that_cannot_fit(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = FakeTensorRTAdapter(cls_onnx)
    fake.profile_memory = {0: 3 << 30, 1: 256 << 20}
    fake.free_memory = 1 << 30
    with _runner(monkeypatch, fake, fallback=cls_fallback) as runner:
        (out,) = runner.infer([cls_batch(2)])  # profile 0 is tighter but needs 3 GiB of 1 GiB free
        assert runner.unusable_profiles == {0}
    assert ("create", 0) not in fake.events  # refused before TensorRT allocated anything
    assert ("create", 1) in fake.events
    np.testing.assert_allclose(out, cls_fallback.infer([cls_batch(2)])[0], rtol=0, atol=1e-6)
