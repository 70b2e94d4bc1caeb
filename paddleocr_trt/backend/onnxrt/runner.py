"""ONNX Runtime runner: the second engine backend (CPU, or CUDA with onnxruntime-gpu), and the
runtime that checks converted graphs on machines without a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...log import get_logger
from ..base import BaseRunner

log = get_logger("backend.onnxrt")


class OnnxRuntimeRunner(BaseRunner):
    """One ``onnxruntime.InferenceSession`` over an ONNX file; CPU provider unless told."""

    backend = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        name: str | None = None,
        threads: int | None = None,
        device_id: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.onnx_path = Path(onnx_path)
        super().__init__(name or self.onnx_path.stem)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # initializer clean-up chatter is not the user's concern
        if threads:
            options.intra_op_num_threads = int(threads)
        chosen: list = []
        for provider in providers or ["CPUExecutionProvider"]:
            if provider == "CUDAExecutionProvider":
                chosen.append((provider, {"device_id": int(device_id)}))
            else:
                chosen.append(provider)
        self._session = ort.InferenceSession(str(self.onnx_path), options, providers=chosen)
        self.input_names: list[str] = [i.name for i in self._session.get_inputs()]
        self.output_names: list[str] = [o.name for o in self._session.get_outputs()]
        self.providers: list[str] = list(self._session.get_providers())
        log.debug("onnxruntime runner %s: %s on %s", self.name, self.onnx_path, self.providers)

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Safe from several threads at once: ``InferenceSession.run`` is thread-safe."""
        self.check_inputs(inputs)
        session = self._session  # close() from another thread must not leave us a None
        if session is None:
            raise RuntimeError(f"{self!r} is closed")
        feed = {
            name: np.ascontiguousarray(array)
            for name, array in zip(self.input_names, inputs, strict=True)
        }
        return list(session.run(self.output_names, feed))

    def close(self) -> None:
        self._session = None
        super().close()
