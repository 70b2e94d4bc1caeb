"""A model is resolved once (issue 18.1) and ONNX model dirs are a source (issue 20.2, 20.4).

Real model dirs (PP-OCRv5 mobile PIR, PP-OCRv6 small ONNX), a real cache, real ONNX Runtime.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from paddleocr_trt.cache.store import EngineCache
from paddleocr_trt.engines.contract import Target
from paddleocr_trt.errors import ModelDirError, UnsupportedModelTypeError
from paddleocr_trt.model_resolve import resolve_model
from paddleocr_trt.model_types import ModelFormat, ModelType, locate_model_files
from paddleocr_trt.pipeline import ArtifactPipeline, PipelineOptions
from paddleocr_trt.settings import ENV_MODEL_SOURCE, SettingsError, validate_settings

CPU = Target("cpu", 0)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".cache", "README.md"))
    return dst


@pytest.mark.slow
def test_nothing_below_the_entry_reads_the_model_dir_again(ppocrv6, tmp_path: Path) -> None:
    """Resolve once, then take inference.yml away: the whole ONNX Runtime artifact (source
    check, validation inputs, DB settings, normalisation of the fused graph, fused check) is
    still made, from the value. The same call with the bare path now fails: it would read."""
    det = _copy(ppocrv6.det, tmp_path / "det")
    pipeline = ArtifactPipeline(EngineCache(tmp_path / "cache"), PipelineOptions(precision="fp32"))
    model = pipeline.resolve(det)
    assert model.model_type is ModelType.DETECTION and model.is_onnx and model.fingerprint
    (det / "inference.yml").unlink()

    artifact = pipeline.artifact("onnxruntime", model, None, CPU)
    meta = artifact.entry.metadata
    assert meta["source_format"] == "onnx"
    assert meta["reference"] == model.reference_label
    assert "ONNX Runtime" in meta["reference"] and "source graph" in meta["reference"]
    assert artifact.validation["passed"] and artifact.validation["fused"]["passed"]
    assert artifact.validation["agreement"] >= 0.99

    with pytest.raises(UnsupportedModelTypeError, match="cannot tell the model type"):
        pipeline.artifact("onnxruntime", det, None, CPU)


def test_a_dir_with_both_formats_states_its_choice(
    ppocrv5, ppocrv6, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = _copy(ppocrv5.det, tmp_path / "both")
    shutil.copyfile(ppocrv6.det / "inference.onnx", both / "inference.onnx")
    monkeypatch.delenv(ENV_MODEL_SOURCE, raising=False)

    auto = locate_model_files(both)  # Paddle is installed in this environment
    assert auto.format is ModelFormat.PIR
    assert "inference.json and inference.onnx" in (auto.choice or "")
    assert "auto: Paddle is installed" in (auto.choice or "")

    monkeypatch.setenv(ENV_MODEL_SOURCE, "onnx")
    chosen = resolve_model(both)
    assert chosen.is_onnx and chosen.files.params is None
    assert "model source onnx" in (chosen.files.choice or "")
    assert chosen.source_metadata()["source_choice"] == chosen.files.choice
    assert locate_model_files(both, "paddle").format is ModelFormat.PIR

    monkeypatch.setenv(ENV_MODEL_SOURCE, "tensorflow")
    with pytest.raises(SettingsError, match=ENV_MODEL_SOURCE):
        validate_settings()
    with pytest.raises(ModelDirError, match="model source 'paddle'"):
        locate_model_files(ppocrv6.det, "paddle")
    with pytest.raises(ModelDirError, match="model source 'onnx'"):
        locate_model_files(ppocrv5.det, "onnx")


def test_the_cache_key_covers_the_source_graph(ppocrv6, tmp_path: Path) -> None:
    pipeline = ArtifactPipeline(EngineCache(tmp_path / "cache"), PipelineOptions(precision="fp32"))
    first = _copy(ppocrv6.rec, tmp_path / "a")
    same = _copy(ppocrv6.rec, tmp_path / "b")
    key = pipeline.onnx_key(first, ModelType.RECOGNITION)
    assert key.digest == pipeline.onnx_key(same, ModelType.RECOGNITION).digest  # content, not path
    assert "paddle" not in key.converter_versions  # nothing of Paddle enters an ONNX source
    graph = same / "inference.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0x01  # one bit of the last initializer
    graph.write_bytes(bytes(data))
    assert pipeline.onnx_key(same, ModelType.RECOGNITION).digest != key.digest


def test_models_are_recognised_from_inference_yml_whatever_their_name(
    ppocrv5, ppocrv6, tmp_path: Path
) -> None:
    for pair in (ppocrv5, ppocrv6):
        assert resolve_model(pair.det).model_type is ModelType.DETECTION
        assert resolve_model(pair.rec).model_type is ModelType.RECOGNITION
    renamed = _copy(ppocrv6.rec, tmp_path / "my reader")
    config = yaml.safe_load((renamed / "inference.yml").read_text(encoding="utf-8"))
    config["Global"]["model_name"] = "house_reader_v9"
    (renamed / "inference.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    model = resolve_model(renamed)
    assert model.model_type is ModelType.RECOGNITION and model.model_name == "house_reader_v9"
    assert len(model.character_dict() or []) == 18708  # PP-OCRv6's dictionary, from the yml


def test_ppocrv6_settings_are_read_from_its_inference_yml(ppocrv6, tmp_path: Path) -> None:
    """DB thresholds and the input limits come from the model's inference.yml: changed there,
    they change in the validation inputs and in the engine profiles."""
    from paddleocr_trt.comparator.fused import build_fused_pairs
    from paddleocr_trt.testing.images import render_sample_images

    det = _copy(ppocrv6.det, tmp_path / "det")
    config = yaml.safe_load((det / "inference.yml").read_text(encoding="utf-8"))
    stated = resolve_model(det)
    assert stated.postprocess()["thresh"] == config["PostProcess"]["thresh"]
    assert stated.profile_limits() == {"det_max_side": 4000}
    config["PostProcess"]["thresh"] = 0.45
    config["Hpi"]["backend_configs"]["tensorrt"]["dynamic_shapes"]["x"][-1] = [1, 3, 2048, 2048]
    (det / "inference.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    model = resolve_model(det)
    assert model.profile_limits() == {"det_max_side": 2048}
    images = [s.path for s in render_sample_images(tmp_path / "img")][:1]
    (pair,) = build_fused_pairs(ModelType.DETECTION, images, model_dir=model, batch_sizes=())[:1]
    assert float(pair.extra[0][0]) == pytest.approx(0.45)
    from paddleocr_trt.engines.tensorrt.artifact import profiles_for

    profiles = profiles_for(PipelineOptions(), ModelType.DETECTION, "x", None, model)
    assert max(p["x"].max[2] for p in profiles) == 2048
