"""``paddleocr-trt demo``: OCR images with the engine that can run on this machine.

It shows a new user, in one command and without internet, the package at work here: ONNX
Runtime on a CPU machine, TensorRT (then ONNX Runtime) on an NVIDIA GPU. A header says what
actually ran (device, precision, engine per model), each problem is one line, and every image's
result is printed as soon as it is done, with whether it matches native Paddle.
Inputs may be image files, PDFs (every page) and directories (their images and PDFs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .demo_inputs import DemoInput, expand_inputs, private_dir

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="OCR sample images (or yours) with the engine that runs here, compared with Paddle",
        description=__doc__,
    )
    parser.add_argument(
        "images", nargs="*", type=Path, help="images, PDFs or directories (default: samples)"
    )
    parser.add_argument("--device", default=None, help="gpu or cpu (default: gpu if CUDA works)")
    parser.add_argument(
        "--precision",
        default=None,
        choices=["fp16", "fp32"],
        help="default: fp16 on GPU, else fp32",
    )
    parser.add_argument(
        "--engine",
        default=None,
        help="engine(s) to try in order before native Paddle: tensorrt, onnxruntime or "
        "'tensorrt,onnxruntime' (default: $PADDLEOCR_TRT_ENGINE, else tensorrt,onnxruntime "
        "on a GPU with TensorRT and onnxruntime elsewhere)",
    )
    parser.add_argument(
        "--format", default="legacy", choices=["legacy", "pir"], help="format of the models"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where models and sample images are written (default: models in "
        "$PADDLEOCR_TRT_MODELS_DIR, else <cache>/models; samples in <cache>/demo)",
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="do not run native Paddle for comparison"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.set_defaults(func=run)


def choose(args: argparse.Namespace) -> tuple[str, str, list[str], str]:
    """(device, precision, engines, why): what can run here unless the user said otherwise."""
    from ..integration.decision import cuda_status, tensorrt_status
    from ..settings import ENV_ENGINE, parse_engines

    gpu = cuda_status()
    device = args.device or ("gpu" if gpu.ok else "cpu")
    why = "CUDA GPU found" if gpu.ok else "no usable GPU: " + gpu.message().split(" (")[0][:80]
    precision = args.precision or ("fp16" if device.startswith("gpu") else "fp32")
    raw = args.engine or os.environ.get(ENV_ENGINE, "").strip()
    if raw:
        engines = list(parse_engines(raw, source="--engine" if args.engine else ENV_ENGINE))
    elif device.startswith("gpu") and tensorrt_status().ok:
        engines = ["tensorrt", "onnxruntime"]
    else:
        engines = ["onnxruntime"]
    return device, precision, engines, why


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    from ..errors import PaddleOCRTRTError
    from ..settings import SettingsError, default_cache_dir, validate_settings

    out = _Output(args.json)
    try:
        validate_settings()
        device, precision, engines, why = choose(args)
        inputs = expand_inputs(args.images)
    except (SettingsError, ValueError) as exc:
        return out.error(str(exc), EXIT_USAGE)
    try:
        with _private_umask():
            work = args.work_dir
            if work is None:  # under the root the cache resolved (never ~ itself), 0700
                from ..cache.store import EngineCache

                with EngineCache(default_cache_dir()).fsroot.open("demo", create=True) as demo:
                    work = demo.path
            from ..testing.models import prepare_models

            models = prepare_models(
                private_dir(work / "models") if args.work_dir else None, args.format
            )
            if not inputs:
                inputs = _samples(private_dir(work / "samples"))
    except (PaddleOCRTRTError, OSError) as exc:
        return out.error(str(exc), EXIT_FAILED)

    from paddleocr import PaddleOCR

    from .. import activate
    from ..integration.report import backend_report, take_stage_timings
    from ..progress import stage

    activate()
    kwargs = {**models.paddleocr_kwargs(textline_orientation=True), "device": device}
    started = time.perf_counter()
    with (
        stage(f"creating the PaddleOCR pipeline ({device}, engines: {', '.join(engines)})"),
        _collect_warnings() as problems,
    ):
        ocr = PaddleOCR(**kwargs, use_tensorrt=True, precision=precision, trt_engine=engines)
    header = {
        "device": device,
        "device_reason": why,
        "engines_tried": engines,
        "pipeline_init_seconds": round(time.perf_counter() - started, 3),
        "models": [_ran(d) for d in backend_report()],
        "backends": {d.model_name: d.to_dict() for d in backend_report()},
        "problems": problems,
    }
    out.header(header)
    native = None
    if not args.no_compare:
        with stage("creating a native Paddle pipeline to compare with"), _collect_warnings():
            native = PaddleOCR(**kwargs)
    take_stage_timings()
    results = []
    for item in inputs:
        for record in _ocr_one(ocr, native, item, take_stage_timings):
            results.append(record)
            out.image(record)
    return out.finish({**header, "images": results})


def _ran(decision: Any) -> dict[str, Any]:
    """What ran one model: the engine, and the precision it really ran at (ONNX Runtime and
    native Paddle on a CPU run fp32 whatever was requested)."""
    engine = decision.backend
    precision = decision.precision if engine == "tensorrt" else "fp32"
    return {
        "model": decision.model_name,
        "engine": engine,
        "precision": precision,
        "reason": decision.reason,
    }


def _ocr_one(ocr: Any, native: Any, item: DemoInput, timings: Any) -> Iterator[dict[str, Any]]:
    """One record per page (an image is one page), as soon as it is read."""
    start = time.perf_counter()
    try:
        pages = list(ocr.predict(str(item.path)))
    except Exception as exc:  # keep going: one bad image must not hide the others
        yield {"image": item.name, "path": str(item.path), "error": f"{type(exc).__name__}: {exc}"}
        return
    total = time.perf_counter() - start
    measured = list(timings().values())
    stages = stage_summary(measured)
    engine_seconds = {t.model_name: t.engine_seconds for t in measured}
    seconds = {
        "total": round(total, 4),
        **engine_seconds,
        "pre/post-processing": total - sum(engine_seconds.values()),
    }
    reference: list[Any] | None = None
    native_error = None
    if native is not None:
        try:
            reference = list(native.predict(str(item.path)))
        except Exception as exc:
            reference = None
            native_error = f"{type(exc).__name__}: {exc}"
        timings()  # whatever the native run added is not the next image's engine time
    for index, page in enumerate(pages):
        name = item.name if len(pages) == 1 else f"{item.name} page {index + 1}/{len(pages)}"
        record: dict[str, Any] = {
            "image": name,
            "path": str(item.path),
            "lines": list(page["rec_texts"]),
            "scores": [round(float(s), 4) for s in page["rec_scores"]],
            "expected": item.expected,
            "seconds": seconds if index == 0 else {"total": 0.0},
            "stages": stages if index == 0 else {},
        }
        if reference is not None:
            record["matches_native"] = _compare(page, reference, index)
        elif native_error:
            record["native_error"] = native_error
        yield record


def _compare(page: Any, reference: list[Any], index: int) -> dict[str, Any]:
    from ..testing.results import result_differences

    if index >= len(reference):
        return {"same": False, "differences": ["native Paddle returned fewer pages"]}
    differences = result_differences([reference[index]], [page])
    return {"same": not differences, "differences": differences[:5]}


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


def _samples(sample_dir: Path) -> list[DemoInput]:
    from ..testing.images import render_sample_images

    return [DemoInput(s.name, s.path, list(s.lines)) for s in render_sample_images(sample_dir)]


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Models and samples the demo writes are the user's alone (0700 dirs), whatever the umask."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@contextlib.contextmanager
def _collect_warnings() -> Iterator[list[str]]:
    """The package's warnings while pipelines are made, kept (not printed) and de-duplicated:
    the header prints each problem once (the same install hint was printed once per model)."""
    seen: list[str] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno < logging.WARNING:
                return True
            message = record.getMessage()
            model_specific = record.args if isinstance(record.args, tuple) else ()
            if len(model_specific) >= 2 and isinstance(model_specific[1], str):
                message = model_specific[1]  # "%s: %s; %s instead." -> the problem itself
            if message not in seen:
                seen.append(message)
            return False

    keep = Keep()
    logger = logging.getLogger("paddleocr_trt")
    handlers = [*logger.handlers, *logging.getLogger().handlers]
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield seen
    finally:
        for handler in handlers:
            handler.removeFilter(keep)


class _Output:
    """Human lines as they come, or one JSON document at the end."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json

    def error(self, message: str, code: int) -> int:
        if self.json:
            print(json.dumps({"ok": False, "error": message}, ensure_ascii=False))
        print(f"error: {message}", file=sys.stderr)
        return code

    def header(self, h: dict[str, Any]) -> None:
        if self.json:
            return
        print(f"paddleocr-trt demo on {h['device']} ({h['device_reason']})")
        print(
            f"engines tried: {', '.join(h['engines_tried'])}, then native Paddle; "
            f"pipeline ready in {h['pipeline_init_seconds']:.1f} s"
        )
        for m in h["models"]:
            print(f"  {m['model']:30s} {m['engine']:12s} {m['precision']:5s} {m['reason']}")
        for problem in h["problems"]:
            print(f"problem: {problem}")
        sys.stdout.flush()

    def image(self, r: dict[str, Any]) -> None:
        if self.json:
            return
        print(f"\n[{r['image']}]")
        if "error" in r:
            print(f"  ERROR {r['error']}")
        else:
            for line, score in zip(r["lines"], r["scores"], strict=True):
                print(f"  {score:.3f}  {line}")
            if r["stages"]:  # a PDF's time is on its first page
                parts = [f"{r['seconds']['total'] * 1000:.0f} ms"]
                parts += [f"{stage} {t['engine_ms']:.0f} ms" for stage, t in r["stages"].items()]
                print(f"  time: {', '.join(parts)}")
            match = r.get("matches_native")
            if match is not None:
                verdict = "same as native Paddle" if match["same"] else "DIFFERS from native Paddle"
                print(f"  {verdict}" + "".join(f"\n    {d}" for d in match["differences"]))
        sys.stdout.flush()

    def finish(self, report: dict[str, Any]) -> int:
        images = report["images"]
        failed = any("error" in r for r in images)
        if self.json:
            print(json.dumps({"ok": not failed, **report}, ensure_ascii=False, indent=2))
        else:
            same = sum(1 for r in images if r.get("matches_native", {}).get("same"))
            compared = sum(1 for r in images if "matches_native" in r)
            if compared:
                print(f"\n{same}/{compared} pages identical to native Paddle")
        return EXIT_FAILED if failed else EXIT_OK
