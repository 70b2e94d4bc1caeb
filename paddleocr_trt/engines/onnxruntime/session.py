"""ONNX Runtime session options shared by the runner and the resident-map graphs.

Apart from ``runner.py`` so that ``resident.py`` (which the runner uses) needs nothing of it.
"""

from __future__ import annotations

from typing import Any


def session_options(threads: int | None = None) -> Any:
    """Quiet ONNX Runtime session options, ``threads`` intra-op threads (None: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # initializer clean-up chatter is not the user's concern
    if threads:
        options.intra_op_num_threads = int(threads)
    return options
