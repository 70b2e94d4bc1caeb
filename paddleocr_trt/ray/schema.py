"""The output rows of batch OCR: one per page (or per failed input), one fixed Arrow schema.

A fixed schema, not one inferred per batch: a batch whose pages have no text would otherwise
make ``list<null>`` columns that later batches' ``list<string>`` cannot be appended to.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

SCHEMA = pa.schema(
    [
        pa.field("input_id", pa.int64()),
        pa.field("input", pa.string()),  # the path, or the name given to bytes
        pa.field("page_index", pa.int64()),  # PDF/TIFF page (0-based); null for an image
        pa.field("texts", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float64())),
        pa.field("polygons", pa.list_(pa.list_(pa.list_(pa.int64())))),  # rec_polys, [x, y]
        pa.field("engines", pa.string()),  # JSON {model name: engine that ran it}
        pa.field("read_seconds", pa.float64()),  # checking/reading the input, per page
        pa.field("ocr_seconds", pa.float64()),  # the batch's predict time, per page
        pa.field("worker", pa.string()),  # "<node ip>:<pid>" of the actor that made the row
        pa.field("attempts", pa.int64()),  # times this input was started (> 1: retried)
        pa.field("error", pa.string()),  # null, or why this input gave no pages
    ]
)
COLUMNS = tuple(SCHEMA.names)


def page_row(
    prepared: Any, result: Any, *, engines: str, ocr_seconds: float, worker: str, attempts: int
) -> dict[str, Any]:
    """One page's row from a PaddleOCR result (``rec_texts``, ``rec_scores``, ``rec_polys``)."""
    return {
        "input_id": prepared.input_id,
        "input": prepared.name,
        "page_index": result["page_index"] if prepared.paged else None,
        "texts": [str(t) for t in result["rec_texts"]],
        "scores": [float(s) for s in result["rec_scores"]],
        "polygons": [np.asarray(p).astype(np.int64).tolist() for p in result["rec_polys"]],
        "engines": engines,
        "read_seconds": prepared.seconds / max(prepared.pages, 1),
        "ocr_seconds": ocr_seconds,
        "worker": worker,
        "attempts": attempts,
        "error": None,
    }


def error_row(
    input_id: int, name: str, error: str, *, engines: str, worker: str, attempts: int
) -> dict[str, Any]:
    """The one row of an input that gave no pages."""
    return {
        "input_id": input_id,
        "input": name,
        "page_index": None,
        "texts": [],
        "scores": [],
        "polygons": [],
        "engines": engines,
        "read_seconds": 0.0,
        "ocr_seconds": 0.0,
        "worker": worker,
        "attempts": attempts,
        "error": error,
    }


def to_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def engines_json(engines: dict[str, str]) -> str:
    return json.dumps(engines, sort_keys=True)
