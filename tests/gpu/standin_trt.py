"""A stand-in for TensorRT's adapter (NOT TensorRT) so a real TensorRTRunner runs on a GPU here.

The measuring machine has CUDA but no TensorRT. :func:`standin_runner` builds a real
:class:`TensorRTRunner` (profile choice, leases, fallbacks) over real :class:`CudaExecutor`
instances, whose "engine" is any enqueuer from ``enqueuers.py``/``cuda_test_kernels.py`` (a
device copy, a memset). Nothing here shows that TensorRT works; it shows what the runner and the
executor do around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from paddleocr_trt.engines.tensorrt import runner as runner_mod
from paddleocr_trt.engines.tensorrt.adapter import TensorInfo
from paddleocr_trt.engines.tensorrt.runner import TensorRTRunner
from paddleocr_trt.profiles import ShapeProfile


class _Selectable:
    """An enqueuer plus the profile selection TensorRT's context has (a no-op here)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.selected_on: int | None = None

    def select_profile(self, stream_handle: int) -> None:
        self.selected_on = stream_handle

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        return self.inner.set_input_shapes(shapes)

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        self.inner.bind(input_ptrs, output_ptrs)

    def enqueue(self, stream_handle: int) -> None:
        self.inner.enqueue(stream_handle)


class StandInEngine:
    """Stand-in of ``adapter.Engine`` (NOT TensorRT): named tensors, profiles, enqueuers."""

    def __init__(
        self,
        inputs: Sequence[tuple[str, Any]],
        outputs: Sequence[tuple[str, Any]],
        profiles: Sequence[dict[str, ShapeProfile]],
        make_enqueuer: Callable[[], Any],
    ) -> None:
        self.inputs = [TensorInfo(n, True, np.dtype(d), ()) for n, d in inputs]
        self.outputs = [TensorInfo(n, False, np.dtype(d), ()) for n, d in outputs]
        self.input_names = [n for n, _ in inputs]
        self.output_names = [n for n, _ in outputs]
        self.profiles = list(profiles)
        self.num_profiles = len(self.profiles)
        self._make = make_enqueuer

    def profile_shapes(self, index: int) -> dict[str, tuple[Any, Any, Any]]:
        return {n: (p.min, p.opt, p.max) for n, p in self.profiles[index].items()}

    def profile_memory_size(self, index: int) -> int | None:
        return None

    def create_enqueuer(self, index: int) -> _Selectable:
        return _Selectable(self._make())


class _StandInAdapter:
    def __init__(self, engine: StandInEngine) -> None:
        self.engine = engine

    def tensorrt_version(self) -> str:
        return "stand-in (not TensorRT)"

    def deserialize_engine(self, plan: bytes) -> StandInEngine:
        return self.engine


def standin_runner(engine: StandInEngine, name: str = "standin", **kwargs: Any) -> TensorRTRunner:
    """A real TensorRTRunner over ``engine`` (the adapter is swapped only while it loads)."""
    real = runner_mod.adapter
    runner_mod.adapter = _StandInAdapter(engine)  # type: ignore[assignment]
    try:
        return TensorRTRunner(b"stand-in plan", name, **kwargs)
    finally:
        runner_mod.adapter = real
