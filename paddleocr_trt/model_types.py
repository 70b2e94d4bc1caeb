"""What kind of OCR model a directory holds, and where its files are.

PaddleOCR 3.x reads model dirs in two formats: legacy (``inference.pdmodel``) and PIR
(``inference.json``), both with ``inference.pdiparams`` and an ``inference.yml`` that names the
model. Everything downstream (conversion, cache key, validation) needs the same answers, so they
are computed once here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelDirError, UnsupportedModelTypeError

MODEL_FILE_PREFIX = "inference"


class ModelType(str, enum.Enum):
    DETECTION = "detection"
    RECOGNITION = "recognition"
    CLASSIFICATION = "classification"  # text-line orientation

    @classmethod
    def parse(cls, value: str | ModelType) -> ModelType:
        if isinstance(value, ModelType):
            return value
        aliases = {
            "det": cls.DETECTION,
            "detection": cls.DETECTION,
            "rec": cls.RECOGNITION,
            "recognition": cls.RECOGNITION,
            "cls": cls.CLASSIFICATION,
            "classification": cls.CLASSIFICATION,
            "textline_orientation": cls.CLASSIFICATION,
        }
        key = str(value).strip().lower()
        if key not in aliases:
            raise UnsupportedModelTypeError(
                f"unknown model type {value!r}; expected one of detection, recognition, "
                "classification"
            )
        return aliases[key]


def model_type_from_name(model_name: str) -> ModelType | None:
    """Map a PaddleX model name (``PP-OCRv4_mobile_det``...) to its type; None if not OCR."""
    name = model_name.lower()
    if name.endswith("_det") or "text_det" in name:
        return ModelType.DETECTION
    if name.endswith("_rec") or "text_rec" in name:
        return ModelType.RECOGNITION
    if "textline_ori" in name or name.endswith("_cls"):
        return ModelType.CLASSIFICATION
    return None


class ModelFormat(str, enum.Enum):
    LEGACY = "legacy"  # inference.pdmodel (ProgramDesc protobuf)
    PIR = "pir"  # inference.json


@dataclass(frozen=True)
class ModelFiles:
    """The files of one Paddle inference model directory, checked to exist."""

    model_dir: Path
    format: ModelFormat
    program: Path
    params: Path
    config: Path | None  # inference.yml (absent in bare exported dirs)

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.program, self.params, self.config) if p is not None)

    def model_name(self) -> str | None:
        if self.config is None:
            return None
        import yaml

        try:
            data = yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ModelDirError(f"{self.config}: cannot read inference.yml ({exc})") from exc
        return (data.get("Global") or {}).get("model_name")


def locate_model_files(model_dir: str | Path) -> ModelFiles:
    """Find the program/params of a model dir, or say precisely what is wrong with it."""
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise ModelDirError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ModelDirError(f"{str(path)!r} is not a directory (expected a Paddle model dir)")
    json_program = path / f"{MODEL_FILE_PREFIX}.json"
    legacy_program = path / f"{MODEL_FILE_PREFIX}.pdmodel"
    params = path / f"{MODEL_FILE_PREFIX}.pdiparams"
    if json_program.is_file():
        fmt, program = ModelFormat.PIR, json_program
    elif legacy_program.is_file():
        fmt, program = ModelFormat.LEGACY, legacy_program
    else:
        present = sorted(p.name for p in path.iterdir())[:10]
        raise ModelDirError(
            f"{str(path)!r} is not a Paddle inference model: neither {json_program.name} nor "
            f"{legacy_program.name} found (directory holds: {present or 'nothing'})"
        )
    if not params.is_file() or params.stat().st_size == 0:
        raise ModelDirError(
            f"{str(path)!r} has {program.name} but no weights: {params.name} is missing or empty"
        )
    config = path / f"{MODEL_FILE_PREFIX}.yml"
    return ModelFiles(path, fmt, program, params, config if config.is_file() else None)
