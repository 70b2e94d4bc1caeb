"""Shared test set-up. Fixtures live in tests/fixtures/, one module per area."""

from __future__ import annotations

import os

# PaddleX pings model hosters on start-up unless told not to; this machine has no internet.
os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")

pytest_plugins = [
    "fixtures.models",
    "fixtures.images",
    "fixtures.onnx",
    "fixtures.cache",
    "fixtures.engines",
    "fixtures.current_models",
    "fixtures.fake_tensorrt",
    "fixtures.trt_runner_doubles",
    "fixtures.fake_tensorrt_rtx",
]
