"""ONNX Runtime runner: the second engine backend (CPU, or CUDA with onnxruntime-gpu), and the
runtime that checks converted graphs on machines without a GPU."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...backend.base import BaseRunner, in_one_thread_lane
from ...log import get_logger
from .session import session_options

log = get_logger("backend.onnxrt")


class OnnxRuntimeRunner(BaseRunner):
    """One ``onnxruntime.InferenceSession`` over an ONNX file; CPU provider unless told."""

    backend = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path | bytes,
        *,
        providers: Sequence[str] | None = None,
        name: str | None = None,
        threads: int | None = None,
        device_id: int = 0,
        resident_outputs: Sequence[str | int] = (),
    ) -> None:
        import onnxruntime as ort

        # bytes: a model the cache read and checked itself (``CacheEntry.read_artifact``)
        model = onnx_path if isinstance(onnx_path, bytes) else None
        self.onnx_path = None if model is not None else Path(onnx_path)  # type: ignore[arg-type]
        super().__init__(name or (self.onnx_path.stem if self.onnx_path else "onnxruntime"))
        # spinning workers pay only where the host threads are not the engine's (GPU providers)
        cpu_only = list(providers or ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
        options = session_options(threads, spinning=not cpu_only)
        chosen: list = []
        for provider in providers or ["CPUExecutionProvider"]:
            if provider == "CUDAExecutionProvider":
                chosen.append((provider, {"device_id": int(device_id)}))
            else:
                chosen.append(provider)
        #: what the sessions are made from: the checked bytes, or the path
        self._source: bytes | str = model if model is not None else str(self.onnx_path)
        self._session = ort.InferenceSession(self._source, options, providers=chosen)
        #: intra-op threads asked for (None: ONNX Runtime's default, one per physical core)
        self.threads = threads
        #: a one-thread session over the same graph, made on the first call from a one-thread
        #: lane (``backend.base.mark_one_thread_lane``); CPU provider only
        self._lane_session: object | None = None
        self._lane_lock = threading.Lock()
        self._cpu_only = cpu_only
        self._chosen = chosen
        self.input_names: list[str] = [i.name for i in self._session.get_inputs()]
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        self.providers: list[str] = list(self._session.get_providers())
        names = [self.output_names[r] if isinstance(r, int) else r for r in resident_outputs]
        unknown = [n for n in names if n not in self.output_names]
        if unknown:
            raise KeyError(f"no output named {unknown} (outputs: {self.output_names})")
        #: outputs returned as resident maps (kept in ONNX Runtime; CPU provider only: a map
        #: on another device would be copied whole to meet the CPU masked-sum graph)
        self.resident_outputs: tuple[str, ...] = (
            tuple(names) if self.providers[0] == "CPUExecutionProvider" else ()
        )
        self._sums: object | None = None
        log.debug("onnxruntime runner %s: %s on %s", self.name, self.onnx_path, self.providers)

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Safe from several threads at once: ``InferenceSession.run`` is thread-safe."""
        self.check_inputs(inputs)
        session = self._session_for_this_thread()
        feed = {
            name: np.ascontiguousarray(array)
            for name, array in zip(self.input_names, inputs, strict=True)
        }
        if not self.resident_outputs:
            return list(session.run(self.output_names, feed))
        return self._infer_resident(session, feed)

    @property
    def source(self) -> bytes | str:
        """What the session was made from: the checked bytes, or the path."""
        return self._source

    def _session_for_this_thread(self) -> object:
        session = self._session  # close() from another thread must not leave us a None
        if session is None:
            raise RuntimeError(f"{self!r} is closed")
        if not (self._cpu_only and self.threads != 1 and in_one_thread_lane()):
            return session
        with self._lane_lock:
            if self._lane_session is None:
                import onnxruntime as ort

                self._lane_session = ort.InferenceSession(
                    self._source, session_options(1), providers=self._chosen
                )
                log.debug("onnxruntime runner %s: one-thread lane session made", self.name)
            return self._lane_session

    def _infer_resident(self, session: object, feed: dict[str, np.ndarray]) -> list:
        """Outputs as ``OrtValue`` s: resident ones wrapped, the others copied to numpy."""
        import onnxruntime as ort

        from .resident import MaskedSumSession, OrtResidentMap

        if self._sums is None:
            self._sums = MaskedSumSession(1)  # a few thousand values per page: one thread
        values = session.run_with_ort_values(  # type: ignore[attr-defined]
            self.output_names,
            {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in feed.items()},
        )
        return [
            OrtResidentMap(value, self._sums) if name in self.resident_outputs else value.numpy()
            for name, value in zip(self.output_names, values, strict=True)
        ]

    def close(self) -> None:
        self._session = self._lane_session = None
        super().close()
