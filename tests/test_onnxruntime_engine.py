"""The ONNX Runtime engine inside the real PaddleOCR pipeline: the whole engine path for real.

convert -> validate against native Paddle -> cache -> our runner inside PaddleX's predictors ->
results, in fresh interpreters as a user runs it, compared field by field with plain PaddleOCR.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures.engines import ENGINE, PLAIN

from paddleocr_trt.integration.report import clear as clear_backend_report
from paddleocr_trt.testing.results import result_differences, result_fields

MODELS = ("PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec", "PP-LCNet_x0_25_textline_ori")


@pytest.mark.slow
def test_engine_results_equal_plain_paddleocr(cold_run, sample_images) -> None:
    assert cold_run["integration_modules_before"] == [], "the hook ran before PaddleOCR import"
    plain, engine = cold_run["results"]["plain"], cold_run["results"]["engine"]
    assert any(r["rec_texts"] for r in plain["single"]), "plain PaddleOCR read nothing"
    assert len(plain["single"]) == len(sample_images)
    for case in ("single", "list", "dir", "word_box"):
        problems = result_differences(plain[case], engine[case])
        assert not problems, f"{case}: " + "\n".join(problems)
    assert all("text_word" in r for r in engine["word_box"])


@pytest.mark.slow
def test_backend_report_says_onnxruntime_for_every_model(cold_run) -> None:
    by_model = {d["model_name"]: d for d in cold_run["report"]}
    for model in MODELS:
        decision = by_model[model]
        assert decision["backend"] == "onnxruntime", decision
        assert "CPUExecutionProvider" in decision["reason"], decision
        assert "converted and validated" in decision["reason"], decision
        assert "fused graph" in decision["reason"], decision
    fused_checks = [line for line in cold_run["log"] if "fused graph" in line and "passed" in line]
    assert len(fused_checks) == len(MODELS), cold_run["log"]
    warnings = [line for line in cold_run["log"] if "running native Paddle" in line]
    assert warnings == [], warnings


@pytest.mark.slow
def test_second_process_starts_from_cache(warm_run) -> None:
    by_model = {d["model_name"]: d for d in warm_run["report"]}
    for model in MODELS:
        assert by_model[model]["backend"] == "onnxruntime"
        assert "loaded from cache" in by_model[model]["reason"], by_model[model]
    assert not [line for line in warm_run["log"] if "validation of" in line], warm_run["log"]
    added = warm_run["init_seconds"]["engine"] - warm_run["init_seconds"]["plain"]
    print(
        f"warm start-up: plain {warm_run['init_seconds']['plain']:.2f} s, engine "
        f"{warm_run['init_seconds']['engine']:.2f} s, added {added / 3 * 1000:.0f} ms/model"
    )


# --- in this process, on the warm cache ------------------------------------------------------


def _outcome(ocr, item) -> tuple:
    """("error", type, message) or ("ok", result fields): plain PaddleOCR accepts some odd input."""
    try:
        results = ocr.predict(item)
    except Exception as exc:
        return ("error", type(exc), str(exc))
    return ("ok", [result_fields(r) for r in results])


@pytest.mark.slow
def test_bad_input_raises_what_plain_paddleocr_raises(
    engine_env, ocr_models, tmp_path: Path
) -> None:
    from paddleocr import PaddleOCR

    import paddleocr_trt

    paddleocr_trt.activate()
    kwargs = ocr_models.paddleocr_kwargs(textline_orientation=True)
    plain = PaddleOCR(**kwargs, **PLAIN)
    engine = PaddleOCR(**kwargs, **ENGINE)
    assert {d.backend for d in paddleocr_trt.backend_report()[-3:]} == {"onnxruntime"}
    unreadable = tmp_path / "not-an-image.png"
    unreadable.write_bytes(b"this is not a PNG")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    outcomes = []
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    wrong_rank = np.zeros((7,), dtype=np.uint8)
    items = (str(unreadable), str(tmp_path / "missing.png"), str(empty), wrong_rank)
    for item in (*items, str(text_file), 42, None):
        expected, actual = _outcome(plain, item), _outcome(engine, item)
        assert actual == expected, item
        outcomes.append(expected[0])
    assert outcomes[: len(items)] == ["error"] * len(items), outcomes  # really bad input


@pytest.mark.slow
def test_corrupt_cached_graph_is_rebuilt_not_used(
    engine_env,
    ocr_models,
    sample_images,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from paddleocr import PaddleOCR

    import paddleocr_trt

    cache = tmp_path / "cache"
    shutil.copytree(engine_env["PADDLEOCR_TRT_CACHE_DIR"], cache, symlinks=True)
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", str(cache))
    graphs = sorted((cache / "onnxruntime").glob("*/model.onnx"))
    assert len(graphs) == 3
    for graph in graphs:
        size = graph.stat().st_size
        graph.write_bytes(b"\0" * size)  # same size: only the content hash can tell
    clear_backend_report()
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        ocr = PaddleOCR(**ocr_models.paddleocr_kwargs(textline_orientation=True), **ENGINE)
    report = paddleocr_trt.backend_report()
    assert [d.backend for d in report] == ["onnxruntime"] * 3, report
    assert all("converted and validated" in d.reason for d in report), report
    unusable = [r.getMessage() for r in caplog.records if "is unusable" in r.getMessage()]
    assert len(unusable) == 3 and all("sha256" in m for m in unusable), unusable
    assert ocr.predict(str(sample_images[0].path))[0]["rec_texts"]
