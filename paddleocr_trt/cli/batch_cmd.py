"""``paddleocr-trt batch INPUTS... --out DIR``: OCR many files on a Ray cluster into Parquet.

Starts a local Ray (or joins ``--address``), runs one engine-holding worker per ``--workers``
(``--gpus-per-worker`` GPUs each), writes one Parquet row per page (errors as rows) and prints a
summary: pages, pages/s, engines, error rows. Needs the ``[ray]`` extra.

Exit codes: 0 every input OCRed; 1 some inputs are error rows, or the run failed; 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_MODELS = ("text_detection", "text_recognition", "textline_orientation")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch", help="OCR many images/PDFs on a Ray cluster into Parquet", description=__doc__
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="Parquet output dir")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: local Ray)")
    p.add_argument("--workers", type=int, default=1, help="engine-holding actors (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0, help="0: CPU workers (default)")
    p.add_argument("--cpus-per-worker", type=float, default=1)
    p.add_argument("--batch-size", type=int, default=4, help="inputs per batch (default 4)")
    p.add_argument("--engine", default=None, help="tensorrt, onnxruntime or both, in order")
    p.add_argument("--precision", default="fp16", choices=["fp16", "fp32"])
    p.add_argument("--device", default=None, help="PaddleOCR device (default: from GPUs)")
    p.add_argument("--cache-dir", type=Path, default=None, help="engine cache every node sees")
    p.add_argument("--bundle", type=Path, default=None, help="archive from `cache export`")
    p.add_argument("--max-crashes", type=int, default=3, help="crashes before an error row")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray")
    for model in _MODELS:
        flag = model.replace("_", "-")
        p.add_argument(f"--{flag}-model-dir", default=None, metavar="DIR")
        p.add_argument(f"--{flag}-model-name", default=None, metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    p.set_defaults(func=run)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"error": message}))
    print(f"error: {message}", file=sys.stderr)
    return code


def _ocr_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "precision": args.precision,
        "use_doc_orientation_classify": False,
        "use_doc_unwarping": False,
        "use_textline_orientation": bool(args.textline_orientation_model_dir),
    }
    for model in _MODELS:
        for part in ("dir", "name"):
            value = getattr(args, f"{model}_model_{part}")
            if value is not None:
                kwargs[f"{model}_model_{part}"] = value
    if args.device:
        kwargs["device"] = args.device
    return kwargs


def run(args: argparse.Namespace) -> int:
    if args.workers < 1 or args.batch_size < 1 or args.gpus_per_worker < 0:
        return _fail(args, "--workers and --batch-size must be >= 1, GPUs >= 0", EXIT_USAGE)
    if args.bundle is not None and not args.bundle.is_file():
        return _fail(args, f"bundle not found: {args.bundle}", EXIT_USAGE)
    try:
        import ray
        import ray.data
    except ImportError:
        return _fail(args, 'Ray is not installed: pip install "paddleocr-trt[ray]"', EXIT_FAILED)
    from ..ray import ocr_dataset, summarize

    engine = None
    if args.engine is not None:
        from ..settings import parse_engines

        try:
            engine = list(parse_engines(args.engine, source="--engine"))
        except ValueError as exc:
            return _fail(args, str(exc), EXIT_USAGE)
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": not args.json}
        if args.address:
            init["address"] = args.address
        elif args.num_cpus:
            init["num_cpus"] = args.num_cpus
        ray.init(**init)
    try:
        started = time.perf_counter()
        ds = ocr_dataset(
            args.inputs,
            _ocr_kwargs(args),
            workers=args.workers,
            gpus_per_worker=args.gpus_per_worker,
            cpus_per_worker=args.cpus_per_worker,
            batch_size=args.batch_size,
            engine=engine,
            cache_dir=args.cache_dir,
            bundle=args.bundle,
            max_crashes=args.max_crashes,
        )
        out = os.path.abspath(args.out)
        ds.write_parquet(out)
        seconds = time.perf_counter() - started
        import pyarrow.parquet as pq

        wanted = ["input_id", "input", "engines", "worker", "attempts", "error"]
        rows = pq.read_table(out, columns=wanted).to_pylist()
        summary = summarize(rows, seconds)
    except ValueError as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except Exception as exc:
        return _fail(args, f"{type(exc).__name__}: {exc}", EXIT_FAILED)
    finally:
        if started_here:
            ray.shutdown()
    if args.json:
        print(json.dumps({"out": out, **summary.to_dict()}, indent=2, sort_keys=True))
    else:
        print(f"wrote {out}\n{summary.text()}")
    return EXIT_FAILED if summary.error_rows else EXIT_OK
