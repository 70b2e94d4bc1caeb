"""A TensorRT runner's execution contexts: one per profile, made lazily, memory checked first.

A context is made on first use of its profile, after a free-memory preflight (so an OOM is told
apart from other failures whatever TensorRT's message says); when it cannot get GPU memory the
other contexts are released and it is tried once more, then its profile is marked unusable and
``runner.TensorRTRunner`` routes the call elsewhere. The profile is selected on the executor's
stream. ``_make_executor``, ``_device_scope`` and ``_free_device_memory`` are module functions so
control-flow tests can swap in test doubles where no GPU exists.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import OutOfMemoryError
from ...log import get_logger
from ...profiles import ShapeProfile
from .input_views import InputLease, LeaseSlots

logger = get_logger("trt.runner")


class ContextMemoryError(OutOfMemoryError):
    """An execution context could not get GPU memory; its profile is now unusable."""


class NoContextMemoryError(OutOfMemoryError):
    """Profiles cover the call, but none of them could get GPU memory for a context."""


class ProfileContexts:
    """The per-profile contexts of :class:`runner.TensorRTRunner` (which inherits this)."""

    if TYPE_CHECKING:  # set by TensorRTRunner.__init__
        name: str
        engine: Any
        device_id: int
        use_cuda_graphs: bool
        cuda_graph_cache_size: int
        input_names: list[str]
        output_names: list[str]
        resident_outputs: list[str]
        runtime_cache: Any
        profiles: list[dict[str, ShapeProfile]]
        unusable_profiles: set[int]
        _executors: dict[int, Any]
        _lock: threading.Lock
        _leases: LeaseSlots

    def _new_executor(self, index: int) -> Any:
        """Context for profile ``index`` + its executor; the profile is selected on the
        executor's stream (the one every enqueue of this context uses)."""
        need = self.engine.profile_memory_size(index)
        if need is not None:
            free = _free_device_memory(self.device_id)
            if free is not None and need > free:
                raise OutOfMemoryError(
                    f"{self.name}: the context of profile {index} needs {need >> 20} MiB of "
                    f"device memory, {free >> 20} MiB free on device {self.device_id}"
                )
        with _device_scope(self.device_id):
            enqueuer = self.engine.create_enqueuer(index)
            executor = _make_executor(
                enqueuer,
                input_dtypes=[t.dtype for t in self.engine.inputs],
                output_dtypes=[t.dtype for t in self.engine.outputs],
                device_id=self.device_id,
                use_cuda_graphs=self.use_cuda_graphs,
                graph_cache_size=self.cuda_graph_cache_size,
                input_names=self.input_names,
                output_names=self.output_names,
                resident_outputs=self.resident_outputs,
            )
            try:
                enqueuer.select_profile(executor.stream_handle)
            except BaseException:
                executor.close()
                raise
            if self.runtime_cache is not None:  # the second start skips the specialisation
                self.runtime_cache.save(self.engine.runtime_cache_bytes())
        logger.info(
            "%s: execution context for profile %d %s",
            self.name,
            index,
            "ready" if need is None else f"holds {need / (1 << 20):.0f} MiB of device memory",
        )
        return executor

    def _executor(self, index: int) -> Any:
        with self._lock:
            if index not in self._executors:
                try:
                    self._executors[index] = self._new_executor(index)
                except OutOfMemoryError as exc:
                    if not self._executors:
                        self.unusable_profiles.add(index)
                        raise
                    logger.warning(
                        "%s: no GPU memory for the context of profile %d (%s); releasing the "
                        "other %d context(s) and retrying once",
                        self.name,
                        index,
                        exc,
                        len(self._executors),
                    )
                    self._close_executors()
                    try:
                        self._executors[index] = self._new_executor(index)
                    except OutOfMemoryError:
                        self.unusable_profiles.add(index)
                        raise
            return self._executors[index]

    def _close_executors(self) -> None:
        for executor in self._executors.values():
            try:
                executor.close()
            except Exception as exc:  # closing must not hide the failure being handled
                logger.debug("%s: closing an executor failed: %s", self.name, exc)
        self._executors.clear()

    def _usable(self) -> list[dict[str, ShapeProfile]]:
        """Profiles with the unusable ones replaced by an empty range (indices preserved)."""
        return [{} if i in self.unusable_profiles else p for i, p in enumerate(self.profiles)]

    def _run_profile(
        self, index: int, inputs: list[np.ndarray], lease: InputLease | None
    ) -> list[np.ndarray]:
        from ...backend.cuda.oom import run_with_backoff

        executor = self._executor(index)
        with self._leases.using(index, lease):  # a leased buffer is not overwritten under it
            if len(inputs) == 1:
                return run_with_backoff(inputs[0], lambda x: executor.run([x]), what=self.name)
            return executor.run(inputs)  # multi-input models: no per-input halving

    def _run_profile_marked(
        self, index: int, arrays: list[np.ndarray], lease: InputLease | None = None
    ) -> list[np.ndarray]:
        """Run on profile ``index``; an OOM while making its context is marked as such."""
        if index not in self._executors:
            try:
                self._executor(index)
            except OutOfMemoryError as exc:
                raise ContextMemoryError(
                    f"{self.name}: no GPU memory for the context of profile {index}: {exc}"
                ) from exc
        return self._run_profile(index, arrays, lease)


def _device_scope(device_id: int):  # -> ContextManager[None]
    from ...backend.cuda.runtime import device_scope

    return device_scope(device_id)


def _free_device_memory(device_id: int) -> int | None:
    """Free bytes on the device (None when it cannot be asked): a preflight that tells OOM
    apart from other context failures whatever TensorRT's message says."""
    from ...backend.cuda.runtime import mem_get_info

    try:
        return mem_get_info(device_id)[0]
    except Exception as exc:
        logger.debug("cannot query free device memory: %s", exc)
        return None


def _make_executor(enqueuer: Any, **kwargs: Any) -> Any:
    """A CudaExecutor around ``enqueuer`` (a module function so control-flow tests can swap
    in a test double where no GPU exists)."""
    from ...backend.cuda.executor import CudaExecutor

    return CudaExecutor(enqueuer, **kwargs)
