"""Which engine each model gets: the engine list, its parsing, the device the user asked for,
and the native safety net behind an engine that fails at inference."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from paddleocr_trt.activation.patches import _wrap_parse_common_args
from paddleocr_trt.backend.base import BaseRunner
from paddleocr_trt.integration import request as trt_request
from paddleocr_trt.integration.decision import Target, target_of
from paddleocr_trt.integration.fallback import GuardedRunner
from paddleocr_trt.integration.report import clear as clear_backend_report
from paddleocr_trt.log import reset_warn_once
from paddleocr_trt.settings import ENV_ENGINE, engines, parse_engines


def test_parse_engines_orders_and_names_bad_values() -> None:
    assert parse_engines("tensorrt,onnxruntime") == ("tensorrt", "onnxruntime")
    assert parse_engines(" ONNXRuntime , TensorRT ,onnxruntime") == ("onnxruntime", "tensorrt")
    assert parse_engines(["ort", "trt"]) == ("onnxruntime", "tensorrt")
    with pytest.raises(
        ValueError, match=r"unknown engine 'openvino'.*tensorrt, tensorrt-rtx, onnxruntime"
    ):
        parse_engines("tensorrt,openvino")
    with pytest.raises(ValueError, match="names no engine"):
        parse_engines(" , ")
    assert engines({}) == ("tensorrt", "tensorrt-rtx")  # full TensorRT, else TensorRT-RTX
    assert engines({ENV_ENGINE: "onnxruntime"}) == ("onnxruntime",)


def test_bad_engine_env_warns_once_and_leaves_paddleocr_native(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An environment variable has no call site to raise at: one warning, no request (the
    pipeline runs natively), however many predictors PaddleOCR creates."""
    monkeypatch.setenv(ENV_ENGINE, "cuda-magic")
    reset_warn_once()
    args = {"use_pptrt": True, "pptrt_precision": "fp16", "device": "gpu"}
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        first = trt_request.from_common_args(args)
        second = trt_request.from_common_args(args)
    assert first is None and second is None
    said = [r.getMessage() for r in caplog.records if "cuda-magic" in r.getMessage()]
    assert len(said) == 1 and ENV_ENGINE in said[0] and "natively" in said[0], said
    with pytest.raises(ValueError, match=ENV_ENGINE):
        trt_request.env_engines()


def test_trt_engine_keyword_goes_through_paddleocr_argument_checks() -> None:
    from paddleocr._common_args import parse_common_args

    parse = _wrap_parse_common_args(parse_common_args)
    args = parse({"trt_engine": "onnxruntime", "device": "cpu"}, default_enable_hpi=False)
    request = trt_request.from_common_args(args)
    assert request is not None and request.engines == ("onnxruntime",)  # an opt-in of its own
    assert args["use_pptrt"] is False
    plain = parse({"device": "cpu"}, default_enable_hpi=False)
    assert trt_request.from_common_args(plain) is None
    with pytest.raises(ValueError, match=r"trt_engine.*unknown engine"):
        parse({"trt_engine": "nope"}, default_enable_hpi=False)
    with pytest.raises(ValueError, match="Unknown argument: engine_typo"):  # PaddleOCR's own check
        parse({"engine_typo": 1}, default_enable_hpi=False)


@pytest.mark.parametrize(
    ("device", "engine_config", "expected"),
    [
        # CPU build of Paddle: PaddleX moved the model to the CPU, the user asked for the GPU.
        ("gpu", {"device_type": "cpu"}, Target("gpu", 0)),
        ("gpu:1", {"device_type": "cpu"}, Target("gpu", 1)),
        # PaddleX's per-device pipelines for gpu:0,1 pass each device id.
        ("gpu:0,1", {"device_type": "gpu", "device_id": 1}, Target("gpu", 1)),
        ("cpu", {"device_type": "cpu"}, Target("cpu", 0)),
        (None, {"device_type": "gpu", "device_id": 2}, Target("gpu", 2)),
        (None, {}, Target("gpu", 0)),
    ],
)
def test_target_is_the_device_the_user_asked_for(device, engine_config, expected) -> None:
    request = trt_request.TensorRTRequest(precision="fp16", device=device)
    assert target_of(request, engine_config) == expected


def test_gpu_request_on_cpu_paddle_is_judged_as_a_gpu_request() -> None:
    """PaddleX moved the model to the CPU (CPU build of Paddle); TensorRT's answer must be about
    TensorRT and the GPU, not "the device is cpu": GPU OCR needs no paddlepaddle-gpu."""
    from paddleocr_trt.integration.decision import cuda_status, decide, tensorrt_status

    request = trt_request.TensorRTRequest(precision="fp16", device="gpu")
    status = decide(request, {"device_type": "cpu"})
    assert status.code != "not-a-gpu-device"
    expected = tensorrt_status() if not tensorrt_status().ok else cuda_status()
    assert status.code == expected.code
    cpu = decide(trt_request.TensorRTRequest(precision="fp16", device="cpu"), {})
    assert cpu.code == "not-a-gpu-device"


