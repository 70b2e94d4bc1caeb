"""The default engine choice when no TensorRT flavor can run (issue 22): the validated ONNX
Runtime engine when its provider matches the device, else native Paddle; an explicit engine
list stays strict.

GPU requests with onnxruntime-gpu cannot be reached on this CPU machine: ``CudaProviderDouble``
(a named test double) stands in for ONNX Runtime's provider list there; nothing runs on it.
"""

from __future__ import annotations

import onnxruntime as ort
import pytest

from paddleocr_trt.activation import request as trt_request
from paddleocr_trt.activation.patches import _wrap_parse_common_args
from paddleocr_trt.integration import decision
from paddleocr_trt.integration.auto_engine import automatic_engine
from paddleocr_trt.settings import DEFAULT_ENGINES, ENV_ENGINE


def _request(device: str | None, *, automatic: bool = True, engines=("tensorrt",)):
    return trt_request.TensorRTRequest(
        precision="fp16", device=device, engines=tuple(engines), automatic=automatic
    )


class CudaProviderDouble:
    """Test double: ONNX Runtime's provider list as onnxruntime-gpu reports it."""

    @staticmethod
    def get_available_providers() -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_cpu_request_gets_the_cpu_provider() -> None:
    assert ort.get_available_providers()[-1] == "CPUExecutionProvider"
    choice = automatic_engine(_request("cpu"), {"device_type": "cpu"})
    assert choice.engine == "onnxruntime", choice
    assert "CPU" in choice.why


def test_gpu_request_on_cpu_paddle_gets_the_cpu_provider() -> None:
    """This Paddle is a CPU build: native would run the GPU request on the CPU too, whatever
    PaddleX's engine config says."""
    from paddleocr_trt.integration.auto_engine import paddle_has_cuda

    if "CUDAExecutionProvider" in ort.get_available_providers() or paddle_has_cuda():
        pytest.skip("onnxruntime-gpu or a GPU Paddle here: the CPU-only case cannot be observed")
    for config in ({"device_type": "cpu"}, {"device_type": "gpu", "device_id": 0}, {}):
        choice = automatic_engine(_request("gpu"), config)
        assert choice.engine == "onnxruntime", (config, choice)
        assert "Paddle would run on the CPU" in choice.why


def gpu_paddle_double() -> bool:
    """Test double: ``paddle_has_cuda`` as a GPU build of Paddle answers (none here)."""
    return True


def test_gpu_request_with_cpu_only_onnxruntime_stays_on_gpu_paddle(monkeypatch) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu here: the CPU-only case cannot be observed")
    monkeypatch.setattr("paddleocr_trt.integration.auto_engine.paddle_has_cuda", gpu_paddle_double)
    choice = automatic_engine(_request("gpu"), {"device_type": "gpu", "device_id": 0})
    assert choice.engine is None, choice
    assert "native Paddle runs on the GPU" in choice.why
    # a CPU request still gets ONNX Runtime's CPU provider with a GPU Paddle installed
    assert automatic_engine(_request("cpu"), {"device_type": "cpu"}).engine == "onnxruntime"


