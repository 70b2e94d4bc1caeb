"""Batch OCR on a real Ray cluster (two simulated nodes on this machine), ONNX Runtime engine.

One module-scoped cluster (``ray.cluster_utils.Cluster``: a head and a second node, one CPU
each, small object stores). The engines come from the session's ONNX Runtime cache (the engine
tests built it), shared by every worker. Checked against one in-process ``PaddleOCR.predict``
over the same inputs, field by field with tolerance zero:

* the CLI (``paddleocr-trt batch --address``): Parquet rows in input order, every page once,
  corrupt image and PDF as error rows, no engine built (the cache is unchanged);
* the helper over a Ray Dataset of bytes: real worker processes killed with SIGKILL (their pids
  from the crash ledger) while they hold a batch; the batch is retried on the restarted actor,
  an input that keeps killing its worker ends as an error row, every other page comes out once;
* a bundle (``cache export``) imported by workers into an empty cache: nothing is built.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from fixtures.engines import ENGINE
from PIL import Image
from ray.cluster_utils import Cluster

from paddleocr_trt.ray import create_ledger, ocr_dataset

pytestmark = [pytest.mark.slow, pytest.mark.ray]
STORE = 150 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes (head + worker), one CPU each; always shut down, even on failure."""
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": STORE, "include_dashboard": False},
    )
    try:
        nodes.add_node(num_cpus=1, object_store_memory=STORE)
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


@pytest.fixture(scope="module")
def engine_cache(cold_run, ort_env) -> str:
    """The ONNX Runtime engines the engine tests built (session cache), shared by all workers."""
    return ort_env["PADDLEOCR_TRT_CACHE_DIR"]


@pytest.fixture(scope="module")
def model_kwargs(ocr_models) -> dict:
    return ocr_models.paddleocr_kwargs(textline_orientation=True)


