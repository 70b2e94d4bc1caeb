"""ONNX Runtime CPU sessions do not busy-wait (issue 22): spinning workers burned 1.3-1.7x the
CPU time per det/rec call on 2 cores and starve the pipelined path's other stages."""

from __future__ import annotations

import numpy as np

from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner
from paddleocr_trt.engines.onnxruntime.session import session_options
from paddleocr_trt.model_types import ModelType

SPIN_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _spinning(options) -> list[str]:
    """The two spinning entries ("": not set, ONNX Runtime's default, which spins)."""
    out = []
    for key in SPIN_KEYS:
        try:
            out.append(options.get_session_config_entry(key))
        except RuntimeError:  # "does not have configuration with key"
            out.append("")
    return out


def test_cpu_runner_and_its_masked_sum_session_do_not_spin(onnx_models) -> None:
    det = onnx_models[ModelType.DETECTION].onnx_path
    runner = OnnxRuntimeRunner(det, threads=2, resident_outputs=[0])
    assert _spinning(runner._session.get_session_options()) == ["0", "0"]
    assert runner._session.get_session_options().intra_op_num_threads == 2
    image = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    (prob,) = runner.infer([image])
    assert prob.shape[-2:] == (64, 96)  # a resident map, summed by the masked-sum session
    sums = runner._sums.session.get_session_options()
    assert _spinning(sums) == ["0", "0"] and sums.intra_op_num_threads == 1
    runner.close()


def test_spinning_stays_available_for_gpu_providers() -> None:
    assert _spinning(session_options(2, spinning=True)) == ["", ""]  # ONNX Runtime's default
    assert _spinning(session_options()) == ["0", "0"]
