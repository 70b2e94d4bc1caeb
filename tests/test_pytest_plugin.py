"""The pytest11 plugin, used the way a user's project uses it: a test project run by pytest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = textwrap.dedent(
    """
    import pytest

    from paddleocr_trt.pytest_plugin import assert_ocr_results_agree


    def test_pipeline_reads(ocr_backend, paddleocr_pipeline, ocr_sample_images):
        image = next(s for s in ocr_sample_images if s.name == "english_document")
        result = paddleocr_pipeline(ocr_backend).predict(str(image.path))
        texts = [t.replace(" ", "") for t in result[0]["rec_texts"]]
        assert texts == [line.replace(" ", "") for line in image.lines]


    def test_same_input_agrees(paddleocr_pipeline, ocr_sample_images):
        ocr = paddleocr_pipeline("native")
        path = str(ocr_sample_images[0].path)
        agreement = assert_ocr_results_agree(ocr.predict(path), ocr.predict(path))
        assert agreement.box_f1 == 1.0 and agreement.text_cer == 0.0
        assert paddleocr_pipeline("native") is ocr


    def test_disagreeing_pair(paddleocr_pipeline, ocr_sample_images):
        ocr = paddleocr_pipeline("native")
        first = ocr.predict(str(ocr_sample_images[0].path))
        second = ocr.predict(str(ocr_sample_images[1].path))
        assert_ocr_results_agree(first, second)
    """
)


@pytest.fixture
def user_project(
    pytester: pytest.Pytester, ocr_models, warm_run, ort_env, monkeypatch
) -> pytest.Pytester:
    # Reuse the models the suite already materialised instead of extracting them again, and the
    # ONNX Runtime engines the engine tests cached (the user's first run would convert them).
    monkeypatch.setenv("PADDLEOCR_TRT_MODELS_DIR", str(ocr_models.det.parent.parent))
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", ort_env["PADDLEOCR_TRT_CACHE_DIR"])
    monkeypatch.delenv("PADDLEOCR_TRT_ENGINE", raising=False)
    monkeypatch.setenv("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    monkeypatch.delenv("PADDLEOCR_TRT_DISABLE", raising=False)
    pytester.makepyfile(test_user=USER_TESTS)
    return pytester


@pytest.mark.slow
def test_fixtures_in_a_user_project(user_project: pytest.Pytester) -> None:
    result = user_project.runpytest_subprocess("-v", "-rs", "-p", "no:cacheprovider")
    from paddleocr_trt.pytest_plugin import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason is None:  # a machine with TensorRT: every backend reads the image
        result.assert_outcomes(passed=4, failed=1)
    else:
        result.assert_outcomes(passed=3, skipped=1, failed=1)
        result.stdout.fnmatch_lines(["*test_pipeline_reads?tensorrt? SKIPPED*"])
        # the reason holds brackets (fnmatch syntax), so look for it as plain text
        assert f": TensorRT backend unavailable: {reason}" in (result.stdout.str())
        assert "TensorRT is not installed" in reason
    result.stdout.fnmatch_lines(["*test_pipeline_reads?native? PASSED*"])
    result.stdout.fnmatch_lines(["*test_pipeline_reads?onnxruntime? PASSED*"])
    result.stdout.fnmatch_lines(
        ["*test_disagreeing_pair*", "*OCR results disagree over 1 image(s): box F1*"]
    )


def test_disabled_env_skips_tensorrt(pytester: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("PADDLEOCR_TRT_DISABLE", "1")
    pytester.makepyfile(
        test_env="""
        def test_backend(ocr_backend):
            assert ocr_backend == "native"
        """
    )
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        ["*TensorRT backend unavailable: *disabled by PADDLEOCR_TRT_DISABLE*"]
    )
    result.stdout.fnmatch_lines(
        ["*ONNX Runtime backend unavailable: *disabled by PADDLEOCR_TRT_DISABLE*"]
    )


def test_plugin_import_is_light() -> None:
    """Loaded in every pytest session of every user: it must not pull in Paddle or PaddleOCR."""
    code = (
        "import sys, paddleocr_trt.pytest_plugin as p; "
        "print(sorted(m for m in ('paddle', 'paddleocr', 'paddlex', 'numpy', 'onnx') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_plugin_is_registered_as_entry_point() -> None:
    from importlib.metadata import entry_points

    names = {ep.value for ep in entry_points(group="pytest11")}
    assert "paddleocr_trt.pytest_plugin" in names
