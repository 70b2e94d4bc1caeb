"""Native Paddle Inference runner: the reference every converted artifact is validated against.

It configures ``paddle.inference`` the way PaddleX's ``PaddleStaticRunner`` does for plain
(non-TensorRT) run modes, so "agrees with this runner" means "agrees with what PaddleOCR would
have computed". ``paddle`` is imported only when a runner is built: importing this package must
stay cheap for users who never touch the native path.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelDirError
from ...log import get_logger
from ...model_types import ModelFiles, locate_model_files
from ..base import BaseRunner

log = get_logger("backend.paddle")

_DEFAULT_CPU_THREADS = 10  # PaddleX's default for cpu_threads


class PaddleInferenceRunner(BaseRunner):
    """Runs a Paddle inference model dir (legacy ``.pdmodel`` or PIR ``.json``) natively."""

    backend = "paddle"

    def __init__(
        self,
        model_dir: str | Path | ModelFiles,
        *,
        device: str = "cpu",
        enable_mkldnn: bool = False,
        cpu_threads: int | None = None,
        name: str | None = None,
    ) -> None:
        self.model_files: ModelFiles = (
            model_dir if isinstance(model_dir, ModelFiles) else locate_model_files(model_dir)
        )
        if not self.model_files.format.is_paddle:
            raise ModelDirError(
                f"{self.model_files.model_dir}: {self.model_files.program.name} is an ONNX "
                "model; Paddle Inference runs inference.json/inference.pdmodel"
            )
        super().__init__(name or self.model_files.model_dir.name)
        self.device = device
        self._predictor = _create_predictor(
            self.model_files, device=device, enable_mkldnn=enable_mkldnn, cpu_threads=cpu_threads
        )
        self.input_names: list[str] = list(self._predictor.get_input_names())
        self.output_names: list[str] = list(self._predictor.get_output_names())
        self._inputs = [self._predictor.get_input_handle(n) for n in self.input_names]
        self._outputs = [self._predictor.get_output_handle(n) for n in self.output_names]
        # One Paddle predictor's handles are shared state: one call at a time.
        self._lock = threading.Lock()
        log.debug(
            "paddle runner %s: %s on %s (inputs %s, outputs %s)",
            self.name,
            self.model_files.program,
            device,
            self.input_names,
            self.output_names,
        )

    def infer(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            self.check_inputs(inputs)
            for handle, array in zip(self._inputs, inputs, strict=True):
                array = np.ascontiguousarray(array)
                handle.reshape(list(array.shape))
                handle.copy_from_cpu(array)
            self._predictor.run()
            return [handle.copy_to_cpu() for handle in self._outputs]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._inputs, self._outputs = [], []
                self._predictor = None
            super().close()


def _create_predictor(
    files: ModelFiles, *, device: str, enable_mkldnn: bool, cpu_threads: int | None
) -> Any:
    import paddle
    from paddle import inference as paddle_inference

    config = paddle_inference.Config(str(files.program), str(files.params))
    kind, _, index = device.partition(":")
    kind = kind.strip().lower()
    if kind == "gpu":
        if not paddle.is_compiled_with_cuda():
            raise RuntimeError(f"device {device!r} requested but this paddle has no CUDA support")
        config.exp_disable_mixed_precision_ops({"feed", "fetch"})
        config.disable_mkldnn()
        config.enable_use_gpu(100, int(index or 0), paddle_inference.PrecisionType.Float32)
    elif kind == "cpu":
        config.disable_gpu()
        if enable_mkldnn:
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(10)
        else:
            config.disable_mkldnn()
        config.set_cpu_math_library_num_threads(cpu_threads or _DEFAULT_CPU_THREADS)
        config.set_optimization_level(3)
    else:
        raise ValueError(f"unsupported device {device!r}; expected 'cpu' or 'gpu[:N]'")
    if hasattr(config, "enable_new_ir"):
        config.enable_new_ir(True)
    if hasattr(config, "enable_new_executor"):
        config.enable_new_executor()
    config.enable_memory_optim()
    config.disable_glog_info()
    return paddle_inference.create_predictor(config)
