"""Load a plan and run it: the engine, one execution context per optimization profile.

Contexts are created with ``ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE``: the default
(STATIC) reserves, in *every* context, the device memory of the largest profile of the engine,
and the runner makes one context per profile used. With ON_PROFILE_CHANGE a context holds only
what its own profile needs, allocated when the profile is selected. The profile is selected on
the stream the context will run on (``NvInferRuntime.h``: the stream given to
``setOptimizationProfileAsync`` must be ordered with the enqueue stream), so selection is a
separate step, :meth:`TrtEnqueuer.select_profile`, taken once the executor's stream exists.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ....errors import OutOfMemoryError
from ....profiles import ShapeNotCoveredError
from .api import (
    EngineExecutionError,
    _api,
    _call,
    _get,
    _new,
    engine_label,
    load_tensorrt,
    logger,
    tensorrt_version,
)
from .build import failure
from .rtx import (
    Validity,
    create_context,
    engine_validity,
    is_rtx,
    new_runtime_cache,
    runtime_config,
    serialize_runtime_cache,
)
from .trtlog import recording_logger
from .versions import decide_device_memory_property, decide_profile_memory_method


@dataclass(frozen=True)
class TensorInfo:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 = dynamic


class Engine:
    """A deserialized engine plus the runtime and logger that must outlive it."""

    def __init__(self, runtime: Any, engine: Any, log: Any) -> None:
        self._runtime = runtime
        self._engine = engine
        self._log = log
        #: TensorRT-RTX: the runtime cache shared by this engine's contexts (None: none/full TRT)
        self._runtime_cache: Any = None
        self.rtx = is_rtx()
        #: seconds per stage: "context_seconds" (TensorRT-RTX specialises kernels there)
        self.timings: dict[str, float] = {"context_seconds": 0.0}
        names = [
            str(_call(engine, "ICudaEngine.get_tensor_name", i))
            for i in range(int(_get(engine, "ICudaEngine.num_io_tensors")))
        ]
        self.tensors = [_tensor_info(engine, n) for n in names]
        self.input_names = [n for n, t in zip(names, self.tensors, strict=True) if t.is_input]
        self.output_names = [n for n, t in zip(names, self.tensors, strict=True) if not t.is_input]

    @property
    def inputs(self) -> list[TensorInfo]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [t for t in self.tensors if not t.is_input]

    @property
    def num_profiles(self) -> int:
        return int(_get(self._engine, "ICudaEngine.num_optimization_profiles"))

    def profile_shapes(self, index: int) -> dict[str, tuple[tuple[int, ...], ...]]:
        """{input: (min, opt, max)} of profile ``index`` as stored in the engine."""
        return {
            n: tuple(
                tuple(d)
                for d in _call(self._engine, "ICudaEngine.get_tensor_profile_shape", n, index)
            )
            for n in self.input_names
        }

    def device_memory_size(self) -> int | None:
        """The most device memory any one context of this engine may need (all profiles)."""
        name = decide_device_memory_property(load_tensorrt())
        return None if name is None else int(_get(self._engine, name))

    def profile_memory_size(self, index: int) -> int | None:
        """Device memory a context needs for profile ``index`` (None where not queryable)."""
        if decide_profile_memory_method(load_tensorrt()) is None:
            return None
        return int(_call(self._engine, "ICudaEngine.get_device_memory_size_for_profile_v2", index))

    def attach_runtime_cache(self, blob: bytes | None) -> bool:
        """TensorRT-RTX: give every later context a runtime cache, loaded from ``blob`` (the
        kernels specialised on an earlier start). True when ``blob`` was accepted; TensorRT-RTX
        refuses one from another version, GPU model or driver major (then it starts empty)."""
        if not self.rtx:
            return False
        self._runtime_cache, loaded = new_runtime_cache(self._engine, blob)
        return loaded

    def runtime_cache_bytes(self) -> bytes | None:
        """The runtime cache as it is now (to save for the next start), None where there is none."""
        if self._runtime_cache is None:
            return None
        return serialize_runtime_cache(self._runtime_cache)

    def _create_context(self, strategy: Any) -> Any:
        if not self.rtx:
            return _call(self._engine, "ICudaEngine.create_execution_context", strategy)
        from ....progress import stage

        started = time.perf_counter()
        with stage("TensorRT-RTX: specialising kernels for this GPU (cached for the next start)"):
            ctx = create_context(
                self._engine, runtime_config(self._engine, strategy, self._runtime_cache)
            )
        self.timings["context_seconds"] += time.perf_counter() - started
        return ctx

    def create_enqueuer(self, profile_index: int = 0) -> TrtEnqueuer:
        """An execution context for one profile, wrapped as the CUDA layer's Enqueuer.

        The context allocates nothing yet (ON_PROFILE_CHANGE); call
        :meth:`TrtEnqueuer.select_profile` with the stream it will run on before using it.
        OutOfMemoryError when TensorRT cannot allocate the context itself.
        """
        self._log.reset_errors()
        strategy = _api("ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE")
        try:
            ctx = self._create_context(strategy)
        except MemoryError as exc:
            raise OutOfMemoryError(f"creating a TensorRT execution context: {exc}") from exc
        if ctx is None:
            raise failure(
                "creating a TensorRT execution context",
                self._log.recorded_errors(),
                EngineExecutionError,
            )
        return TrtEnqueuer(
            ctx, self.input_names, self.output_names, self._log, profile_index=profile_index
        )


def _tensor_info(engine: Any, name: str) -> TensorInfo:
    mode = _call(engine, "ICudaEngine.get_tensor_mode", name)
    trt_dtype = _call(engine, "ICudaEngine.get_tensor_dtype", name)
    return TensorInfo(
        name=name,
        is_input=mode == _api("TensorIOMode.INPUT"),
        dtype=np.dtype(_api("nptype")(trt_dtype)),
        shape=tuple(int(d) for d in _call(engine, "ICudaEngine.get_tensor_shape", name)),
    )


def plan_validity(plan: bytes) -> Validity:
    """Whether this machine's GPU can run ``plan`` (TensorRT-RTX's ``get_engine_validity``,
    checked without deserialising); "unchecked" under full TensorRT, which has no such query."""
    trt = load_tensorrt()
    try:
        runtime = _new("Runtime", recording_logger(trt))
    except (RuntimeError, TypeError) as exc:
        return Validity("invalid", (f"no TensorRT runtime: {exc}",))
    return engine_validity(runtime, plan)


def deserialize_engine(plan: bytes) -> Engine | None:
    """None when TensorRT cannot load the plan (other TensorRT version or GPU, corrupt bytes):
    a cache miss, never a crash. TensorRT-RTX plans are checked first (``plan_validity``); the
    reason for refusing one is logged."""
    trt = load_tensorrt()
    log = recording_logger(trt)
    log.reset_errors()
    try:
        runtime = _new("Runtime", log)
        validity = engine_validity(runtime, plan)
        if not validity.loadable:
            logger.warning(
                "%s cannot run this plan on this GPU (%s); treating it as a cache miss",
                engine_label(trt),
                validity.message(),
            )
            return None
        if validity.status == "suboptimal":
            logger.info("%s: plan is %s", engine_label(trt), validity.message())
        engine = _call(runtime, "Runtime.deserialize_cuda_engine", bytes(plan))
    except (RuntimeError, TypeError, ValueError) as exc:
        logger.info("TensorRT could not load the plan (%s); treating it as a cache miss", exc)
        return None
    if engine is None:
        logger.info(
            "TensorRT %s could not load the plan (%s); treating it as a cache miss",
            tensorrt_version(trt),
            "; ".join(log.recorded_errors()[-3:]) or "no reason given",
        )
        return None
    return Engine(runtime, engine, log)


class TrtEnqueuer:
    """The CUDA layer's ``Enqueuer`` over one IExecutionContext (one optimization profile)."""

    def __init__(
        self,
        context: Any,
        input_names: Sequence[str],
        output_names: Sequence[str],
        log: Any,
        *,
        profile_index: int = 0,
    ) -> None:
        self._ctx = context
        self._in = list(input_names)
        self._out = list(output_names)
        self._log = log
        self.profile_index = profile_index
        #: The stream the profile was selected on; every enqueue must use it.
        self.stream_handle: int | None = None

    def select_profile(self, stream_handle: int) -> None:
        """Select this enqueuer's profile on the stream it will run on (allocates its memory).

        OutOfMemoryError when the context's memory cannot be allocated, EngineExecutionError for
        other refusals. Idempotent for the same stream.
        """
        if self.stream_handle is not None:
            if int(stream_handle) != self.stream_handle:
                raise EngineExecutionError(
                    f"profile {self.profile_index} was selected on stream {self.stream_handle}, "
                    f"not {int(stream_handle)}"
                )
            return
        self._log.reset_errors()
        what = f"selecting optimization profile {self.profile_index}"
        try:
            ok = _call(
                self._ctx,
                "IExecutionContext.set_optimization_profile_async",
                self.profile_index,
                int(stream_handle),
            )
        except (RuntimeError, MemoryError) as exc:  # the bindings assert instead of False
            errors = [*self._log.recorded_errors(), str(exc)]
            raise failure(what, errors, EngineExecutionError) from exc
        if not ok:
            raise failure(what, self._log.recorded_errors(), EngineExecutionError)
        self.stream_handle = int(stream_handle)

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        if self.stream_handle is None:
            raise EngineExecutionError("select_profile(stream) must come before input shapes")
        if len(shapes) != len(self._in):
            raise ValueError(f"expected {len(self._in)} input shapes, got {len(shapes)}")
        for name, shape in zip(self._in, shapes, strict=True):
            dims = tuple(int(d) for d in shape)
            try:
                ok = _call(self._ctx, "IExecutionContext.set_input_shape", name, dims)
            except RuntimeError as exc:  # the bindings assert instead of returning False
                ok, detail = False, str(exc)
            else:
                detail = ""
            if not ok:
                raise ShapeNotCoveredError(
                    f"TensorRT rejected shape {dims} for input {name!r}: outside the context's "
                    f"optimization profile {self.profile_index} {detail}".rstrip()
                )
        result = []
        for name in self._out:
            out_shape = tuple(
                int(d) for d in _call(self._ctx, "IExecutionContext.get_tensor_shape", name)
            )
            if any(d < 0 for d in out_shape):
                raise ShapeNotCoveredError(f"output {name!r} shape unresolved: {out_shape}")
            result.append(out_shape)
        return result

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        for name, ptr in zip([*self._in, *self._out], [*input_ptrs, *output_ptrs], strict=True):
            if not _call(self._ctx, "IExecutionContext.set_tensor_address", name, int(ptr)):
                raise EngineExecutionError(f"TensorRT refused the device address of {name!r}")

    def enqueue(self, stream_handle: int) -> None:
        if self.stream_handle is not None and int(stream_handle) != self.stream_handle:
            raise EngineExecutionError(
                f"enqueue on stream {int(stream_handle)}, but profile {self.profile_index} was "
                f"selected on stream {self.stream_handle}"
            )
        self._log.reset_errors()
        if not _call(self._ctx, "IExecutionContext.execute_async_v3", int(stream_handle)):
            raise failure(
                "TensorRT execute_async_v3", self._log.recorded_errors(), EngineExecutionError
            )
