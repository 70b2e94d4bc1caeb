"""End to end against the real peer: PaddleOCR's own ONNX Runtime engine (issue 22).

Three pipelines over the same PP-OCRv4 mobile det/rec and text-line orientation, one run:

* ``stock-onnxruntime``: ``PaddleOCR(engine="onnxruntime")``, PaddleX's own
  ``ONNXRuntimeRunner`` over the *plain* graphs this package validated, placed as
  ``inference.onnx`` next to each model's ``inference.yml`` (``testing.stock_onnxruntime``);
* ``ours``: ``PaddleOCR(use_tensorrt=True)`` on this machine: no TensorRT flavor can run, so the
  validated ONNX Runtime engine serves (fused graphs, pipelined multi-image path);
* ``native``: ``PaddleOCR()``, native Paddle inference.

Pages: ``testing.pages.render_varied_pages`` - documents, a receipt, a 4000x3000 photo, a
near-empty scan, a dark, a noisy and a Chinese page. Each benchmark entry is ONE timed
``predict(list)`` of one variant; entries run interleaved (every variant in each round, the
order rotated per round), for the whole list and for each page class (its pages repeated to
``CLASS_IMAGES``), quiet and then with ``BURNERS`` CPU-burning processes on the cores ("other
work on the cores"). Every ``ours`` result is compared with ``stock-onnxruntime``'s field by
field, zero tolerance. ``test_summary`` prints images/s, the ratios (per round, per page class,
quiet and loaded), process CPU s/image and engine seconds per stage.

    pytest benchmarks/bench_peer.py -s -p no:cacheprovider --benchmark-json=peer.json
    python benchmarks/report.py peer.json --out results/     # the same tables, from the JSON

    PADDLEOCR_TRT_BENCH_PAGES=12 PADDLEOCR_TRT_BENCH_ROUNDS=2 (defaults)
    PADDLEOCR_TRT_BENCH_LOADS=quiet,loaded  PADDLEOCR_TRT_BENCH_BURNERS=<cores>
    PADDLEOCR_TRT_BENCH_CLASSES=document,receipt,photo,blank,dark,noisy,chinese ("none": the
    whole list only)
    PADDLEOCR_TRT_BENCH_VARIANTS=stock-onnxruntime,ours,native (stock and ours are always run)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from peer_report import STOCK, VARIANTS, summary_lines

PAGES = int(os.environ.get("PADDLEOCR_TRT_BENCH_PAGES", "12"))
ROUNDS = int(os.environ.get("PADDLEOCR_TRT_BENCH_ROUNDS", "2"))
LOADS = tuple(
    x.strip() for x in os.environ.get("PADDLEOCR_TRT_BENCH_LOADS", "quiet,loaded").split(",")
)
BURNERS = int(os.environ.get("PADDLEOCR_TRT_BENCH_BURNERS", str(os.cpu_count() or 2)))
#: a page class's pages are repeated to this many images per call (several images in flight)
CLASS_IMAGES = 4
ALL_CLASSES = "document,receipt,photo,blank,dark,noisy,chinese"
CLASSES = tuple(
    x.strip()
    for x in os.environ.get("PADDLEOCR_TRT_BENCH_CLASSES", ALL_CLASSES).split(",")
    if x.strip() and x.strip() != "none"
)
SCOPES = ("all", *CLASSES)
RUN_VARIANTS = tuple(
    v
    for v in VARIANTS
    if v in (STOCK, "ours")
    or v in os.environ.get("PADDLEOCR_TRT_BENCH_VARIANTS", ",".join(VARIANTS)).split(",")
)
RESULTS: list[dict[str, Any]] = []


def _entries() -> list[tuple[str, int, str, str]]:
    out = []
    for load in LOADS:
        for rnd in range(1, ROUNDS + 1):
            # rotated: no variant always first
            order = RUN_VARIANTS[rnd - 1 :] + RUN_VARIANTS[: rnd - 1]
            for scope in SCOPES:
                out += [(load, rnd, scope, v) for v in order]
    return out


class StageClock:
    """Times a PaddleX runner's calls (stock and native predictors; ours has its own timers).
    Not marked as one of our runners, so nothing of this package takes over the predictor."""

    def __init__(self, inner: Any, stage: str, seconds: dict[str, float]) -> None:
        self.inner, self.stage, self.seconds = inner, stage, seconds

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + (
                time.perf_counter() - start
            )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


_PREDICTORS = {
    "text_det_model": "det",
    "textline_orientation_model": "orientation",
    "text_rec_model": "rec",
}


def _clock(ocr: Any) -> dict[str, float]:
    seconds: dict[str, float] = {}
    pipeline = ocr.paddlex_pipeline._pipeline
    for attr, stage in _PREDICTORS.items():
        predictor = getattr(pipeline, attr)
        predictor.runner = StageClock(predictor.runner, stage, seconds)
    return seconds


@contextlib.contextmanager
def background_load(count: int) -> Iterator[None]:
    """``count`` processes busy-looping on the cores while the block runs ("other work")."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5 if procs else 0)  # let the scheduler see them
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@pytest.fixture(scope="module")
def suite(ocr_models: Any, engine_cache_dir: str, tmp_path_factory: pytest.TempPathFactory):
    from paddleocr import PaddleOCR

    import paddleocr_trt
    from paddleocr_trt.settings import ENV_ENGINE
    from paddleocr_trt.testing.pages import render_varied_pages
    from paddleocr_trt.testing.results import result_differences
    from paddleocr_trt.testing.stock_onnxruntime import stock_onnxruntime_kwargs

    assert os.environ.get(ENV_ENGINE) is None, f"unset {ENV_ENGINE}: the default choice is measured"
    pages = render_varied_pages(tmp_path_factory.mktemp("peer_pages"), PAGES)
    paths = [str(p.path) for p in pages]
    scopes = {"all": paths}
    for kind in CLASSES:
        mine = [str(p.path) for p in pages if p.kind == kind]
        assert mine, f"no {kind} page among {PAGES}: raise PADDLEOCR_TRT_BENCH_PAGES"
        scopes[kind] = (mine * CLASS_IMAGES)[: max(CLASS_IMAGES, len(mine))]
    kwargs = ocr_models.paddleocr_kwargs(textline_orientation=True)
    onnx_dirs = tmp_path_factory.mktemp("peer_onnx_dirs")
    stock_kwargs = stock_onnxruntime_kwargs(
        ocr_models, engine_cache_dir, onnx_dirs, textline_orientation=True
    )
    ocrs = {STOCK: PaddleOCR(**stock_kwargs, device="cpu")}
    from paddleocr_trt.integration.report import clear

    paddleocr_trt.activate()
    clear()
    ocrs["ours"] = PaddleOCR(**kwargs, device="cpu", use_tensorrt=True)
    backends = {d.model_name: d.backend for d in paddleocr_trt.backend_report()}
    assert set(backends.values()) == {"onnxruntime"}, backends
    if "native" in RUN_VARIANTS:
        ocrs["native"] = PaddleOCR(**kwargs, device="cpu")
    clocks = {v: _clock(ocrs[v]) for v in (STOCK, "native") if v in ocrs}
    # warm-up: every variant once over every page; stock's results are the reference
    warm = {v: ocrs[v].predict(paths) for v in RUN_VARIANTS}
    reference = dict(zip(paths, warm[STOCK], strict=True))
    problems = result_differences(warm[STOCK], warm["ours"], box_tolerance=0, score_tolerance=0)
    assert not problems, problems[:5]
    native_vs_stock = result_differences(warm[STOCK], warm["native"]) if "native" in warm else []
    paddleocr_trt.take_stage_timings()
    return {
        "ocrs": ocrs,
        "clocks": clocks,
        "scopes": scopes,
        "reference": reference,
        "native_differences": len(native_vs_stock),
        "backends": {d.model_name: d.reason for d in paddleocr_trt.backend_report()},
    }