class FailingEngineDouble(BaseRunner):
    """Test double: an engine runner that fails at inference the way a CUDA fault would.

    No real engine on this machine can be made to fail mid-run on demand; this drives the
    fallback's control flow only. The fallback it falls back to is real native Paddle.
    """

    backend = "onnxruntime"

    def infer(self, inputs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (double)")


@pytest.mark.slow
def test_engine_failing_at_inference_switches_to_native_for_good(
    ocr_models, caplog: pytest.LogCaptureFixture
) -> None:
    from paddleocr_trt.backend.paddle.runner import PaddleInferenceRunner

    reset_warn_once()
    native = PaddleInferenceRunner(ocr_models.cls, device="cpu", name="paddle:cls")
    guarded = GuardedRunner(FailingEngineDouble("cls-double"), native, "cls")
    batch = np.random.default_rng(0).random((2, 3, 80, 160), dtype=np.float32)
    expected = PaddleInferenceRunner(ocr_models.cls, device="cpu").infer([batch])
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        first = guarded([batch])
        second = guarded([batch])
    np.testing.assert_array_equal(first[0], expected[0])
    np.testing.assert_array_equal(second[0], expected[0])
    assert guarded.engine_failures == 1 and guarded.backend == "paddle"
    assert "illegal memory access" in (guarded.failure or "")
    said = [r.getMessage() for r in caplog.records if "failed at inference" in r.getMessage()]
    assert len(said) == 1, said
    guarded.close()


@pytest.mark.slow
def test_engine_list_moves_on_with_one_warning_per_step(
    ocr_models, warm_run, ort_env, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    """tensorrt,onnxruntime on this machine: TensorRT is really absent, so ONNX Runtime serves,
    on device="gpu" with the CPU build of Paddle (no paddlepaddle-gpu needed)."""
    from paddleocr import PaddleOCR

    import paddleocr_trt

    paddleocr_trt.activate()
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", ort_env["PADDLEOCR_TRT_CACHE_DIR"])
    monkeypatch.delenv(ENV_ENGINE, raising=False)
    reset_warn_once()
    clear_backend_report()
    kwargs = ocr_models.paddleocr_kwargs(textline_orientation=True)
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        PaddleOCR(**kwargs, device="gpu", trt_engine="tensorrt,onnxruntime", precision="fp16")
    report = paddleocr_trt.backend_report()
    assert [d.backend for d in report] == ["onnxruntime"] * 3, report
    moved = [r.getMessage() for r in caplog.records if r.name.startswith("paddleocr_trt")]
    assert len(moved) == 3, moved
    assert all("TensorRT is not installed" in m and "trying the ONNX Runtime" in m for m in moved)
    assert os.environ.get(ENV_ENGINE) is None


def _doctor(env_engine: str | None) -> tuple[int, dict]:
    import json
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != ENV_ENGINE}
    if env_engine is not None:
        env[ENV_ENGINE] = env_engine
    script = Path(sys.executable).with_name("paddleocr-trt")
    proc = subprocess.run(
        [str(script), "doctor", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    return proc.returncode, json.loads(proc.stdout)


def test_doctor_reports_each_engine_and_follows_the_configured_order() -> None:
    from paddleocr_trt.integration.decision import tensorrt_status

    if tensorrt_status().ok:
        pytest.skip("TensorRT is usable here: the fallback answers below cannot be observed")
    code, report = _doctor(None)
    assert report["engines"]["requested"] == ["tensorrt", "tensorrt-rtx"]
    assert report["engines"]["tensorrt"]["ok"] is False
    assert report["engines"]["tensorrt-rtx"]["ok"] is False  # no usable GPU here
    assert report["engines"]["onnxruntime"]["ok"] is True
    assert report["engines"]["onnxruntime"]["provider"] == "CPUExecutionProvider"
    assert code == 1 and report["decision"]["backend"] == "paddle"
    code, report = _doctor("tensorrt,onnxruntime")
    assert report["engines"]["requested"] == ["tensorrt", "onnxruntime"]
    assert code == 0 and report["decision"]["backend"] == "onnxruntime"
    assert report["decision"]["use_tensorrt"] is False


def test_models_are_recognised_by_inference_yml_not_by_name(ocr_models, tmp_path) -> None:
    """PP-OCRv5/v6 and the document-orientation classifier have names the old rule missed;
    their inference.yml post-processor says what they are. Anything else runs natively."""
    import shutil

    import yaml

    from paddleocr_trt.integration.runner_factory import _model_type
    from paddleocr_trt.model_types import ModelType, locate_model_files

    def renamed(source, name, post=None):
        target = tmp_path / name
        shutil.copytree(source, target)
        config = yaml.safe_load((target / "inference.yml").read_text())
        config["Global"]["model_name"] = name
        if post is not None:
            config["PostProcess"] = post
        (target / "inference.yml").write_text(yaml.safe_dump(config))
        return locate_model_files(target)

    assert _model_type("PP-OCRv6_medium_x", renamed(ocr_models.det, "PP-OCRv6_medium_x")) is (
        ModelType.DETECTION
    )
    assert _model_type("anything", renamed(ocr_models.rec, "anything")) is ModelType.RECOGNITION
    doc_ori = renamed(ocr_models.cls, "PP-LCNet_x1_0_doc_ori")
    assert _model_type("PP-LCNet_x1_0_doc_ori", doc_ori) is ModelType.CLASSIFICATION
    uvdoc = renamed(ocr_models.cls, "UVDoc", post={"name": "DocTrPostProcess"})
    assert _model_type("UVDoc", uvdoc) is None
    assert _model_type("PP-OCRv4_mobile_det", None) is ModelType.DETECTION  # no dir: the name
