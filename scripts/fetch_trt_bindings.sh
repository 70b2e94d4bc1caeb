#!/usr/bin/env bash
# Pre-fetch the real TensorRT 10.x and 11.x Python bindings (PyPI wheels, no libraries) and
# build the stub libnvinfer & co that let them import, for `pytest -m trt_api`.
# Cache: .cache/trt-bindings/ (override with PADDLEOCR_TRT_BINDINGS_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
exec "$PY" tests/trt_api/bindings_env.py
