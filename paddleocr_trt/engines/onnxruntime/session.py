"""ONNX Runtime session options shared by the runner and the resident-map graphs.

Apart from ``runner.py`` so that ``resident.py`` (which the runner uses) needs nothing of it.
"""

from __future__ import annotations

from typing import Any


def session_options(threads: int | None = None, *, spinning: bool = False) -> Any:
    """Quiet ONNX Runtime session options, ``threads`` intra-op threads (None: its default).

    ``spinning=False`` (for the CPU provider): ONNX Runtime's idle workers sleep instead of
    busy-waiting for the next operator. Spinning workers burn the cores that the pipelined
    path's other stages (and other processes) need: measured on 2 cores, the same det/rec call
    took 1.3-1.7x the CPU time with spinning (issue 22, see CHANGELOG). Results do not
    depend on it.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # initializer clean-up chatter is not the user's concern
    if threads:
        options.intra_op_num_threads = int(threads)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options
