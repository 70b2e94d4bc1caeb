"""TensorRT engine runner: profile choice, batch splitting, OOM back-off, native fallback.

Failure policy at inference: a shape outside every profile goes to the fallback for that call
only (``fallback_calls``); an execution context that cannot get GPU memory makes its profile
unusable (after one retry with the other contexts released) and the call is routed to another
covering profile or the fallback; any other TensorRT/CUDA failure switches the runner to its
fallback for good (``disabled_reason``, ``runtime_fallback_calls``, one warning), because a
context that failed once is not trusted again. Without a fallback every failure is raised.

Resident outputs (``resident_outputs``, by name) stay on the GPU: they come back as
``DeviceResidentMap`` (read window by window, ``release()`` once read), a split batch's pieces
joined without a copy; the fallback's arrays for them are wrapped in ``HostResidentMap`` so a
caller always gets the same kind of object for the same output.

Zero-copy inputs (``input_views``): a producer may write its batch straight into the pinned input
buffers of the context ``infer`` will pick, under a lease (``input_views.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...backend.base import BaseRunner
from ...errors import CacheError
from ...log import get_logger, warn_once
from ...postprocess.resident import HostResidentMap
from ...profiles import (
    ShapeNotCoveredError,
    ShapeProfile,
    select_profile,
    select_profile_for_split,
    split_batch,
)
from . import adapter
from .contexts import (
    ContextMemoryError,
    NoContextMemoryError,
    ProfileContexts,
    _device_scope,
)
from .input_views import InputLease, LeaseSlots, lease_input_views

logger = get_logger("trt.runner")


class TensorRTRunner(ProfileContexts, BaseRunner):
    """Runs a serialized engine; one execution context + CudaExecutor per profile, made lazily.

    Calls whose shapes no profile covers go to ``fallback`` (counted in ``fallback_calls``,
    logged once per runner) or raise ShapeNotCoveredError without one. Batches above a covering
    profile's max batch are split; a GPU OOM while running halves the batch
    (``run_with_backoff``). ``use_cuda_graphs`` replays a captured graph per input-shape set
    (at most ``cuda_graph_cache_size`` per profile; shapes re-set on the context before replay).
    See the module docstring for the failure policy; the contexts are ``contexts.py``'s.
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
        resident_outputs: Sequence[str] = (),
        runtime_cache: Any = None,
    ) -> None:
        super().__init__(name)
        data = plan if isinstance(plan, bytes) else Path(plan).read_bytes()
        started = time.perf_counter()
        with _device_scope(device_id):
            engine = adapter.deserialize_engine(data)
        if engine is None:
            raise CacheError(
                f"{name}: {adapter.engine_label()} cannot load this plan ({_why_not(data)}); "
                "rebuild it"
            )
        self.engine = engine
        #: seconds per stage of getting the engine ready (``timings_report``)
        self.timings: dict[str, float] = {"deserialize_seconds": time.perf_counter() - started}
        #: TensorRT-RTX: ``runtime_cache.RuntimeCacheFile`` of this engine (None: not kept)
        self.runtime_cache = runtime_cache if getattr(engine, "rtx", False) else None
        if self.runtime_cache is not None:
            with _device_scope(device_id):
                loaded = engine.attach_runtime_cache(self.runtime_cache.load())
            logger.info(
                "%s: TensorRT-RTX runtime cache %s",
                name,
                "loaded: kernels specialised on an earlier start are reused"
                if loaded
                else "empty: each profile's first context specialises kernels for this GPU",
            )
        self.fallback = fallback
        self.fallback_calls = 0
        #: Calls served by the fallback because the engine failed for good (not shapes).
        self.runtime_fallback_calls = 0
        #: Why the runner stopped using TensorRT (None while it works).
        self.disabled_reason: str | None = None
        #: Profiles whose execution context could not get GPU memory.
        self.unusable_profiles: set[int] = set()
        self.device_id = device_id
        self.use_cuda_graphs = use_cuda_graphs
        #: CUDA graphs kept per execution context (LRU); one per input-shape set
        self.cuda_graph_cache_size = cuda_graph_cache_size
        self.input_names = list(engine.input_names)
        self.output_names = list(engine.output_names)
        #: Outputs left on the device (ResidentMap results), in the engine's output order.
        self.resident_outputs = _resident_names(resident_outputs, self.output_names, name)
        self.profiles: list[dict[str, ShapeProfile]] = [
            {n: ShapeProfile(*shapes) for n, shapes in engine.profile_shapes(i).items()}
            for i in range(engine.num_profiles)
        ]
        self._executors: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._leases = LeaseSlots(name)

    # -- inference --------------------------------------------------------------------------

    def input_views(self, shapes: Sequence[Sequence[int]]) -> InputLease | None:
        """A lease on the pinned input buffers ``infer`` would use for ``shapes`` (one shape
        per input), or None: then build plain arrays. Fill ``lease.views`` and pass them to
        ``infer``, which releases the lease when it returns; use it as a context manager so an
        unused (or failed) lease is given back. See ``input_views.py``."""
        return lease_input_views(self, shapes)

    def infer(self, inputs: Sequence[np.ndarray]) -> list[Any]:
        """Outputs in engine order: arrays, and ResidentMaps for the resident outputs.

        Inputs that are a lease's views release that lease when the call returns; on an
        exception it goes back to its holder unused, so a fallback still reads intact views.
        """
        self.check_inputs(inputs)
        lease = self._leases.claim(inputs)
        try:
            outputs = self._infer(inputs, lease)
        except BaseException:
            if lease is not None:
                self._leases.reopen(lease)
            raise
        if lease is not None:
            lease.release()
        return outputs

    def _infer(self, inputs: Sequence[np.ndarray], lease: InputLease | None) -> list[Any]:
        if self.disabled_reason is not None and self.fallback is not None:
            self.runtime_fallback_calls += 1
            return self._host_resident(self.fallback.infer(list(inputs)))
        arrays = [
            np.ascontiguousarray(x, dtype=t.dtype)
            for x, t in zip(inputs, self.engine.inputs, strict=True)
        ]
        shapes = {n: a.shape for n, a in zip(self.input_names, arrays, strict=True)}
        for _ in range(len(self.profiles) + 1):  # each retry marks one more profile unusable
            try:
                return self._infer_engine(arrays, shapes, lease)
            except ContextMemoryError:
                continue  # that profile is now unusable: route again (another one or fallback)
            except (ShapeNotCoveredError, NoContextMemoryError):
                if self.fallback is None:
                    raise
                return self._host_resident(self._fallback(shapes, list(inputs)))
            except Exception as exc:
                return self._host_resident(self._disable(exc, list(inputs)))
        raise AssertionError("unreachable: every profile was marked unusable")

    def _infer_engine(
        self,
        arrays: list[np.ndarray],
        shapes: dict[str, tuple[int, ...]],
        lease: InputLease | None = None,
    ) -> list[np.ndarray]:
        usable = self._usable()
        index = select_profile(usable, shapes)
        if index is not None:
            return self._run_profile_marked(index, arrays, lease)
        split = select_profile_for_split(usable, shapes)
        if split is not None:
            index, chunk = split
            parts = [
                self._run_profile_marked(index, [a[s] for a in arrays], lease)
                for s in split_batch(arrays[0].shape[0], chunk)
            ]
            return [concat_outputs(outs) for outs in zip(*parts, strict=True)]
        if self.unusable_profiles and (
            select_profile(self.profiles, shapes) is not None
            or select_profile_for_split(self.profiles, shapes) is not None
        ):
            raise NoContextMemoryError(
                f"{self.name}: the profiles covering {shapes} have no GPU memory for a context "
                f"(unusable: {sorted(self.unusable_profiles)})"
            )
        raise ShapeNotCoveredError(
            f"{self.name}: input shapes {shapes} are outside every optimization profile "
            f"{[{n: p.to_dict() for n, p in prof.items()} for prof in self.profiles]}"
        )

    def _host_resident(self, outputs: list[Any]) -> list[Any]:
        """The fallback's arrays for resident outputs as HostResidentMaps (same kind of result
        whichever engine ran; ``fetched_bytes`` then counts what the caller reads)."""
        if not self.resident_outputs:
            return outputs
        out = list(outputs)
        for i, n in enumerate(self.output_names):
            if n in self.resident_outputs and isinstance(out[i], np.ndarray):
                out[i] = HostResidentMap(out[i])
        return out

    def _disable(self, exc: Exception, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self.fallback is None:
            raise exc
        self.disabled_reason = f"{type(exc).__name__}: {exc}"
        self.runtime_fallback_calls += 1
        warn_once(
            ("trt-runtime-fallback", self.name),
            "%s: TensorRT failed (%s); every later call runs on %s (logged once; counted in "
            "runtime_fallback_calls)",
            self.name,
            self.disabled_reason,
            self.fallback.backend,
        )
        with self._lock:
            self._close_executors()
        return self.fallback.infer(inputs)

    def _fallback(self, shapes: dict[str, tuple[int, ...]], inputs: list[np.ndarray]):
        assert self.fallback is not None
        with self._lock:  # calls may come from several threads (pipelined path)
            self.fallback_calls += 1
        warn_once(
            ("trt-shape-fallback", self.name),
            "%s: input shapes %s are outside the engine's usable optimization profiles; running "
            "them on %s (logged once; counted in fallback_calls)",
            self.name,
            shapes,
            self.fallback.backend,
        )
        return self.fallback.infer(inputs)

    def timings_report(self) -> dict[str, float]:
        """Seconds per stage: deserialising, creating contexts (TensorRT-RTX specialises kernels
        there), loading and saving its runtime cache."""
        out = dict(self.timings) | dict(getattr(self.engine, "timings", {}))
        if self.runtime_cache is not None:
            out |= self.runtime_cache.timings
        return out

    def fallback_summary(self) -> dict[str, Any]:
        """What the demo/report shows: calls served natively and why."""
        return {
            "fallback_calls": self.fallback_calls,
            "runtime_fallback_calls": self.runtime_fallback_calls,
            "disabled_reason": self.disabled_reason,
            "unusable_profiles": sorted(self.unusable_profiles),
        }

    def close(self) -> None:
        with self._lock:
            self._close_executors()
        super().close()


def _why_not(plan: bytes) -> str:
    """Why a plan did not load: TensorRT-RTX's validity reasons, else the usual suspects."""
    try:
        validity = adapter.plan_validity(plan)
    except Exception:  # the reason is a courtesy; the refusal stands either way
        validity = None
    if validity is not None and validity.status != "unchecked":
        return validity.message()
    return "built by another version or for another GPU, or corrupt; see the log"


def concat_outputs(parts: Sequence[Any]) -> Any:
    from ...backend.cuda.concat import concat_outputs as concat

    return concat(parts)


def _resident_names(names: Sequence[str], outputs: Sequence[str], runner: str) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{runner}: resident_outputs is a sequence of names, not {names!r}")
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ValueError(f"{runner}: no output named {unknown} (outputs: {list(outputs)})")
    if len(set(names)) != len(names):
        raise ValueError(f"{runner}: resident_outputs names an output twice: {list(names)}")
    return [n for n in outputs if n in names]
