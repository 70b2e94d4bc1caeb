"""``paddleocr-trt demo``: OCR sample images with ``use_tensorrt=True`` on the embedded models.

It shows a new user, in one command and without internet, what the package does on their
machine: what was read, which backend ran each model (and why), and where the time went.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="OCR sample images with use_tensorrt=True and show which backend ran each model",
        description=__doc__,
    )
    parser.add_argument("images", nargs="*", type=Path, help="images (default: rendered samples)")
    parser.add_argument("--device", default="gpu", help="PaddleOCR device (default: gpu)")
    parser.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    parser.add_argument(
        "--engine",
        default=None,
        help="engine(s) to try in order before native Paddle: tensorrt, onnxruntime or "
        "'tensorrt,onnxruntime' (default: $PADDLEOCR_TRT_ENGINE, else tensorrt)",
    )
    parser.add_argument(
        "--format",
        default="legacy",
        choices=["legacy", "pir"],
        help="model format of the embedded models",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where models and sample images are materialised",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    from ..errors import PaddleOCRTRTError
    from ..settings import default_cache_dir
    from ..testing.models import prepare_models

    # everything the demo writes (model copies, conversions, samples) is private: 0700/0600
    os.umask(os.umask(0o077) | 0o077)
    work = args.work_dir
    if work is None:
        from ..cache.store import EngineCache
        from ..errors import CacheError

        try:  # under the cache root the cache resolved (a subdir of ~, never ~ itself)
            with EngineCache(default_cache_dir()).fsroot.open("demo", create=True) as demo:
                work = demo.path
        except (OSError, CacheError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    engine_kwargs: dict[str, Any] = {}
    if args.engine is not None:
        from ..settings import parse_engines

        try:
            engine_kwargs["trt_engine"] = parse_engines(args.engine, source="--engine")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        models = prepare_models(work / "models", args.format)
    except PaddleOCRTRTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    samples = _images(args.images, work / "samples")
    missing = [str(p) for _, p, _ in samples if not Path(p).is_file()]
    if missing:
        print(f"error: image not found: {', '.join(missing)}", file=sys.stderr)
        return 2

    from paddleocr import PaddleOCR

    from .. import activate
    from ..integration.report import backend_report, take_stage_timings

    activate()
    started = time.perf_counter()
    ocr = PaddleOCR(
        **models.paddleocr_kwargs(textline_orientation=True),
        device=args.device,
        use_tensorrt=True,
        precision=args.precision,
        **engine_kwargs,
    )
    init_seconds = time.perf_counter() - started
    backends = {d.model_name: d for d in backend_report()}
    take_stage_timings()
    results = []
    for name, path, truth in samples:
        start = time.perf_counter()
        try:
            res = ocr.predict(str(path))[0]
        except Exception as exc:  # keep going: one bad image must not hide the others
            results.append({"image": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        total = time.perf_counter() - start
        timings = take_stage_timings()
        stages = {t.model_name: t.engine_seconds for t in timings.values()}
        results.append(
            {
                "image": name,
                "path": str(path),
                "lines": list(res["rec_texts"]),
                "scores": [round(float(s), 4) for s in res["rec_scores"]],
                "expected": truth,
                "seconds": {
                    "total": total,
                    **stages,
                    "pre/post-processing": total - sum(stages.values()),
                },
                "stages": stage_summary(timings.values()),
            }
        )
    report = {
        "device": args.device,
        "precision": args.precision,
        "engines": list(engine_kwargs.get("trt_engine") or ()) or None,
        "pipeline_init_seconds": init_seconds,
        "backends": {name: d.to_dict() for name, d in backends.items()},
        "images": results,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_human(report)
    return 1 if any("error" in r for r in results) else 0


def stage_summary(timings: Any) -> dict[str, dict[str, Any]]:
    """Per stage (det, orientation, rec): engine ms, the predictor's host ms around it, engine
    calls and the bytes the engine returned (from :func:`~paddleocr_trt.take_stage_timings`)."""
    out: dict[str, dict[str, Any]] = {}
    for t in timings:
        host = t.host_seconds
        out[t.stage] = {
            "model": t.model_name,
            "engine_ms": round(t.engine_seconds * 1000, 3),
            "host_ms": None if host is None else round(host * 1000, 3),
            "calls": t.calls,
            "engine_output_bytes": t.output_bytes,
        }
    return out


def _images(paths: list[Path], sample_dir: Path) -> list[tuple[str, Path, list[str] | None]]:
    if paths:
        return [(p.name, p, None) for p in paths]
    from ..testing.images import render_sample_images

    return [(s.name, s.path, list(s.lines)) for s in render_sample_images(sample_dir)]


def _print_human(report: dict[str, Any]) -> None:
    print(f"paddleocr-trt demo: device={report['device']} precision={report['precision']}")
    print(f"pipeline created in {report['pipeline_init_seconds']:.2f} s")
    print("backends:")
    for name, decision in report["backends"].items():
        print(f"  {name:32s} {decision['backend']:11s} {decision['reason']}")
    for item in report["images"]:
        print(f"\n[{item['image']}]")
        if "error" in item:
            print(f"  ERROR {item['error']}")
            continue
        for line, score in zip(item["lines"], item["scores"], strict=True):
            print(f"  {score:.3f}  {line}")
        timing = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in item["seconds"].items())
        print(f"  time: {timing}")
        for stage, t in item["stages"].items():
            host = "?" if t["host_ms"] is None else f"{t['host_ms']:.0f}"
            print(
                f"  {stage:12s} engine {t['engine_ms']:.0f} ms, host {host} ms, "
                f"{t['calls']} calls, {t['engine_output_bytes'] / 1e6:.2f} MB from the engine"
            )
