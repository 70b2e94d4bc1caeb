#!/usr/bin/env bash
# Runs the CUDA layer's GPU tests and benchmark on a CUDA machine (repo root as cwd).
# The package is not installed there and paddle/paddleocr are absent, so: PYTHONPATH=. and
# --noconftest (the shared conftest's fixture plugins need packages this layer does not).
# Writes $OUT/gpu_tests.log, $OUT/junit.xml, $OUT/bench_cuda.json, $OUT/bench.log,
# $OUT/bench_io.json and $OUT/bench_io.log when OUT is set.
set -u
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
common=(-p no:cacheprovider --noconftest --rootdir=. -c pyproject.toml)

echo "== environment"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader
"$PY" -c "import cuda.bindings, numpy, pytest; print('cuda-bindings', cuda.bindings.__version__, 'numpy', numpy.__version__, 'pytest', pytest.__version__)"
"$PY" -c "import pytest_benchmark; print('pytest-benchmark', pytest_benchmark.__version__)"

echo "== tests"
"$PY" -m pytest "${common[@]}" tests/gpu tests/test_cuda_cpu.py -v -rs --durations=8 \
    --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}

echo "== benchmark"
"$PY" -m pytest "${common[@]}" benchmarks/bench_cuda_runtime.py -q \
    --benchmark-json="$OUT/bench_cuda.json" --benchmark-columns=min,median,mean,stddev,rounds \
    2>&1 | tee "$OUT/bench.log" | tail -60
bench_rc=${PIPESTATUS[0]}

echo "== zero-copy I/O benchmark (stand-in engine, not TensorRT)"
"$PY" benchmarks/bench_cuda_io.py "$OUT/bench_io.json" 2>&1 | tee "$OUT/bench_io.log"
io_rc=${PIPESTATUS[0]}

echo "== summary (tests rc=$tests_rc, benchmark rc=$bench_rc, io benchmark rc=$io_rc)"
[ -f "$OUT/bench_cuda.json" ] && "$PY" benchmarks/bench_cuda_runtime.py "$OUT/bench_cuda.json"
[ -f "$OUT/bench_io.log" ] && cat "$OUT/bench_io.log"
exit $(( tests_rc || bench_rc || io_rc ))
