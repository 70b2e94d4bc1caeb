"""The engine-holding worker: one ``PaddleOCR(use_tensorrt=True)`` per Ray actor, batch by batch.

``OCRWorker`` is a callable class for ``Dataset.map_batches`` (Ray runs it as an actor pool, one
actor per GPU on GPU clusters). Its constructor points the package at the cache (a directory all
workers share: the cache's lock makes the first worker build each engine and the others load
it; or a bundle each worker imports into its own cache), builds the pipeline, warms it up, and
reports which engine each model got and whether it was built here. Each call OCRs a batch of
input rows with the pipelined ``predict`` and returns one row per page; a bad input is an error
row; an input that keeps killing its worker becomes an error row via the crash ledger.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from typing import Any

import pyarrow as pa

from ..log import get_logger
from .inputs import PreparedInput, prepare, stable_id
from .schema import engines_json, error_row, page_row, to_table

log = get_logger("ray")

DEFAULT_MAX_CRASHES = 3


class OCRWorker:
    """``ds.map_batches(OCRWorker, fn_constructor_kwargs={...}, batch_format="pyarrow")``.

    ``ocr_kwargs``: PaddleOCR's arguments (model names/dirs, device, precision...);
    ``use_tensorrt=True`` is implied. ``engine``: ``trt_engine`` ("tensorrt", "onnxruntime",
    "tensorrt,onnxruntime"); None honours ``$PADDLEOCR_TRT_ENGINE``. ``cache_dir``: the engine
    cache (None: ``$PADDLEOCR_TRT_CACHE_DIR``, else the default). ``bundle``: an archive from
    ``paddleocr-trt cache export`` to import first. ``ledger``: a :func:`create_ledger` actor
    (None: crash isolation is off and Ray retries a crashing batch as often as it is told).
    """

    def __init__(
        self,
        ocr_kwargs: dict[str, Any] | None = None,
        *,
        engine: str | list[str] | None = None,
        cache_dir: str | None = None,
        bundle: str | None = None,
        ledger: Any = None,
        max_crashes: int = DEFAULT_MAX_CRASHES,
        warmup: bool = True,
    ) -> None:
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        if cache_dir:
            os.environ["PADDLEOCR_TRT_CACHE_DIR"] = str(cache_dir)
        _quiet_logging()
        self.ledger = ledger
        self.max_crashes = max(1, int(max_crashes))
        self.worker = f"{_node_ip()}:{os.getpid()}"
        self.tmp_dir = tempfile.mkdtemp(prefix="paddleocr-trt-ray-")
        started = time.perf_counter()
        self.bundle = _import_bundle(bundle) if bundle else None
        self.ocr, decisions = _make_ocr(ocr_kwargs or {}, engine)
        self.engines = {d.model_name: d.backend for d in decisions}
        self.built = [d.model_name for d in decisions if _was_built(d)]
        if self.bundle is not None:
            for d in decisions:
                if _was_built(d):  # the bundle had nothing for this GPU / TensorRT / key
                    log.warning(
                        "%s: no matching engine in bundle %s for this worker (bundle targets: "
                        "%s); built here: %s",
                        d.model_name,
                        bundle,
                        self.bundle.get("targets") or "none",
                        d.reason,
                    )
        self.engines_json = engines_json(self.engines)
        if warmup:
            self._warm_up()
        self.init_seconds = time.perf_counter() - started
        report = {
            "worker": self.worker,
            "pid": os.getpid(),
            "engines": self.engines,
            "reasons": {d.model_name: d.reason for d in decisions},
            "built": self.built,
            "bundle": self.bundle,
            "init_seconds": self.init_seconds,
        }
        log.info("OCR worker %s ready in %.1f s: %s", self.worker, self.init_seconds, self.engines)
        if self.ledger is not None:
            import ray

            ray.get(self.ledger.register.remote(report))

    def _warm_up(self) -> None:
        """Two synthetic pages through the pipelined path: sessions, arenas and threads exist
        before the first real batch is timed."""
        import numpy as np

        page = np.full((96, 320, 3), 255, dtype=np.uint8)
        page[30:60, 20:300] = 0
        self.ocr.predict([page, page.copy()])

    # -- one batch -----------------------------------------------------------------------------

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = [_normalise(r) for r in batch.to_pylist()]
        ids = [r["input_id"] for r in rows]
        if self.ledger is None:
            return to_table(self._run(rows, dict.fromkeys(ids, 1)))
        import ray

        unfinished = ray.get(self.ledger.peek.remote(ids))
        if not any(unfinished.values()):  # the normal case: nothing here crashed a worker
            ray.get(self.ledger.start.remote(ids, self.worker))
            attempts = ray.get(self.ledger.attempts.remote(ids))
            out = self._run(rows, attempts)
            ray.get(self.ledger.finish.remote(ids))
            return to_table(out)
        log.warning("batch %s crashed a worker before: running it one input at a time", ids)
        out = []
        for row, input_id in zip(rows, ids, strict=True):
            if unfinished[input_id] >= self.max_crashes:  # not started again: given up
                started = ray.get(self.ledger.attempts.remote([input_id]))[input_id]
                name = row.get("name") or row.get("path") or f"<bytes {input_id}>"
                message = f"this input crashed its worker {unfinished[input_id]} times; given up"
                log.error("input %s (%s): %s", input_id, name, message)
                out.append(self._error(input_id, str(name), message, started))
            else:
                ray.get(self.ledger.start.remote([input_id], self.worker))
                attempts = ray.get(self.ledger.attempts.remote([input_id]))
                out.extend(self._run([row], attempts))
            ray.get(self.ledger.finish.remote([input_id]))
        return to_table(out)

    def _error(self, input_id: int, name: str, message: str, attempts: int) -> dict[str, Any]:
        engines, worker = self.engines_json, self.worker
        return error_row(input_id, name, message, engines=engines, worker=worker, attempts=attempts)

    def _run(self, rows: list[dict[str, Any]], attempts: dict[int, int]) -> list[dict[str, Any]]:
        """OCR the rows together; if the batch call fails, each input alone (errors isolated)."""
        prepared = [prepare(r, self.tmp_dir) for r in rows]
        try:
            good = [p for p in prepared if p.error is None]
            outcome = self._predict(good)
            if outcome is None:  # one input broke the batch call: find which, keep the rest
                pages_by_input = {p.input_id: self._predict([p]) for p in good}
            elif isinstance(outcome, str):
                pages_by_input = {good[0].input_id: outcome}
            else:
                pages_by_input = _slice(good, outcome)
            out: list[dict[str, Any]] = []
            for p in prepared:
                n = attempts.get(p.input_id, 1)
                if p.error is not None:
                    out.append(self._error(p.input_id, p.name, p.error, n))
                    continue
                got = pages_by_input[p.input_id]
                if isinstance(got, str):
                    out.append(self._error(p.input_id, p.name, got, n))
                    continue
                pages, seconds = got
                for page in pages:
                    out.append(
                        page_row(
                            p,
                            page,
                            engines=self.engines_json,
                            ocr_seconds=seconds,
                            worker=self.worker,
                            attempts=n,
                        )
                    )
            return out
        finally:
            for p in prepared:
                p.cleanup()

    def _predict(self, items: list[PreparedInput]) -> tuple[list[Any], float] | str | None:
        """(results, seconds per page) for ``items`` together; for a single input its error
        text on failure, for several None (the caller retries them one by one)."""
        if not items:
            return [], 0.0
        started = time.perf_counter()
        try:
            results = list(self.ocr.predict([p.path for p in items]))
        except Exception as exc:
            if len(items) > 1:
                log.info("batch predict failed (%s); retrying its inputs one by one", exc)
                return None
            return f"OCR failed: {type(exc).__name__}: {exc}"
        expected = sum(p.pages for p in items)
        if len(results) != expected:
            message = f"OCR gave {len(results)} pages where {expected} were expected"
            return None if len(items) > 1 else message
        return results, (time.perf_counter() - started) / max(expected, 1)

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "tmp_dir", ""), ignore_errors=True)


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    """A row of a user's dataset: ``path`` or ``data``; ``input_id`` and ``name`` optional."""
    out = {"path": row.get("path"), "data": row.get("data")}
    out["name"] = row.get("name") or out["path"]
    given = row.get("input_id")
    out["input_id"] = int(given) if given is not None else stable_id(out)
    return out


