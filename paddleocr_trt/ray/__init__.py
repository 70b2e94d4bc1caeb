"""Batch OCR on a Ray cluster: one engine-holding worker per GPU, nothing lost, nothing doubled.

Needs the ``[ray]`` extra (``pip install "paddleocr-trt[ray]"``). ``ocr_dataset(inputs, ...)``
returns a Ray Dataset of one row per page; ``OCRWorker`` is the callable class to use in your
own ``Dataset.map_batches``; ``paddleocr-trt batch`` is the CLI. See ``docs/changes/ray.md``.
"""

from __future__ import annotations

from .dataset import BatchSummary, ocr_dataset, source_dataset, summarize
from .ledger import CrashLedger, create_ledger
from .schema import COLUMNS, SCHEMA
from .worker import OCRWorker

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "BatchSummary",
    "CrashLedger",
    "OCRWorker",
    "create_ledger",
    "ocr_dataset",
    "source_dataset",
    "summarize",
]
