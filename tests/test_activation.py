"""Drop-in activation: fresh interpreters, the real PaddleOCR pipeline, the fallback path."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from paddleocr_trt.activation.compat import SUPPORTED, installed_versions, unsupported_reason
from paddleocr_trt.activation.patches import normalize_common_kwargs
from paddleocr_trt.log import reset_warn_once

ENV = {**os.environ, "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run ``code`` in a fresh interpreter of this venv; return stdout (fail with stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ENV,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


PATCH_STATE = """
    import json, sys
    import paddleocr
    from paddlex.inference.models.engines.paddle import PaddleStaticEngine
    patched = getattr(PaddleStaticEngine.get_default_runner_builder,
                      "__paddleocr_trt_patched__", False)
    ours = sorted(m for m in sys.modules if m.startswith("paddleocr_trt"))
    print(json.dumps({"patched": patched, "modules": ours}))
"""


def test_start_up_imports_nothing_heavy() -> None:
    out = run_python(
        """
        import json, sys
        print(json.dumps(sorted(sys.modules)))
        """
    )
    modules = set(json.loads(out))
    assert "paddleocr_trt._startup" in modules, "the .pth startup hook did not run"
    heavy = {"paddle", "paddlex", "paddleocr", "numpy", "onnx", "onnxruntime", "tensorrt"}
    assert not heavy & modules
    ours = {m for m in modules if m.startswith("paddleocr_trt")}
    assert ours == {"paddleocr_trt", "paddleocr_trt._startup", "paddleocr_trt._version"}


def test_activates_without_explicit_import() -> None:
    state = json.loads(run_python(PATCH_STATE).splitlines()[-1])
    assert state["patched"] is True
    assert "paddleocr_trt.activation.patches" in state["modules"]


def test_disable_env_leaves_paddleocr_untouched() -> None:
    state = json.loads(
        run_python(PATCH_STATE, env={**ENV, "PADDLEOCR_TRT_DISABLE": "1"}).splitlines()[-1]
    )
    assert state["patched"] is False
    assert "paddleocr_trt.activation.patches" not in state["modules"]
    # Explicit activation is refused too: "off completely".
    out = run_python(
        """
        import paddleocr_trt, paddleocr
        from paddlex.inference.models.engines.paddle import PaddleStaticEngine
        print(paddleocr_trt.activate(),
              hasattr(PaddleStaticEngine.get_default_runner_builder, "__paddleocr_trt_patched__"))
        """,
        env={**ENV, "PADDLEOCR_TRT_DISABLE": "1"},
    )
    assert out.split() == ["False", "False"]


def test_unsupported_version_warns_once_and_patches_nothing() -> None:
    """The version check gets a foreign version as input; PaddleOCR itself is the real one."""
    out = run_python(
        """
        import json, logging, io
        stream = io.StringIO()
        logging.getLogger("paddleocr_trt").addHandler(logging.StreamHandler(stream))
        import paddleocr_trt.activation.compat as compat
        compat.installed_versions = lambda: {"paddleocr": "3.9.0", "paddlex": "3.7.2"}
        import paddleocr
        from paddlex.inference.models.engines.paddle import PaddleStaticEngine
        patched = hasattr(PaddleStaticEngine.get_default_runner_builder,
                          "__paddleocr_trt_patched__")
        print(json.dumps({"patched": patched, "log": stream.getvalue()}))
        """
    )
    state = json.loads(out.splitlines()[-1])
    assert state["patched"] is False
    lines = [line for line in state["log"].splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "paddleocr 3.9.0" in lines[0] and ">=3.6,<3.8" in lines[0]


def test_version_check_messages() -> None:
    assert unsupported_reason(installed_versions()) is None  # what this project pins works
    assert unsupported_reason({"paddleocr": "3.6.0", "paddlex": "3.7.2"}) is None
    reason = unsupported_reason({"paddleocr": "2.10.0", "paddlex": None})
    assert reason is not None
    assert "paddleocr 2.10.0" in reason and "paddlex is not installed" in reason
    assert "not-a-version" in (unsupported_reason({"paddlex": "not-a-version"}) or "")
    assert set(SUPPORTED) == {"paddleocr", "paddlex"}


def test_spec_example_arguments_are_accepted() -> None:
    """The specification's call, verbatim, gets past PaddleOCR 3.x's argument checks."""
    out = run_python(
        """
        import paddleocr
        from paddleocr._pipelines.base import parse_common_args
        args = parse_common_args(dict(use_gpu=True, use_tensorrt=True, precision="FP16"),
                                 default_enable_hpi=False)
        print(args["device"], args["use_pptrt"], args["pptrt_precision"])
        try:
            paddleocr.PaddleOCR(use_angle_cls=True, lang='en', use_gpu=True, use_tensorrt=True,
                                precision='fp16')
        except ValueError as exc:
            if "Unknown argument" in str(exc) or "precision" in str(exc):
                raise
            print("later error:", type(exc).__name__)
        except Exception as exc:  # no internet: the default models cannot be downloaded here
            print("later error:", type(exc).__name__)
        """
    )
    assert out.splitlines()[0] == "gpu True fp16"


def test_normalize_common_kwargs() -> None:
    assert normalize_common_kwargs({"use_gpu": False}) == {"device": "cpu"}
    assert normalize_common_kwargs({"use_gpu": True, "device": "gpu:1"}) == {"device": "gpu:1"}
    assert normalize_common_kwargs({"precision": " FP32 "}) == {"precision": "fp32"}


# --- the real pipeline, in this process ----------------------------------------------------


def _ocr(models, **kwargs):
    from paddleocr import PaddleOCR

    return PaddleOCR(**models.paddleocr_kwargs(textline_orientation=True), **kwargs)


def _results(ocr, images) -> list[dict]:
    out = []
    for sample in images:
        res = ocr.predict(str(sample.path))[0]
        out.append(
            {
                "texts": list(res["rec_texts"]),
                "scores": np.asarray(res["rec_scores"], dtype=np.float64),
                "boxes": np.asarray(res["rec_polys"]),
                "angles": list(res["textline_orientation_angles"]),
            }
        )
    return out


def _fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("paddleocr_trt") and r.levelno == logging.WARNING
    ]


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_fallback_pipeline_equals_plain_paddleocr(
    device: str, ocr_models, sample_images, caplog: pytest.LogCaptureFixture
) -> None:
    """use_tensorrt=True on this GPU-less machine: identical output, one warning per model."""
    plain = _results(_ocr(ocr_models, device=device), sample_images)
    reset_warn_once()
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        ocr = _ocr(ocr_models, device=device, use_tensorrt=True, precision="fp16")
        _ocr(ocr_models, device=device, use_tensorrt=True, precision="fp16")  # no repeat
        trt = _results(ocr, sample_images)
    warnings = _fallback_warnings(caplog)
    expected_reason = "needs an NVIDIA GPU" if device == "cpu" else "TensorRT is not installed"
    # det, rec, text-line orientation: one warning per step each (TensorRT, then TensorRT-RTX)
    assert len(warnings) == 6, warnings
    for model in ("PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec", "PP-LCNet_x0_25_textline_ori"):
        mine = [w for w in warnings if w.startswith(model + ":")]
        assert len(mine) == 2 and expected_reason in mine[0], warnings
        assert "trying the TensorRT-RTX engine" in mine[0], mine
        assert "TensorRT-RTX" in mine[1] and "running native Paddle" in mine[1], mine
    assert any(p["texts"] for p in plain), "plain PaddleOCR read nothing: harness broken"
    for sample, p, t in zip(sample_images, plain, trt, strict=True):
        assert p["texts"] == t["texts"], sample.name
        assert p["angles"] == t["angles"], sample.name
        np.testing.assert_array_equal(p["boxes"], t["boxes"], err_msg=sample.name)
        np.testing.assert_allclose(p["scores"], t["scores"], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_pir_format_models_work_through_the_hook(ocr_models_pir, sample_images) -> None:
    english = (
        next(s for s in sample_images if s.kind == "english")
        if any(s.kind == "english" for s in sample_images)
        else sample_images[0]
    )
    res = _results(_ocr(ocr_models_pir, device="cpu", use_tensorrt=True), [english])[0]
    assert res["texts"], "nothing recognised with the PIR-format models"


# --- bad input ------------------------------------------------------------------------------


def _raise_site(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename if tb else ""


@pytest.mark.slow
def test_missing_model_dir_is_a_clear_error(ocr_models, tmp_path: Path) -> None:
    from paddleocr import PaddleOCR

    kwargs = ocr_models.paddleocr_kwargs()
    kwargs["text_detection_model_dir"] = str(tmp_path / "does-not-exist")
    with pytest.raises(Exception) as info:
        PaddleOCR(**kwargs, device="cpu", use_tensorrt=True)
    assert "does-not-exist" in str(info.value) or "exist" in str(info.value).lower()
    assert "paddleocr_trt" not in _raise_site(info.value)


@pytest.mark.slow
def test_model_dir_without_weights_is_a_clear_error(ocr_models, tmp_path: Path) -> None:
    from paddleocr import PaddleOCR

    broken = tmp_path / "det-missing-weights"
    broken.mkdir()
    for name in ("inference.pdmodel", "inference.yml"):
        (broken / name).write_bytes((ocr_models.det / name).read_bytes())
    kwargs = ocr_models.paddleocr_kwargs()
    kwargs["text_detection_model_dir"] = str(broken)
    with pytest.raises(Exception) as info:
        PaddleOCR(**kwargs, device="gpu", use_tensorrt=True)
    message = str(info.value)
    assert str(broken) in message, message
    assert "paddleocr_trt" not in _raise_site(info.value)  # PaddleX's own check comes first


def test_empty_weights_raise_what_plain_paddleocr_raises(
    ocr_models, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Code that catches Paddle's error must keep working with the hook: same type, same
    message; our explanation goes to the log."""
    from paddleocr import PaddleOCR

    broken = tmp_path / "det-empty-weights"
    broken.mkdir()
    for name in ("inference.pdmodel", "inference.yml"):
        (broken / name).write_bytes((ocr_models.det / name).read_bytes())
    (broken / "inference.pdiparams").write_bytes(b"")
    kwargs = ocr_models.paddleocr_kwargs()
    kwargs["text_detection_model_dir"] = str(broken)
    with pytest.raises(Exception) as plain:
        PaddleOCR(**kwargs, device="cpu")
    with caplog.at_level(logging.ERROR, logger="paddleocr_trt"), pytest.raises(Exception) as hooked:
        PaddleOCR(**kwargs, device="cpu", use_tensorrt=True)
    assert type(hooked.value) is type(plain.value), (hooked.value, plain.value)
    assert str(hooked.value) == str(plain.value)
    assert "inference.pdiparams is missing or empty" in caplog.text
    assert str(broken) in caplog.text


@pytest.mark.slow
def test_unreadable_image_is_a_clear_error(ocr_models, tmp_path: Path) -> None:
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"this is not a PNG")
    ocr = _ocr(ocr_models, device="cpu", use_tensorrt=True)
    with pytest.raises(Exception) as info:
        ocr.predict(str(bad))
    assert "paddleocr_trt" not in _raise_site(info.value)
    assert str(info.value)