def _slice(items: list[PreparedInput], outcome: tuple[list[Any], float]) -> dict[int, Any]:
    """{input id: (its pages' results, seconds per page)} from one call over ``items``."""
    results, seconds = outcome
    out, position = {}, 0
    for p in items:
        out[p.input_id] = (results[position : position + p.pages], seconds)
        position += p.pages
    return out


def _was_built(decision: Any) -> bool:
    return decision.backend != "paddle" and "loaded from cache" not in decision.reason


def _make_ocr(ocr_kwargs: dict[str, Any], engine: Any) -> tuple[Any, list[Any]]:
    from paddleocr import PaddleOCR

    from .. import activate
    from ..integration import report

    activate()
    report.clear()
    kwargs = {"use_tensorrt": True, **ocr_kwargs}
    if engine is not None:
        kwargs["trt_engine"] = engine
    ocr = PaddleOCR(**kwargs)
    return ocr, report.backend_report()


def _import_bundle(bundle: str) -> dict[str, Any]:
    """Import ``bundle`` into this worker's cache (under each key's lock: workers sharing a
    cache import each entry once)."""
    from ..cache.bundle import import_bundle
    from ..cache.store import EngineCache

    result = import_bundle(EngineCache(), bundle)
    if result.rejected:
        log.warning("bundle %s: rejected entries %s", bundle, result.rejected)
    return {
        "path": bundle,
        "imported": len(result.imported),
        "present": len(result.present),
        "rejected": len(result.rejected),
    }


def _node_ip() -> str:
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:
        return socket.gethostname()


def _quiet_logging() -> None:
    """PaddleX logs every model load at INFO on each worker; the driver shows worker logs."""
    logging.getLogger("paddlex").setLevel(logging.WARNING)
