"""``ocr_dataset``: a list, glob or Ray Dataset of inputs -> a Dataset of OCR rows, and its summary.

The map is ``Dataset.map_batches(OCRWorker, ...)`` on an actor pool of ``workers`` actors
(``num_gpus=gpus_per_worker`` each on GPU clusters, CPU actors otherwise) with Ray's fault
tolerance on: a killed actor is restarted (``max_restarts=-1``) and its batch retried
(``max_task_retries=-1``; see :func:`fault_tolerance_args`); the crash ledger turns an input
that keeps killing workers into an error row. Order is preserved (``preserve_order``), so the
rows come out by input position.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .inputs import expand, rows_from
from .ledger import create_ledger
from .schema import COLUMNS
from .worker import DEFAULT_MAX_CRASHES, OCRWorker

DEFAULT_BATCH_SIZE = 4


def source_dataset(inputs: Any) -> Any:
    """Rows ``input_id, path, data, name`` from paths/globs/dirs/bytes or a user's Dataset
    (which needs a ``path`` or ``data`` column; ``input_id`` is made from it when missing)."""
    import ray.data

    if isinstance(inputs, ray.data.Dataset):
        # no extra map stage: a task stage would wait for CPUs the actors hold; the worker
        # fills in missing input_id/name (see OCRWorker.__call__)
        columns = set(inputs.columns() or ())
        if not columns & {"path", "data"}:
            raise ValueError("the dataset needs a 'path' or a 'data' (bytes) column")
        return inputs
    rows = rows_from(expand(inputs))
    if not rows:
        raise ValueError(f"no input files found in {inputs!r}")
    return ray.data.from_items(rows, override_num_blocks=min(len(rows), 64))


def ocr_dataset(
    inputs: str | os.PathLike | Iterable[Any] | Any,
    ocr_kwargs: dict[str, Any] | None = None,
    *,
    workers: int = 1,
    gpus_per_worker: float = 0,
    cpus_per_worker: float = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    engine: str | list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    bundle: str | os.PathLike | None = None,
    max_crashes: int = DEFAULT_MAX_CRASHES,
    ledger: Any = None,
) -> Any:
    """A lazy Ray Dataset of OCR rows (see :mod:`.schema`), ordered by input.

    With ``gpus_per_worker`` > 0 each actor gets that many GPUs and PaddleOCR runs on
    ``gpu:0`` of what Ray gave it (unless ``ocr_kwargs`` says ``device``). ``cache_dir`` should
    be a directory every node sees (shared file system) or None with a ``bundle``.
    """

    kwargs = dict(ocr_kwargs or {})
    kwargs.setdefault("device", "gpu:0" if gpus_per_worker else "cpu")
    if ledger is None:
        ledger = create_ledger()
    constructor = {
        "ocr_kwargs": kwargs,
        "engine": engine,
        "cache_dir": None if cache_dir is None else os.path.abspath(cache_dir),
        "bundle": None if bundle is None else os.path.abspath(bundle),
        "ledger": ledger,
        "max_crashes": max_crashes,
    }
    out = source_dataset(inputs).map_batches(
        OCRWorker,
        fn_constructor_kwargs=constructor,
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=workers,
        num_cpus=cpus_per_worker,
        num_gpus=gpus_per_worker or None,
        **fault_tolerance_args(),
    )
    # on the dataset's own context (a copy taken when the source was made), not the global one
    out.context.execution_options.preserve_order = True
    return out


#: restart a killed actor for ever, retry its task for ever (the crash ledger bounds a bad input)
FAULT_TOLERANCE = {"max_restarts": -1, "max_task_retries": -1}


def fault_tolerance_args() -> dict[str, int]:
    """``FAULT_TOLERANCE`` as ``map_batches`` keywords where they are still needed.

    Ray Data applies exactly these to actor pools by default, and from Ray 2.60 on passing them
    is deprecated (to be removed in 2.64): there they are left to the default, which
    ``tests/test_ray_batch.py`` checks on the installed Ray.
    """
    import ray
    from packaging.version import Version

    return {} if Version(ray.__version__) >= Version("2.60") else dict(FAULT_TOLERANCE)


@dataclass
class BatchSummary:
    """What a run produced: pages, error rows, engines, workers, throughput."""

    inputs: int = 0
    pages: int = 0
    error_rows: int = 0
    retried_inputs: int = 0
    seconds: float = 0.0
    engines: dict[str, list[str]] = field(default_factory=dict)  # model -> engines seen
    workers: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # first few error rows

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "pages_per_s": self.pages_per_s}

    def text(self) -> str:
        engines = ", ".join(f"{m}: {'/'.join(e)}" for m, e in sorted(self.engines.items()))
        lines = [
            f"{self.pages} pages from {self.inputs} inputs in {self.seconds:.1f} s "
            f"({self.pages_per_s:.2f} pages/s) on {len(self.workers)} worker processes",
            f"engines: {engines or 'none'}",
            f"error rows: {self.error_rows}" + (f"; retried inputs: {self.retried_inputs}"),
        ]
        lines += [f"  input {e['input_id']} ({e['input']}): {e['error']}" for e in self.errors]
        return "\n".join(lines)


def summarize(rows: Iterable[dict[str, Any]], seconds: float) -> BatchSummary:
    """Summary of output rows (any iterable of dicts with the schema's columns)."""
    summary = BatchSummary(seconds=seconds)
    inputs, workers, retried = set(), set(), set()
    for row in rows:
        inputs.add(row["input_id"])
        workers.add(row["worker"])
        if row["attempts"] and row["attempts"] > 1:
            retried.add(row["input_id"])
        if row["error"] is not None:
            summary.error_rows += 1
            if len(summary.errors) < 20:
                summary.errors.append({k: row[k] for k in ("input_id", "input", "error")})
        else:
            summary.pages += 1
        for model, engine in json.loads(row["engines"] or "{}").items():
            seen = summary.engines.setdefault(model, [])
            if engine not in seen:
                seen.append(engine)
    summary.inputs, summary.workers = len(inputs), sorted(workers)
    summary.retried_inputs = len(retried)
    return summary


__all__ = ["COLUMNS", "BatchSummary", "OCRWorker", "ocr_dataset", "source_dataset", "summarize"]
