"""Ray batch path vs one process: pages/s on the same machine and pages, engine builds per run.

    PYTHONPATH=. python benchmarks/bench_ray.py --pages 12 --workers 2 [--cold] [--json]

* ``single``: one ``PaddleOCR(use_tensorrt=True, trt_engine=...)`` in this process, the
  pipelined ``predict`` over all pages (after a warm-up call), timed.
* ``ray``: ``paddleocr_trt.ray.ocr_dataset`` on a local Ray (``--num-cpus``), ``--workers``
  actors, end to end (Ray start excluded, actor start-up and engine loading included), plus
  the same wall minus the slowest worker's start-up (labelled: an estimate of steady state).
* builds: cache entries created during each run, and what the workers say they built. With
  ``--cold`` the Ray run starts on an empty cache: every key must be built exactly once however
  many workers race for it (the cache's lock).

Pages: the small rendered samples (``testing.images``, cycled), or with ``--documents``
``paddleocr_trt.testing.pages`` (receipts and 1000x1400 documents, seeded). On a
machine with fewer cores than workers, Ray's workers compete for the same cores as each other:
the overhead reported is then mostly start-up and contention, not Ray's scheduling.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")


def _entries(cache: Path) -> dict[str, float]:
    return {
        str(p.parent.relative_to(cache)): json.loads(p.read_text())["created"]
        for p in cache.glob("*/*/manifest.json")
    }


def _models() -> dict:
    from paddleocr_trt.testing.models import prepare_models

    work = Path(os.environ.get("PADDLEOCR_TRT_TEST_CACHE", REPO / ".cache" / "test"))
    return prepare_models(work / "models", "legacy").paddleocr_kwargs(textline_orientation=True)


def single_process(paths: list[str], kwargs: dict, engine: str, cache: Path) -> dict:
    from paddleocr import PaddleOCR

    import paddleocr_trt

    os.environ["PADDLEOCR_TRT_CACHE_DIR"] = str(cache)
    before = _entries(cache)
    paddleocr_trt.activate()
    started = time.perf_counter()
    ocr = PaddleOCR(**kwargs, device="cpu", use_tensorrt=True, trt_engine=engine)
    ocr.predict(paths[:2])  # warm-up, as the Ray workers do
    init = time.perf_counter() - started
    started = time.perf_counter()
    results = list(ocr.predict(paths))
    wall = time.perf_counter() - started
    texts = [list(r["rec_texts"]) for r in results]
    built = len(set(_entries(cache).items()) - set(before.items()))
    return {
        "pages": len(results),
        "seconds": wall,
        "init_seconds": init,
        "builds": built,
        "pages_per_s": len(results) / wall,
        "texts": texts,
    }


def ray_run(paths: list[str], kwargs: dict, engine: str, cache: Path, args) -> dict:
    import ray

    from paddleocr_trt.ray import create_ledger, ocr_dataset

    ray.init(num_cpus=args.num_cpus, object_store_memory=300 << 20, include_dashboard=False)
    try:
        before = _entries(cache) if cache.exists() else {}
        ledger = create_ledger()
        started = time.perf_counter()
        ds = ocr_dataset(
            paths,
            kwargs,
            workers=args.workers,
            batch_size=args.batch_size,
            engine=engine,
            cache_dir=cache,
            ledger=ledger,
        )
        rows = ds.take_all()
        wall = time.perf_counter() - started
        workers = ray.get(ledger.workers.remote())
    finally:
        ray.shutdown()
    startup = max((w["init_seconds"] for w in workers), default=0.0)
    created = set(_entries(cache).items()) - set(before.items())
    return {
        "pages": len(rows),
        "errors": sum(r["error"] is not None for r in rows),
        "seconds": wall,
        "pages_per_s": len(rows) / wall,
        "worker_startup_seconds": startup,
        "pages_per_s_after_startup_estimate": len(rows) / max(wall - startup, 1e-9),
        "builds": len(created),
        "built_by_workers": {w["worker"]: w["built"] for w in workers},
        "texts": [r["texts"] for r in rows],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--cache-dir", type=Path, default=REPO / ".cache" / "bench-ray")
    parser.add_argument("--cold", action="store_true", help="Ray run on an empty cache")
    parser.add_argument("--documents", action="store_true", help="1000x1400 documents")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    if args.documents:
        from paddleocr_trt.testing.pages import render_pages

        paths = [str(p.path) for p in render_pages(work / "pages", args.pages)]
    else:  # the small rendered samples (no 3200x1400 page), cycled
        from paddleocr_trt.testing.images import render_sample_images

        small = [str(s.path) for s in render_sample_images(work / "samples") if s.kind != "large"]
        paths = [small[i % len(small)] for i in range(args.pages)]
    kwargs = _models()
    single = single_process(paths, kwargs, args.engine, args.cache_dir)
    ray_cache = work / "cold-cache" if args.cold else args.cache_dir
    distributed = ray_run(paths, kwargs, args.engine, ray_cache, args)
    same = single.pop("texts") == distributed.pop("texts")
    report = {
        "pages": args.pages,
        "workers": args.workers,
        "num_cpus": args.num_cpus,
        "cores": os.cpu_count(),
        "cold_ray_cache": args.cold,
        "single": single,
        "ray": distributed,
        "same_texts": same,
        "ray_over_single_wall": distributed["seconds"] / single["seconds"],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        s, r = single, distributed
        print(f"{args.pages} pages, {os.cpu_count()} cores, engine {args.engine}")
        print(
            f"single process : {s['pages_per_s']:.2f} pages/s ({s['seconds']:.1f} s; "
            f"start-up {s['init_seconds']:.1f} s not counted), builds {s['builds']}"
        )
        print(
            f"ray, {args.workers} workers: {r['pages_per_s']:.2f} pages/s end to end "
            f"({r['seconds']:.1f} s incl. worker start-up {r['worker_startup_seconds']:.1f} s); "
            f"~{r['pages_per_s_after_startup_estimate']:.2f} pages/s after start-up (estimate)"
        )
        print(
            f"ray builds this run: {r['builds']} cache entries; by worker: "
            f"{r['built_by_workers']}; texts identical: {same}"
        )
    return 0 if same and not distributed["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
