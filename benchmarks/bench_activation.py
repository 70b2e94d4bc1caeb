"""What the drop-in hook costs: interpreter start-up, and the whole pipeline on the fallback path.

Targets (issue "drop-in activation"): start-up with the package installed <= +15 ms;
end-to-end PaddleOCR overhead of the active plugin (fallback path) < 2%. Both sides of each
comparison are measured in the same run, interleaved.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 40


def _make_venv(path: Path, with_package: bool) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python*/site-packages"))
    if with_package:  # exactly what `pip install -e .` leaves in site-packages
        (site / "_editable_impl_paddleocr_trt.pth").write_text(str(REPO_ROOT) + "\n")
        (site / "paddleocr_trt_startup.pth").write_text(
            (REPO_ROOT / "paddleocr_trt_startup.pth").read_text()
        )
    return path / "bin" / "python"


def _start_seconds(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True)
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def interpreters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("venvs")
    pythons = {
        "without": _make_venv(root / "without", False),
        "with": _make_venv(root / "with", True),
    }
    check = subprocess.run(
        [str(pythons["with"]), "-c", "import sys; print('paddleocr_trt._startup' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "True", "the startup hook did not load in the test venv"
    return pythons


def test_interpreter_startup_overhead(benchmark, interpreters: dict[str, Path]) -> None:
    samples: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(5):  # warm the page cache
        for python in interpreters.values():
            _start_seconds(python)

    def interleaved() -> None:
        for name, python in interpreters.items():
            samples[name].append(_start_seconds(python))

    benchmark.pedantic(interleaved, rounds=ROUNDS, iterations=1)
    med = {name: statistics.median(values) for name, values in samples.items()}
    overhead_ms = (med["with"] - med["without"]) * 1000
    benchmark.extra_info.update(
        {f"median_start_{k}_ms": v * 1000 for k, v in med.items()}
        | {"startup_overhead_ms": overhead_ms, "target_ms": 15}
    )
    print(
        f"\nstart-up median: without {med['without'] * 1000:.1f} ms, "
        f"with {med['with'] * 1000:.1f} ms, overhead {overhead_ms:.1f} ms"
    )
    assert overhead_ms <= 15


def test_pipeline_overhead_fallback(benchmark, ocr_models, sample_images) -> None:
    from paddleocr import PaddleOCR

    kwargs = {**ocr_models.paddleocr_kwargs(textline_orientation=True), "device": "cpu"}
    pipelines = {
        "plain": PaddleOCR(**kwargs),
        "plugin": PaddleOCR(**kwargs, use_tensorrt=True, precision="fp16"),
    }
    paths = [str(s.path) for s in sample_images]
    samples: dict[str, list[float]] = {name: [] for name in pipelines}
    for ocr in pipelines.values():  # warm-up: first-call allocations, oneDNN kernel selection
        ocr.predict(paths)

    def interleaved() -> None:
        for name, ocr in pipelines.items():
            start = time.perf_counter()
            for path in paths:
                ocr.predict(path)
            samples[name].append(time.perf_counter() - start)

    benchmark.pedantic(interleaved, rounds=5, iterations=1)
    best = {name: min(values) for name, values in samples.items()}
    med = {name: statistics.median(values) for name, values in samples.items()}
    overhead = best["plugin"] / best["plain"] - 1
    benchmark.extra_info.update(
        {
            "images": len(paths),
            "best_plain_s": best["plain"],
            "best_plugin_s": best["plugin"],
            "median_plain_s": med["plain"],
            "median_plugin_s": med["plugin"],
            "overhead_best_pct": overhead * 100,
            "overhead_median_pct": (med["plugin"] / med["plain"] - 1) * 100,
            "target_pct": 2,
        }
    )
    print(
        f"\npipeline on {len(paths)} images: plain best {best['plain']:.3f} s, "
        f"plugin best {best['plugin']:.3f} s, overhead {overhead * 100:+.2f}%"
    )
    assert overhead < 0.02
