"""``paddleocr-trt optimize | convert``: the ``TensorRTOptimizer`` API from a shell.

Exit codes: 0 success; 1 the machine could not do it (TensorRT missing, conversion or validation
failed; the reason is printed); 2 usage error (no such model dir, unknown model type, bad
numbers), always a one-line message and never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TYPE_HELP = "detection|recognition|classification (aliases det, rec, cls); default: read the "
TYPE_HELP += "model name in inference.yml"


class UsageError(Exception):
    """A wrong argument: printed as ``error: ...`` with exit code 2."""


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $PADDLEOCR_TRT_CACHE_DIR, else ~/.cache/paddleocr_trt)",
    )
    common.add_argument("--type", dest="model_type", default=None, help=TYPE_HELP)

    p = subparsers.add_parser(
        "optimize",
        parents=[common],
        help="build (or fetch from cache) a validated TensorRT engine for one Paddle or ONNX "
        "model dir",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument("--precision", default="fp16", type=str.lower, choices=["fp16", "fp32"])
    p.add_argument("--workspace-gb", type=float, default=None, help="TensorRT workspace limit")
    p.add_argument("-o", "--output", type=Path, default=None, help="also copy the engine here")
    p.add_argument(
        "--build-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="kill one engine attempt (build + validation) after this long "
        "(default: $PADDLEOCR_TRT_BUILD_TIMEOUT_S, else 1800)",
    )
    p.add_argument(
        "--engine",
        default="tensorrt",
        choices=["tensorrt", "tensorrt-rtx"],
        help="tensorrt (full TensorRT, builds and validates on this GPU) or tensorrt-rtx "
        "(TensorRT for RTX GPUs: builds without a GPU, validated on the target GPU)",
    )
    p.add_argument(
        "--target",
        default=None,
        metavar="SM,...",
        help="tensorrt-rtx: compute capabilities to build for, e.g. sm86,sm89,sm120 "
        "(default: every one TensorRT-RTX runs on)",
    )
    p.set_defaults(func=cmd_optimize)

    p = subparsers.add_parser(
        "convert",
        parents=[common],
        help="Paddle -> ONNX, validated on ONNX Runtime against native Paddle (works on CPU); "
        "an ONNX model dir (inference.onnx) is checked, not converted",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    p.add_argument("-o", "--output", type=Path, default=None, help="also copy the ONNX file here")
    p.add_argument(
        "--to-model-dir",
        type=Path,
        default=None,
        metavar="OUT",
        help="also write the validated ONNX + inference.yml as a PaddleX ONNX model dir "
        '(engine="onnxruntime"; runs without Paddle installed); OUT must not exist or be empty',
    )
    p.set_defaults(func=cmd_convert)


# -- argument checks -----------------------------------------------------------------------------


def _model(model_dir: Path | None, model_type: str | None) -> tuple[Any, Any]:
    """(the resolved model, ModelType), or UsageError saying what is wrong. The model value
    is path-like (its directory) and is resolved here once for the whole command.

    inference.yml is read even with ``--type``: a broken one, or a type it contradicts, is
    named here rather than after a full conversion.
    """
    from ..errors import ModelDirError, UnsupportedModelTypeError
    from ..model_resolve import resolve_model

    if model_dir is None:
        raise UsageError("a model dir is required (--model-dir)")
    try:
        model = resolve_model(model_dir, model_type)
    except (ModelDirError, UnsupportedModelTypeError, FileNotFoundError, NotADirectoryError) as exc:
        message = str(exc)
        if model_type is None and "cannot tell the model type" in message:
            message += " (--type detection|recognition|classification)"
        raise UsageError(message) from None
    return model, model.model_type


def _model_dir_output(path: Path) -> None:
    from ..errors import OutputPathError
    from ..onnx_model_dir import check_model_dir_output

    try:
        check_model_dir_output(path)
    except OutputPathError as exc:
        raise UsageError(str(exc)) from None


def _output(path: Path | None) -> None:
    from ..cache.safety import check_output_path
    from ..errors import OutputPathError

    if path is not None:
        try:
            check_output_path(path)
        except OutputPathError as exc:
            raise UsageError(str(exc)) from None


def _batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes {text!r}: expected integers like 1,8,16") from None
    if not sizes or any(b < 1 for b in sizes):
        raise UsageError(f"--batch-sizes {text!r}: expected integers >= 1")
    return sizes


def _run(args: argparse.Namespace, body: Any) -> int:
    """Settings checked once, up front; every failure is one line: exit 2 for bad arguments or
    settings, 1 for what the machine could not do."""
    from ..errors import PaddleOCRTRTError
    from ..settings import SettingsError, validate_settings

    try:
        validate_settings()
        return body(args)
    except BrokenPipeError:
        raise  # the reader went away: main() ends quietly
    except (UsageError, SettingsError) as exc:
        return _error(args, str(exc), EXIT_USAGE)
    except (PaddleOCRTRTError, OSError) as exc:
        return _error(args, str(exc), EXIT_FAILED)


def _error(args: argparse.Namespace, message: str, code: int) -> int:
    """One ``error:`` line on stderr; under ``--json`` also the one JSON document on stdout."""
    if args.json:
        print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
    print(f"error: {message}", file=sys.stderr)
    return code


def _emit(args: argparse.Namespace, data: dict[str, Any], human: list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print("\n".join(human))


@contextlib.contextmanager
def _said_by_us(optimizer: Any) -> Iterator[None]:
    """The optimizer logs its failure reason as a warning; the command prints that reason
    itself (stderr line or JSON), so the log record of exactly that reason is dropped."""
    target = logging.getLogger("paddleocr_trt")

    def not_the_failure(record: logging.LogRecord) -> bool:
        return not (optimizer.last_failure and record.getMessage() == optimizer.last_failure)

    handlers = [*target.handlers, *logging.getLogger().handlers]
    for handler in handlers:
        handler.addFilter(not_the_failure)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(not_the_failure)


# -- optimize ----------------------------------------------------------------------------------


def cmd_optimize(args: argparse.Namespace) -> int:
    return _run(args, _optimize)


def _optimize(args: argparse.Namespace) -> int:
    from ..settings import SettingsError, check_workspace_gb, workspace_gb

    model_dir, mtype = _model(args.model_dir, args.model_type)
    _output(args.output)
    gb = workspace_gb()
    if args.workspace_gb is not None:
        try:
            gb = check_workspace_gb(args.workspace_gb, "--workspace-gb")
        except SettingsError as exc:
            raise UsageError(str(exc)) from None
    if args.build_timeout is not None and not args.build_timeout > 0:
        raise UsageError(
            f"--build-timeout must be a positive number of seconds, got {args.build_timeout}"
        )
    if args.engine == "tensorrt-rtx":
        from .optimize_rtx import TargetError, optimize_rtx

        try:
            built, data, lines = optimize_rtx(args, model_dir, mtype, gb)
        except TargetError as exc:
            raise UsageError(f"--target: {exc}") from None
        _emit(args, data, lines)
        return EXIT_OK if built else EXIT_FAILED
    if args.target:
        raise UsageError(
            "--target needs --engine tensorrt-rtx (full TensorRT builds for the GPU it runs on)"
        )
    from ..optimizer import TensorRTOptimizer
    from ..progress import step

    optimizer = TensorRTOptimizer(
        precision=args.precision,
        workspace_gb=gb,
        cache_dir=args.cache_dir,
        build_timeout_s=args.build_timeout,
    )
    with (
        step(f"optimizing {mtype.value} model {model_dir.name}", quiet=args.json),
        _said_by_us(optimizer),
    ):
        result = optimizer.optimize_model(model_dir, args.output, model_type=mtype)
    if result is None:
        reason = optimizer.last_failure or "unknown reason (see the log)"
        data = {"ok": False, "model_dir": str(model_dir), "model_type": mtype.value}
        if args.json:
            _emit(args, {**data, "reason": reason}, [])
        else:
            print(f"error: optimize failed: {reason}", file=sys.stderr)
        return EXIT_FAILED
    data = {"ok": True, **result.to_dict()}
    lines = [
        f"engine      {result.engine_path}" + (" (from cache)" if result.from_cache else ""),
        f"precision   {result.precision}",
        f"agreement   {result.optimized_accuracy:.4f} with native Paddle",
        f"build       {result.build_seconds:.1f} s",
    ]
    if result.speedup_factor:
        lines.append(
            f"latency     {result.baseline_latency_ms:.2f} ms native -> "
            f"{result.optimized_latency_ms:.2f} ms TensorRT ({result.speedup_factor:.2f}x)"
        )
    _emit(args, data, lines)
    return EXIT_OK


# -- convert -----------------------------------------------------------------------------------


def cmd_convert(args: argparse.Namespace) -> int:
    return _run(args, _convert)


def _convert(args: argparse.Namespace) -> int:
    model_dir, mtype = _model(args.model_dir, args.model_type)
    _output(args.output)
    if args.to_model_dir is not None:
        _model_dir_output(args.to_model_dir)
    from ..optimizer import TensorRTOptimizer
    from ..progress import step

    optimizer = TensorRTOptimizer(cache_dir=args.cache_dir)
    with step(f"converting {mtype.value} model {model_dir.name}", quiet=args.json):
        report = optimizer.convert_model(
            model_dir, args.output, model_type=mtype, to_model_dir=args.to_model_dir
        )
    data = report.to_dict()
    validation = report.validation or {}
    lines = [f"model       {model_dir} ({mtype.value})"]
    if report.onnx_path:
        lines.append(
            f"onnx        {report.onnx_path}" + (" (from cache)" if report.from_cache else "")
        )
    if validation:
        lines.append(
            f"validation  {'passed' if validation.get('passed') else 'FAILED'}: "
            f"{validation.get('metric', 'agreement')} = {validation.get('agreement', 0.0):.4f} "
            f"(min {validation.get('min_agreement', '?')}) on {validation.get('num_inputs', '?')} "
            f"inputs, {validation.get('candidate', '?')} vs {validation.get('reference', '?')}"
        )
        for stats in validation.get("tensor_stats") or []:
            lines.append(
                f"  {stats.get('name')}: max |diff| {stats.get('max_abs_diff', 0.0):.3g}, "
                f"mean |diff| {stats.get('mean_abs_diff', 0.0):.3g}"
            )
    if report.model_dir_written:
        lines.append(f"model dir   {report.model_dir_written} (inference.onnx + inference.yml)")
    if not report.passed:
        lines.append(f"convert failed: {report.error or optimizer.last_failure}")
    _emit(args, data, lines)
    return EXIT_OK if report.passed else EXIT_FAILED


# -- benchmark ---------------------------------------------------------------------------------


def merge_results(parts: list[Any]) -> Any:
    """One ``BenchmarkResult`` from per-batch-size results of the same engine and model."""
    from dataclasses import replace

    first = parts[0]
    baselines = [p.baseline for p in parts if p.baseline is not None]
    peaks = [p.peak_gpu_memory_bytes for p in parts if p.peak_gpu_memory_bytes is not None]
    return replace(
        first,
        batch_sizes=[b for p in parts for b in p.batch_sizes],
        latencies=[lat for p in parts for lat in p.latencies],
        throughputs=[t for p in parts for t in p.throughputs],
        peak_gpu_memory_bytes=max(peaks) if peaks else None,
        baseline=merge_results(baselines) if len(baselines) == len(parts) else None,
    )


def _benchmark_lines(result: Any) -> list[str]:
    lines = [
        f"{result.model_type} on {result.backend}" + (f" ({result.note})" if result.note else "")
    ]
    base = result.baseline
    header = f"{'batch':>5} {'mean ms':>9} {'p50':>8} {'p90':>8} {'p99':>8} {'img/s':>9}"
    lines.append(header + (f" {'native img/s':>13} {'speedup':>8}" if base else ""))
    for i, batch in enumerate(result.batch_sizes):
        lat = result.latencies[i]
        row = (
            f"{batch:>5} {lat['mean']:>9.2f} {lat['p50']:>8.2f} {lat['p90']:>8.2f} "
            f"{lat['p99']:>8.2f} {result.throughputs[i]:>9.1f}"
        )
        if base:
            ratio = result.throughputs[i] / base.throughputs[i]
            row += f" {base.throughputs[i]:>13.1f} {ratio:>7.2f}x"
        lines.append(row)
    if result.peak_gpu_memory_bytes is not None:
        lines.append(f"peak GPU memory {result.peak_gpu_memory_bytes / (1 << 20):.0f} MiB")
    return lines
