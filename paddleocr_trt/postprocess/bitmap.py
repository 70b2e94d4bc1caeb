"""The fused det graph's packed DB bitmap, read on the host.

Here, below both the graph writer (``backend/onnx/fuse_db.py``) and its readers
(``postprocess/db.py``, ``comparator/fused.py``), so that the readers need no graph code.
"""

from __future__ import annotations

import numpy as np


def unpack_db_bitmap(packed: np.ndarray) -> np.ndarray:
    """(…, W/8) uint8 from the engine -> (…, W) bool, as ``pred > thresh`` gives it."""
    return np.unpackbits(packed, axis=-1).view(bool)
