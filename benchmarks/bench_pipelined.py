"""Pipelined multi-image path vs stock PaddleOCR, same ONNX Runtime engines on both sides.

One ``PaddleOCR(trt_engine="onnxruntime")`` reads rendered pages (receipts, 1000x1400
documents with 20-40 lines, one 3000x4000 page; ``paddleocr_trt.testing.pages``) with the
pipelined path off (``PADDLEOCR_TRT_PIPELINE=0``: PaddleX's own loop) and on, in one run:

* ``stock`` / ``pipelined``: real engine calls. Per entry: pages/s, engine seconds per page
  (sum of model calls, ``take_stage_times``), host ms per page = wall - engine sum (for the
  pipelined path: wall not covered by engine calls; calls overlap host work and each other),
  process CPU seconds per page.
* ``*-replayed``: engine outputs replayed from a recording pass (``testing.replay``): pages/s
  when the model costs nothing, i.e. the host-side ceiling of each path. LABELLED AS SUCH.

``test_summary`` prints both tables plus a GPU *projection* from PaddleOCR's published T4
TensorRT model times (det 4.17 ms per image, rec 1.20 ms per batch of 6).

    pytest benchmarks/bench_pipelined.py -s --benchmark-json=pipelined.json
    PADDLEOCR_TRT_BENCH_PAGES=20 PADDLEOCR_TRT_BENCH_ROUNDS=2 (defaults)
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

PAGES = int(os.environ.get("PADDLEOCR_TRT_BENCH_PAGES", "20"))
ROUNDS = int(os.environ.get("PADDLEOCR_TRT_BENCH_ROUNDS", "2"))
VARIANTS = ("stock", "pipelined", "stock-replayed", "pipelined-replayed")
#: PaddleOCR docs, Tesla T4, TensorRT, model only (NOTES.md section 6)
T4_DET_MS_PER_IMAGE = 4.17
T4_REC_MS_PER_6_ROWS = 1.20
RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def workload(ocr_models: Any, engine_cache_dir: str, tmp_path_factory: pytest.TempPathFactory):
    from paddleocr import PaddleOCR

    import paddleocr_trt
    from paddleocr_trt.integration.report import take_stage_times
    from paddleocr_trt.settings import ENV_PIPELINE
    from paddleocr_trt.testing.pages import render_pages
    from paddleocr_trt.testing.replay import set_mode, wrap_pipeline

    pages = render_pages(tmp_path_factory.mktemp("bench_pages"), PAGES)
    paths = [str(p.path) for p in pages]
    paddleocr_trt.activate()
    kwargs = ocr_models.paddleocr_kwargs(textline_orientation=True)
    ocr = PaddleOCR(**kwargs, device="cpu", trt_engine="onnxruntime")
    backends = {d.model_name: d.backend for d in paddleocr_trt.backend_report()[-3:]}
    assert set(backends.values()) == {"onnxruntime"}, backends
    runners = wrap_pipeline(ocr.paddlex_pipeline._pipeline)
    set_mode(runners, "record")  # the warm-up pass records every row the models produce
    os.environ[ENV_PIPELINE] = "0"
    reference = ocr.predict(paths)
    os.environ.pop(ENV_PIPELINE)
    set_mode(runners, "pass")
    take_stage_times()
    lines = sum(len(r["rec_texts"]) for r in reference)
    sizes = sorted({f"{p.kind}" for p in pages})
    return {
        "ocr": ocr,
        "runners": runners,
        "paths": paths,
        "reference": reference,
        "lines": lines,
        "kinds": sizes,
    }


@pytest.mark.parametrize("variant", VARIANTS)
def test_pipelined_throughput(benchmark: Any, workload: dict, variant: str, monkeypatch) -> None:
    from paddleocr_trt.integration.report import take_stage_times
    from paddleocr_trt.pipelined import last_run_stats
    from paddleocr_trt.settings import ENV_PIPELINE
    from paddleocr_trt.testing.replay import set_mode
    from paddleocr_trt.testing.results import result_differences

    ocr, paths = workload["ocr"], workload["paths"]
    pipelined = variant.startswith("pipelined")
    monkeypatch.setenv(ENV_PIPELINE, "1" if pipelined else "0")
    set_mode(workload["runners"], "replay" if variant.endswith("replayed") else "pass")
    runs_before = last_run_stats()["runs"]
    take_stage_times()
    cpu = time.process_time()
    results = benchmark.pedantic(lambda: ocr.predict(paths), rounds=ROUNDS, iterations=1)
    cpu = (time.process_time() - cpu) / ROUNDS
    stages = take_stage_times()
    set_mode(workload["runners"], "pass")
    assert (last_run_stats()["runs"] > runs_before) == pipelined
    problems = result_differences(
        workload["reference"], results, box_tolerance=0, score_tolerance=0
    )
    assert not problems, problems[:5]
    n = len(paths)
    wall = benchmark.stats.stats.mean
    engine = sum(seconds for _, seconds in stages.values()) / ROUNDS
    info = {
        "model": "pipeline",
        "batch": n,
        "backend": variant,
        "images_per_round": n,
        "text_lines_per_round": workload["lines"],
        "pages_per_s": n / wall,
        "wall_ms_per_page": 1000 * wall / n,
        "engine_ms_per_page": 1000 * engine / n,
        "host_ms_per_page": 1000 * (wall - engine) / n,
        "cpu_s_per_page": cpu / n,
        "calls_per_round": {m: c // ROUNDS for m, (c, _) in stages.items()},
        "replay_misses": sum(r.misses for r in workload["runners"]),
        "pipelined_stats": last_run_stats() if pipelined else None,
        "load_average": os.getloadavg(),
    }
    benchmark.group = "pipelined"
    benchmark.extra_info.update(info)
    RESULTS[variant] = info


def test_summary() -> None:
    """Prints the measured table, the host-side ceiling and the GPU projection."""
    if set(RESULTS) != set(VARIANTS):
        pytest.skip("run the four variants first (whole file)")
    print(f"\n{PAGES} pages, {os.cpu_count()} cores, load {RESULTS['stock']['load_average']}")
    print("| variant | pages/s | wall ms/page | engine ms/page | host ms/page | CPU s/page |")
    print("|---|---|---|---|---|---|")
    for v in VARIANTS:
        r = RESULTS[v]
        print(
            f"| {v} | {r['pages_per_s']:.3f} | {r['wall_ms_per_page']:.0f} | "
            f"{r['engine_ms_per_page']:.0f} | {r['host_ms_per_page']:.0f} | "
            f"{r['cpu_s_per_page']:.2f} |"
        )
    calls = {v: RESULTS[v]["calls_per_round"] for v in ("stock", "pipelined")}
    print(f"\nmodel calls per round (stock -> pipelined): {calls}")
    stats = RESULTS["pipelined-replayed"]["pipelined_stats"] or {}
    busy = {k: v / PAGES for k, v in stats.get("busy_ms", {}).items()}
    bound_ms = max(busy.values())
    print(
        "pipelined, replayed engines: busy ms/page per stage thread "
        + ", ".join(f"{k} {v:.0f}" for k, v in busy.items())
        + f" (sum {sum(busy.values()):.0f}); slowest stage {bound_ms:.0f} ms/page"
    )
    rows_per_page = stats.get("rec_rows", 0) / PAGES
    engine_ms = T4_DET_MS_PER_IMAGE + rows_per_page / 6 * T4_REC_MS_PER_6_ROWS
    stock_host = RESULTS["stock"]["host_ms_per_page"]
    ceiling_ms = RESULTS["pipelined-replayed"]["wall_ms_per_page"]
    print(
        f"\nPROJECTION (not measured): T4 TensorRT model time {engine_ms:.1f} ms/page "
        f"(det {T4_DET_MS_PER_IMAGE} ms x 1 + rec {T4_REC_MS_PER_6_ROWS} ms x "
        f"{rows_per_page:.1f}/6 rows; orientation not published, left out); host times "
        "measured on this CPU"
    )
    print("| path | model ms | host ms | projected ms/page | projected pages/s |")
    print("|---|---|---|---|---|")
    rows = [
        ("stock", stock_host, "in series", stock_host + engine_ms),
        ("pipelined", ceiling_ms, "replayed wall here", max(ceiling_ms, engine_ms)),
        ("pipelined, free cores", bound_ms, "slowest stage", max(bound_ms, engine_ms)),
    ]
    for name, host, how, total in rows:
        print(
            f"| {name} | {engine_ms:.1f} | {host:.0f} ({how}) | {total:.0f} | {1000 / total:.2f} |"
        )