@pytest.mark.parametrize(
    ("load", "rnd", "scope", "variant"),
    _entries(),
    ids=[f"{load}-r{rnd}-{scope}-{v}" for load, rnd, scope, v in _entries()],
)
def test_peer(benchmark: Any, suite: dict, load: str, rnd: int, scope: str, variant: str) -> None:
    import paddleocr_trt
    from paddleocr_trt.testing.results import result_differences

    ocr, paths = suite["ocrs"][variant], suite["scopes"][scope]
    clock = suite["clocks"].get(variant)
    if clock is not None:
        clock.clear()
    paddleocr_trt.take_stage_timings()
    with background_load(BURNERS if load == "loaded" else 0):
        cpu = time.process_time()
        results = benchmark.pedantic(lambda: ocr.predict(paths), rounds=1, iterations=1)
        cpu = time.process_time() - cpu
    if clock is not None:
        stages = dict(clock)
    else:
        stages = {t.stage: t.engine_seconds for t in paddleocr_trt.take_stage_timings().values()}
    if variant == "ours":
        expected = [suite["reference"][p] for p in paths]
        problems = result_differences(expected, results, box_tolerance=0, score_tolerance=0)
        assert not problems, problems[:5]
    wall = benchmark.stats.stats.mean
    info = {
        "peer": True,
        "backend": variant,
        "load": load,
        "burners": BURNERS if load == "loaded" else 0,
        "round": rnd,
        "page_class": scope,
        "images_per_round": len(paths),
        "images_per_s": len(paths) / wall,
        "seconds": wall,
        "cpu_s_per_image": cpu / len(paths),
        "engine_seconds_per_stage": stages,
        "identical_to_stock": variant == "ours" or None,
        "native_differences_from_stock": suite["native_differences"],
        "backends": suite["backends"] if variant == "ours" else None,
        "load_average": os.getloadavg(),
        "cores": os.cpu_count(),
    }
    benchmark.group = f"peer-{load}-{scope}"
    benchmark.extra_info.update(info)
    RESULTS.append(info)


def test_summary() -> None:
    """Prints the ratio tables (also: ``python benchmarks/report.py peer.json``)."""
    if not RESULTS:
        pytest.skip("run the test_peer entries first (whole file)")
    print()
    print("\n".join(summary_lines(RESULTS)))