@pytest.fixture(scope="module")
def inputs(sample_images, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small images, a two-page PDF, a corrupt PNG, a corrupt PDF, and a big page."""
    folder = tmp_path_factory.mktemp("ray_inputs")
    by_kind = {s.kind: s.path for s in sample_images}
    out = {k: by_kind[k] for k in ("rotated", "long_line", "large")}
    out["english"] = by_kind["document"]
    english = Image.open(out["english"]).convert("RGB")
    pages = []
    for shift in (0, 50):
        page = Image.new("RGB", (420, 300), "white")
        page.paste(english.resize((380, 120)), (10, 20 + shift))
        pages.append(page)
    out["pdf"] = folder / "two_pages.pdf"
    pages[0].save(out["pdf"], save_all=True, append_images=pages[1:])
    out["bad_png"] = folder / "corrupt.png"
    out["bad_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    out["bad_pdf"] = folder / "corrupt.pdf"
    out["bad_pdf"].write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage")
    return out


@pytest.fixture(scope="module")
def reference(engine_cache, model_kwargs, inputs) -> dict:
    """One in-process predict over the good inputs: {(path, page): (texts, scores, polys)}."""
    from paddleocr import PaddleOCR

    import paddleocr_trt

    mp = pytest.MonkeyPatch()
    mp.setenv("PADDLEOCR_TRT_CACHE_DIR", engine_cache)
    try:
        paddleocr_trt.activate()
        ocr = PaddleOCR(**model_kwargs, **ENGINE, trt_engine="onnxruntime")
        good = [str(inputs[k]) for k in ("english", "rotated", "long_line", "pdf", "large")]
        out = {}
        for result in ocr.predict(good):
            out[(result["input_path"], result["page_index"])] = (
                list(result["rec_texts"]),
                [float(s) for s in result["rec_scores"]],
                [p.astype(int).tolist() for p in result["rec_polys"]],
            )
        return out
    finally:
        mp.undo()


def _cache_state(root: str) -> dict[str, float]:
    return {
        str(p.parent.relative_to(root)): json.loads(p.read_text())["created"]
        for p in Path(root).glob("*/*/manifest.json")
    }


def _check_pages(rows: list[dict], names: dict[int, str], reference: dict) -> None:
    """Every good input's pages once, in order, equal to the in-process result."""
    keys = [(r["input_id"], r["page_index"] or 0) for r in rows]
    assert keys == sorted(keys) and len(keys) == len(set(keys)), keys
    for row in rows:
        if row["error"] is not None:
            continue
        expected = reference[(names[row["input_id"]], row["page_index"])]
        got = (row["texts"], row["scores"], row["polygons"])
        assert got == expected, (row["input"], row["page_index"])


def test_cli_rows_identical_to_in_process_predict(
    cluster, engine_cache, model_kwargs, inputs, reference, tmp_path: Path
) -> None:
    before = _cache_state(engine_cache)
    order = ["english", "rotated", "pdf", "bad_png", "long_line", "bad_pdf"]
    args = [str(inputs[k]) for k in order]
    args[2] = str(inputs["pdf"].parent / "two_*.pdf")  # a glob
    models = []
    for name in ("text_detection", "text_recognition", "textline_orientation"):
        flag = name.replace("_", "-")
        models += [f"--{flag}-model-dir", model_kwargs[f"{name}_model_dir"]]
        models += [f"--{flag}-model-name", model_kwargs[f"{name}_model_name"]]
    out = tmp_path / "parquet"
    command = [sys.executable, "-m", "paddleocr_trt.cli", "batch", *args, "--out", str(out)]
    command += ["--address", cluster.address, "--workers", "2", "--batch-size", "2"]
    command += ["--engine", "onnxruntime", "--cache-dir", engine_cache, "--json", *models]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: some inputs are error rows
    summary = json.loads(proc.stdout)
    assert summary["pages"] == 5 and summary["error_rows"] == 2 and summary["inputs"] == 6
    assert len(summary["engines"]) == 3
    assert all(v == ["onnxruntime"] for v in summary["engines"].values())
    assert summary["pages_per_s"] > 0
    rows = pq.read_table(out).to_pylist()
    names = {i: str(inputs[k]) for i, k in enumerate(order)}
    _check_pages(rows, names, reference)
    pages = [(r["input_id"], r["page_index"]) for r in rows if r["error"] is None]
    assert pages == [(0, None), (1, None), (2, 0), (2, 1), (4, None)]
    errors = {r["input_id"]: r["error"] for r in rows if r["error"] is not None}
    assert set(errors) == {3, 5}
    assert "not a readable image" in errors[3] and "not a readable PDF" in errors[5]
    assert _cache_state(engine_cache) == before  # second run: every engine from the cache


def test_actor_pools_restart_killed_workers_and_retry_their_batches(cluster) -> None:
    """The fault tolerance ``ocr_dataset`` relies on, as the installed Ray applies it."""
    from ray.data._internal.execution.operators.actor_pool_map_operator import (
        ActorPoolMapOperator,
    )

    from paddleocr_trt.ray.dataset import FAULT_TOLERANCE, fault_tolerance_args

    applied = ActorPoolMapOperator._apply_default_remote_args(
        fault_tolerance_args(), ray.data.DataContext.get_current()
    )
    assert {k: applied[k] for k in FAULT_TOLERANCE} == FAULT_TOLERANCE


def _killer(ledger, poison: int, stop: threading.Event, killed: list[tuple[int, int]]) -> None:
    """SIGKILL whichever worker process is running the poison input, each time it does."""
    seen: set[str] = set()
    while not stop.is_set():
        worker = ray.get(ledger.running.remote()).get(poison)
        if worker is not None and worker not in seen:
            seen.add(worker)
            pid = int(worker.rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)
            killed.append((poison, pid))
        time.sleep(0.05)


def test_sigkill_mid_batch_loses_and_doubles_nothing(
    cluster, engine_cache, model_kwargs, inputs, reference
) -> None:
    order = ["english", "large", "rotated", "pdf", "long_line"]  # "large" is the poison
    poison = 1
    items = [
        {"input_id": i, "data": inputs[k].read_bytes(), "name": f"{k}{inputs[k].suffix}"}
        for i, k in enumerate(order)
    ]
    ledger = create_ledger()
    ds = ocr_dataset(
        ray.data.from_items(items, override_num_blocks=3),
        {**model_kwargs, **ENGINE},
        workers=2,
        batch_size=2,
        engine="onnxruntime",
        cache_dir=engine_cache,
        max_crashes=2,
        ledger=ledger,
    )
    stop, killed = threading.Event(), []
    thread = threading.Thread(target=_killer, args=(ledger, poison, stop, killed), daemon=True)
    thread.start()
    try:
        rows = ds.take_all()
    finally:
        stop.set()
        thread.join()
    # batch [english, large] killed mid-batch, then "large" alone: two real SIGKILLs
    assert len(killed) == 2 and killed[0][1] != killed[1][1]
    names = {i: str(inputs[k]) for i, k in enumerate(order)}
    _check_pages(rows, names, reference)
    by_id: dict[int, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["input_id"], []).append(row)
    assert sorted(by_id) == list(range(len(order)))
    assert [r["page_index"] for r in by_id[3]] == [0, 1]
    assert all(len(v) == 1 for k, v in by_id.items() if k != 3)
    crashed = by_id[poison][0]
    assert crashed["error"] == "this input crashed its worker 2 times; given up"
    assert crashed["attempts"] == 2  # started twice, killed twice, then given up
    # its batch partner was killed with it mid-batch, retried, and is in the output once
    assert any(r["attempts"] >= 2 and r["error"] is None for k, v in by_id.items() for r in v)
    workers = ray.get(ledger.workers.remote())
    assert len(workers) >= 4  # two actors + two restarts
    assert all(not w["built"] for w in workers)


def test_bundle_lets_workers_start_without_building(
    cluster, engine_cache, model_kwargs, inputs, reference, tmp_path: Path
) -> None:
    from paddleocr_trt.cli.main import main

    bundle = tmp_path / "fleet.tar.gz"
    assert main(["cache", "export", str(bundle), "--cache-dir", engine_cache]) == 0
    fresh = tmp_path / "empty_cache"
    ledger = create_ledger()
    order = ["english", "rotated", "pdf", "long_line"]
    ds = ocr_dataset(
        [inputs[k] for k in order],
        {**model_kwargs, **ENGINE},
        workers=2,
        batch_size=1,
        engine="onnxruntime",
        cache_dir=fresh,
        bundle=bundle,
        ledger=ledger,
    )
    rows = ds.take_all()
    _check_pages(rows, {i: str(inputs[k]) for i, k in enumerate(order)}, reference)
    assert len(rows) == 5 and all(r["error"] is None for r in rows)
    workers = ray.get(ledger.workers.remote())
    assert workers and all(not w["built"] for w in workers)
    assert all("loaded from cache" in why for w in workers for why in w["reasons"].values())
    exported = len(list(Path(engine_cache).glob("*/*/manifest.json")))
    assert sum(w["bundle"]["imported"] for w in workers) == exported  # each key imported once
    manifests = [json.loads(p.read_text()) for p in fresh.glob("*/*/manifest.json")]
    assert len(manifests) == exported
    assert all("imported" in m["metadata"] for m in manifests)
