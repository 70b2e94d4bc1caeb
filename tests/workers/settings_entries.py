"""Every entry point of the package under one bad setting at a time, in a real interpreter.

Usage: python settings_entries.py '<job json>'; job keys: cases ([[NAME, value], ...]),
commands (CLI argv lists), model_dir. Prints one JSON document: per case, per entry point,
what the user would see (exit code and output lines for CLI commands, the exception for the
optimizer, the request and warnings for the drop-in's argument layer).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys


def _cli(argv: list[str]) -> dict:
    from paddleocr_trt.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _optimizer() -> dict:
    from paddleocr_trt import TensorRTOptimizer

    try:
        TensorRTOptimizer()
    except Exception as exc:
        return {
            "raised": type(exc).__name__,
            "value_error": isinstance(exc, ValueError),
            "message": str(exc),
        }
    return {"raised": None}


def _drop_in(log: io.StringIO) -> dict:
    """PaddleOCR's own argument layer with our wrapper, as ``PaddleOCR(...)`` calls it."""
    from paddleocr._common_args import parse_common_args

    from paddleocr_trt.activation import request
    from paddleocr_trt.activation.patches import _wrap_parse_common_args
    from paddleocr_trt.log import reset_warn_once

    reset_warn_once()
    log.seek(0)
    log.truncate()
    parse = _wrap_parse_common_args(parse_common_args)
    made = []
    for kwargs in ({"use_tensorrt": True, "device": "cpu"}, {"trt_engine": "onnxruntime"}):
        args = parse(dict(kwargs), default_enable_hpi=False)
        for _ in range(3):  # PaddleOCR creates one predictor per model
            made.append(request.from_common_args(args) is not None)
    return {"requests": made, "warnings": log.getvalue().splitlines()}


def main() -> None:
    job = json.loads(sys.argv[1])
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.WARNING)
    logging.getLogger("paddleocr_trt").addHandler(handler)
    out: list[dict] = []
    for name, value in job["cases"]:
        os.environ[name] = value
        try:
            row = {
                "name": name,
                "value": value,
                "optimizer": _optimizer(),
                "drop_in": _drop_in(log),
            }
            row["cli"] = [_cli(list(argv)) for argv in job["commands"]]
        finally:
            del os.environ[name]
        out.append(row)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
