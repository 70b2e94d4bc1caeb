"""``paddleocr-trt benchmark``: latency and throughput per batch size, engine vs native Paddle.

The engine is ONNX Runtime or TensorRT: ``--engine onnxruntime`` (the model is converted and
validated first, from the cache when it was before), a ``.onnx`` file as ENGINE (run with ONNX
Runtime), or a TensorRT plan as ENGINE. Each runner is created once and measured for every batch
size; each batch size gets at most ``--max-seconds`` of timed runs per backend, so a sweep on a
slow CPU ends in seconds, not minutes. A progress line per measurement goes to stderr.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .optimize_cmd import (
    EXIT_FAILED,
    EXIT_OK,
    TYPE_HELP,
    UsageError,
    _batch_sizes,
    _emit,
    _model,
    _run,
)

ENGINES = ("onnxruntime", "tensorrt")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "benchmark",
        help="latency/throughput per batch size, ONNX Runtime or TensorRT engine vs native Paddle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "engine",
        nargs="?",
        type=Path,
        metavar="ENGINE",
        help="a TensorRT plan (.plan/.engine) or an ONNX file (.onnx, run with ONNX Runtime)",
    )
    p.add_argument(
        "--engine",
        dest="engine_kind",
        choices=ENGINES,
        default=None,
        help="engine to measure (default: from ENGINE's suffix; without ENGINE native Paddle "
        "only). --engine onnxruntime without ENGINE converts the model dir first",
    )
    p.add_argument("--model-dir", type=Path, default=None, help="the Paddle model dir")
    p.add_argument("--type", dest="model_type", default=None, help=TYPE_HELP)
    p.add_argument("--batch-sizes", default="1,8,16", help="comma-separated (default: 1,8,16)")
    p.add_argument("--iterations", type=int, default=20, help="timed runs per batch size (most)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per batch size")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="time budget (warm-up + timed runs) per batch size and backend (default: 5)",
    )
    p.add_argument("--no-native", action="store_true", help="skip the native Paddle baseline")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache root")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    return _run(args, _benchmark)


def engine_kind(engine: Path | None, requested: str | None) -> str | None:
    """Which engine measures ENGINE: ``--engine`` wins, else ``.onnx`` -> ONNX Runtime, any
    other file -> TensorRT; None (native Paddle only) without either."""
    if requested is not None:
        if engine is not None and requested == "tensorrt" and engine.suffix.lower() == ".onnx":
            raise UsageError(f"{engine} is an ONNX file: use --engine onnxruntime (or omit it)")
        return requested
    if engine is None:
        return None
    return "onnxruntime" if engine.suffix.lower() == ".onnx" else "tensorrt"


def _benchmark(args: argparse.Namespace) -> int:
    if args.engine is not None and not args.engine.is_file():
        raise UsageError(f"engine file not found: {args.engine}")
    model_dir, mtype = _model(args.model_dir, args.model_type)
    batches = _batch_sizes(args.batch_sizes)
    if args.iterations < 1 or args.warmup < 0:
        raise UsageError("--iterations must be >= 1 and --warmup >= 0")
    if not args.max_seconds > 0:
        raise UsageError(f"--max-seconds must be > 0, got {args.max_seconds}")
    kind = engine_kind(args.engine, args.engine_kind)
    from ..optimizer import TensorRTOptimizer

    optimizer = TensorRTOptimizer(cache_dir=args.cache_dir)
    engine_path = args.engine
    if kind == "tensorrt":
        reason = optimizer.tensorrt_unavailable_reason()
        if reason is not None:
            print(
                f"error: TensorRT cannot run here: {reason}; try --engine onnxruntime",
                file=sys.stderr,
            )
            if args.json:
                _emit(args, {"ok": False, "error": f"TensorRT cannot run here: {reason}"}, [])
            return EXIT_FAILED
        if engine_path is None:
            raise UsageError("--engine tensorrt needs ENGINE (build one with `optimize -o`)")
    if kind == "onnxruntime" and engine_path is None:
        report = optimizer.convert_model(model_dir, model_type=mtype)  # logs its own stages
        if not report.passed or report.onnx_path is None:
            reason = report.error or optimizer.last_failure or "conversion failed"
            if args.json:
                _emit(args, {"ok": False, "error": reason}, [])
            else:
                print(f"error: {reason}", file=sys.stderr)
            return EXIT_FAILED
        engine_path = report.onnx_path
    if kind is None:
        print(
            "note: native Paddle only (no engine given; --engine onnxruntime measures "
            "ONNX Runtime)",
            file=sys.stderr,
        )
    native = None
    if kind is None or not args.no_native:
        with optimizer._native_runner(model_dir) as runner:
            native = _sweep(optimizer, runner, model_dir, mtype, batches, args)
    if kind is None:
        assert native is not None
        native.note = "no engine given; native Paddle only"
        _emit(args, native.to_dict(), _lines(native))
        return EXIT_OK
    with _open_runner(kind, Path(engine_path), optimizer) as runner:
        result = _sweep(optimizer, runner, model_dir, mtype, batches, args)
    result.engine_path = Path(engine_path)
    result.backend = kind
    result.baseline = native
    _emit(args, result.to_dict(), _lines(result))
    return EXIT_OK


def _open_runner(kind: str, path: Path, optimizer: Any) -> Any:
    from ..engines import registry

    if kind == "onnxruntime":
        return registry.engine("onnxruntime").graph_runner(path, name=f"onnxruntime:{path.name}")
    return registry.engine("tensorrt").plan_runner(path, device_id=optimizer.options.device_id)


def _sweep(
    optimizer: Any,
    runner: Any,
    model_dir: Path,
    mtype: Any,
    batches: list[int],
    args: argparse.Namespace,
) -> Any:
    from ..benchmarking import BenchmarkResult, benchmark_input, engine_input
    from ..progress import stage

    latencies, throughputs = [], []
    for batch in batches:
        with stage(f"benchmark {runner.backend} {mtype.value} batch {batch}"):
            images = optimizer.pipeline.validation_images()
            x = engine_input(runner, benchmark_input(images, model_dir, mtype, batch), model_dir)
            stats = latency_stats(runner, [x], args.warmup, args.iterations, args.max_seconds)
        latencies.append(stats)
        throughputs.append(batch / (stats["mean"] / 1000.0))
    return BenchmarkResult(None, mtype.value, runner.backend, batches, latencies, throughputs)


def latency_stats(
    runner: Any, inputs: list[np.ndarray], warmup: int, iterations: int, max_seconds: float
) -> dict[str, float]:
    """Mean/p50/p90/p99 ms over at most ``iterations`` runs. ``max_seconds`` bounds warm-up and
    timed runs together (at least one of each); ``runs`` says how many were timed."""
    deadline = time.perf_counter() + max_seconds
    for i in range(warmup):
        if i and time.perf_counter() > deadline - max_seconds / 2:
            break
        runner.infer(inputs)
    times: list[float] = []
    while len(times) < iterations and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        runner.infer(inputs)
        times.append((time.perf_counter() - start) * 1000.0)

    def pct(q: float) -> float:
        return float(np.percentile(times, q))

    return {
        "mean": statistics.fmean(times),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "runs": float(len(times)),
    }


def _lines(result: Any) -> list[str]:
    from .optimize_cmd import _benchmark_lines

    return _benchmark_lines(result)
