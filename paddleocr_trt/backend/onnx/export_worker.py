"""The paddle2onnx side of conversion, run only as a child process by ``convert.py``.

paddle and paddle2onnx can abort the interpreter (C++ ``PADDLE_ENFORCE`` failures, segfaults) or
hang, and they mutate global IR state; none of that may reach the user's process. This script
does the three steps that need paddle (translate a legacy program to PIR, export it to ONNX, run
the original model natively on the smoke input) and records which step it is in, in a JSON
status file, *before* starting it, so the parent can name the failing step even after a crash.

Usage: ``python -m paddleocr_trt.backend.onnx.export_worker <request.json>``.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

STEP_TRANSLATE = "translate"
STEP_EXPORT = "export"
STEP_REFERENCE = "reference"


def _write_status(path: Path, **status: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status), encoding="utf-8")
    tmp.replace(path)


def _translate_legacy(program: Path, workdir: Path) -> tuple[Path, Path]:
    """Legacy ProgramDesc -> PIR JSON, as paddle2onnx does it, but into our own work dir."""
    import paddle
    from paddle2onnx.convert import load_parameter, save_program

    paddle.enable_static()
    exe = paddle.static.Executor(paddle.CPUPlace())
    with paddle.pir_utils.OldIrGuard():
        legacy_program, _, _ = paddle.static.load_inference_model(str(program.with_suffix("")), exe)
    pir_program = paddle.pir.translate_to_pir(legacy_program.desc)
    load_parameter(pir_program)
    prefix = workdir / "translated"
    save_program(pir_program, str(prefix))
    paddle.disable_static()
    json_file, params_file = prefix.with_suffix(".json"), prefix.with_suffix(".pdiparams")
    for produced in (json_file, params_file):
        if not produced.is_file():
            raise RuntimeError(f"program translation produced no {produced.name}")
    return json_file, params_file


def _export(program: Path, params: Path, output: Path, opset: int) -> None:
    import paddle2onnx.paddle2onnx_cpp2py_export as c_p2o

    onnx_bytes = c_p2o.export(
        str(program),
        str(params),
        opset,
        True,  # auto_upgrade_opset: an op that needs a newer opset raises it, not fails
        False,  # verbose
        False,  # enable_onnx_checker: the parent checks after repairing
        True,  # enable_experimental_op
        True,  # enable_optimize
        {},  # custom_op_info
        "onnxruntime",  # deploy_backend (only affects quantized models)
        "",  # calibration_file
        "",  # external_file
        False,  # export_fp16_model
    )
    if not onnx_bytes:
        raise RuntimeError("paddle2onnx returned an empty model")
    output.write_bytes(onnx_bytes)


def export_with_repair(
    program: Path, params: Path, output: Path, opset: int, workdir: Path
) -> list[str]:
    """Export as is; if that fails and the PIR program has a known defect, repair and retry.

    Returns the program repairs applied (empty when the untouched program exported).
    """
    from .pir_repair import repair_pir_json

    try:
        _export(program, params, output, opset)
        return []
    except Exception as first:
        repaired = workdir / "repaired.json"
        applied = repair_pir_json(program, repaired)
        if not applied:
            raise
        try:
            _export(repaired, params, output, opset)
        except Exception as second:
            raise RuntimeError(
                f"{type(first).__name__}: {first}; after {applied}: "
                f"{type(second).__name__}: {second}"
            ) from second
        return applied


def _reference(model_dir: Path, input_file: Path, output_file: Path) -> None:
    import numpy as np

    from ..paddle.runner import PaddleInferenceRunner

    runner = PaddleInferenceRunner(model_dir, cpu_threads=2)
    try:
        outputs = runner.infer([np.load(input_file)])
    finally:
        runner.close()
    np.savez(output_file, *outputs)


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    status = Path(request["status"])
    workdir = Path(request["workdir"])
    program, params = Path(request["program"]), Path(request["params"])
    step = STEP_TRANSLATE
    repairs: list[str] = []
    try:
        if request["format"] == "legacy":
            _write_status(status, step=step)
            program, params = _translate_legacy(program, workdir)
        step = STEP_EXPORT
        _write_status(status, step=step, repairs=repairs)
        repairs += export_with_repair(
            program, params, Path(request["output"]), int(request["opset"]), workdir
        )
        if request.get("reference_input"):
            step = STEP_REFERENCE
            _write_status(status, step=step)
            _reference(
                Path(request["model_dir"]),
                Path(request["reference_input"]),
                Path(request["reference_output"]),
            )
    except BaseException as exc:
        _write_status(
            status,
            step=step,
            repairs=repairs,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc()[-4000:],
        )
        return 2
    _write_status(status, step="done", repairs=repairs)
    return 0


if __name__ == "__main__":
    from ...childproc import install_from_env

    install_from_env()  # first thing: never outlive the converting process (see childproc.py)
    sys.exit(main(sys.argv))
