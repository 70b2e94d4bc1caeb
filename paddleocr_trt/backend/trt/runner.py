"""TensorRT engine runner: profile choice, batch splitting, OOM back-off, native fallback."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import CacheError
from ...log import get_logger, warn_once
from ...profiles import (
    ShapeNotCoveredError,
    ShapeProfile,
    select_profile,
    select_profile_for_split,
    split_batch,
)
from ..base import BaseRunner
from . import adapter

logger = get_logger("trt.runner")


class TensorRTRunner(BaseRunner):
    """Runs a serialized engine; one execution context + CudaExecutor per profile, made lazily.

    Calls whose shapes no profile covers go to ``fallback`` (counted in
    ``fallback_calls``, logged once per runner) or raise ShapeNotCoveredError without one.
    Batches above a covering profile's max batch are split; a GPU OOM halves the batch
    (``run_with_backoff``). ``use_cuda_graphs`` replays a captured graph per input-shape set
    (at most ``cuda_graph_cache_size`` per profile; shapes re-set on the context before replay).
    """

    backend = "tensorrt"

    def __init__(
        self,
        plan: bytes | str | Path,
        name: str = "tensorrt",
        *,
        fallback: BaseRunner | None = None,
        device_id: int = 0,
        use_cuda_graphs: bool = False,
        cuda_graph_cache_size: int = 16,
    ) -> None:
        super().__init__(name)
        from ..cuda.runtime import device_scope

        data = plan if isinstance(plan, bytes) else Path(plan).read_bytes()
        with device_scope(device_id):
            engine = adapter.deserialize_engine(data)
        if engine is None:
            raise CacheError(
                f"{name}: TensorRT {adapter.tensorrt_version()} cannot load this plan (built by "
                "another TensorRT version or for another GPU, or corrupt); rebuild it"
            )
        self.engine = engine
        self.fallback = fallback
        self.fallback_calls = 0
        self.device_id = device_id
        self.use_cuda_graphs = use_cuda_graphs
        #: CUDA graphs kept per execution context (LRU); one per input-shape set
        self.cuda_graph_cache_size = cuda_graph_cache_size
        self.input_names = list(engine.input_names)
        self.profiles: list[dict[str, ShapeProfile]] = [
            {n: ShapeProfile(*shapes) for n, shapes in engine.profile_shapes(i).items()}
            for i in range(engine.num_profiles)
        ]
        self._executors: dict[int, object] = {}
        self._lock = threading.Lock()

    def _executor(self, index: int):  # -> CudaExecutor
        with self._lock:
            if index not in self._executors:
                from ..cuda.executor import CudaExecutor
                from ..cuda.runtime import device_scope

                with device_scope(self.device_id):
                    enqueuer = self.engine.create_enqueuer(index)
                self._executors[index] = CudaExecutor(
                    enqueuer,
                    input_dtypes=[t.dtype for t in self.engine.inputs],
                    output_dtypes=[t.dtype for t in self.engine.outputs],
                    device_id=self.device_id,
                    use_cuda_graphs=self.use_cuda_graphs,
                    graph_cache_size=self.cuda_graph_cache_size,
                    input_names=self.input_names,
                )
            return self._executors[index]

    def _run_profile(self, index: int, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from ..cuda.oom import run_with_backoff

        executor = self._executor(index)
        if len(inputs) == 1:
            return run_with_backoff(inputs[0], lambda x: executor.run([x]), what=self.name)
        return executor.run(inputs)  # multi-input models: no per-input halving

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.check_inputs(inputs)
        arrays = [
            np.ascontiguousarray(x, dtype=t.dtype)
            for x, t in zip(inputs, self.engine.inputs, strict=True)
        ]
        shapes = {n: a.shape for n, a in zip(self.input_names, arrays, strict=True)}
        index = select_profile(self.profiles, shapes)
        if index is not None:
            return self._run_profile(index, arrays)
        split = select_profile_for_split(self.profiles, shapes)
        if split is not None:
            index, chunk = split
            parts = [
                self._run_profile(index, [a[s] for a in arrays])
                for s in split_batch(arrays[0].shape[0], chunk)
            ]
            return [np.concatenate(outs, axis=0) for outs in zip(*parts, strict=True)]
        return self._fallback(shapes, list(inputs))

    def _fallback(self, shapes: dict[str, tuple[int, ...]], inputs: list[np.ndarray]):
        if self.fallback is None:
            raise ShapeNotCoveredError(
                f"{self.name}: input shapes {shapes} are outside every optimization profile "
                f"{[{n: p.to_dict() for n, p in prof.items()} for prof in self.profiles]}"
            )
        with self._lock:  # calls may come from several threads (pipelined path)
            self.fallback_calls += 1
        warn_once(
            ("trt-shape-fallback", self.name),
            "%s: input shapes %s are outside the engine's optimization profiles; running them "
            "on %s (logged once; counted in fallback_calls)",
            self.name,
            shapes,
            self.fallback.backend,
        )
        return self.fallback.infer(inputs)

    def close(self) -> None:
        with self._lock:
            for executor in self._executors.values():
                executor.close()
            self._executors.clear()
        super().close()