def test_gpu_request_with_cuda_provider_gets_onnxruntime(monkeypatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", CudaProviderDouble.get_available_providers)
    request = _request("gpu:1")
    config = {"device_type": "gpu", "device_id": 1}
    choice = automatic_engine(request, config)
    assert choice.engine == "onnxruntime" and "CUDA provider" in choice.why, choice
    target = decision.target_of(request, config)
    assert decision.onnxruntime_provider(target) == "CUDAExecutionProvider"


def test_explicit_engine_lists_are_strict() -> None:
    assert automatic_engine(_request("cpu", automatic=False), {"device_type": "cpu"}).engine is None
    listed = _request("cpu", engines=("tensorrt", "onnxruntime"))
    assert automatic_engine(listed, {"device_type": "cpu"}).engine is None


def test_other_devices_and_missing_onnxruntime_go_native(monkeypatch) -> None:
    assert automatic_engine(_request("xpu"), {"device_type": "xpu"}).engine is None
    missing = decision.Availability(False, "onnxruntime-missing", "ONNX Runtime is not installed")
    monkeypatch.setattr("paddleocr_trt.integration.auto_engine.onnxruntime_status", lambda: missing)
    choice = automatic_engine(_request("cpu"), {"device_type": "cpu"})
    assert choice.engine is None and "not installed" in choice.why


def test_requests_know_whether_the_engine_list_was_given(monkeypatch) -> None:
    from paddleocr._common_args import parse_common_args

    parse = _wrap_parse_common_args(parse_common_args)
    monkeypatch.delenv(ENV_ENGINE, raising=False)
    args = parse({"use_tensorrt": True, "device": "cpu"}, default_enable_hpi=False)
    assert trt_request.from_common_args(args).automatic is True
    kw = parse({"trt_engine": "tensorrt", "device": "cpu"}, default_enable_hpi=False)
    assert trt_request.from_common_args(kw).automatic is False
    assert trt_request.from_engine_config({"run_mode": "trt_fp16"}).automatic is True
    monkeypatch.setenv(ENV_ENGINE, "tensorrt")
    assert trt_request.from_common_args(args).automatic is False
    assert trt_request.from_engine_config({"run_mode": "trt_fp16"}).automatic is False


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_use_tensorrt_without_tensorrt_runs_onnxruntime_with_one_warning(
    device, ocr_models, sample_images, warm_run, ort_env, monkeypatch, caplog
) -> None:
    """No TensorRT here: ``use_tensorrt=True`` serves every model from the validated ONNX
    Runtime engine (device="gpu" included: this Paddle is a CPU build, so native would run on
    the CPU too), with one warning per model saying what ran and why; results as plain
    PaddleOCR's. ``PADDLEOCR_TRT_ENGINE=tensorrt`` keeps the strict TensorRT-or-native path."""
    import logging

    from paddleocr import PaddleOCR

    import paddleocr_trt
    from paddleocr_trt.integration.decision import tensorrt_status
    from paddleocr_trt.integration.report import clear
    from paddleocr_trt.log import reset_warn_once
    from paddleocr_trt.testing.results import result_differences

    if tensorrt_status().ok:
        pytest.skip("TensorRT is usable here: the automatic step is never reached")
    paddleocr_trt.activate()
    monkeypatch.setenv("PADDLEOCR_TRT_CACHE_DIR", ort_env["PADDLEOCR_TRT_CACHE_DIR"])
    monkeypatch.delenv(ENV_ENGINE, raising=False)
    kwargs = ocr_models.paddleocr_kwargs(textline_orientation=True)
    reset_warn_once()
    clear()
    with caplog.at_level(logging.WARNING, logger="paddleocr_trt"):
        ocr = PaddleOCR(**kwargs, device=device, use_tensorrt=True, precision="fp16")
    report = paddleocr_trt.backend_report()
    assert [d.backend for d in report] == ["onnxruntime"] * 3, report
    said = [r.getMessage() for r in caplog.records if r.name.startswith("paddleocr_trt")]
    # one warning per step and model: each TensorRT flavor of the default chain says why it
    # cannot run here; the last step names the ONNX Runtime engine and why it is chosen
    flavors = [e for e in DEFAULT_ENGINES if e.startswith("tensorrt")]
    assert len(said) == 3 * len(flavors), said
    to_ort = [m for m in said if "trying the ONNX Runtime engine" in m]
    assert len(to_ort) == 3 and all("faster than native" in m for m in to_ort), said
    images = [str(s.path) for s in sample_images[:3]]
    plain = PaddleOCR(**kwargs, device="cpu").predict(images)
    problems = result_differences(plain, ocr.predict(images))
    assert not problems, problems

    monkeypatch.setenv(ENV_ENGINE, "tensorrt")
    clear()
    PaddleOCR(**kwargs, device=device, use_tensorrt=True, precision="fp16")
    assert [d.backend for d in paddleocr_trt.backend_report()] == ["paddle"] * 3
