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
from typing import Any

from .errors import ModelDirError, ModelTypeMismatchError, UnsupportedModelTypeError

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

    def config_data(self) -> dict[str, Any]:
        """inference.yml as a mapping ({} when absent); ModelDirError when it is not one."""
        if self.config is None:
            return {}
        import yaml

        try:
            data = yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelDirError(f"{self.config}: cannot read inference.yml ({reason})") from None
        if not isinstance(data, dict):
            raise ModelDirError(
                f"{self.config}: inference.yml is not a YAML mapping (got {type(data).__name__})"
            )
        return data

    def model_name(self) -> str | None:
        value = (_mapping(self.config_data().get("Global"))).get("model_name")
        return value if isinstance(value, str) else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


#: inference.yml ``PostProcess`` name -> model type (PaddleX's own post-processor names)
POSTPROCESS_TYPES = {
    "DBPostProcess": ModelType.DETECTION,
    "CTCLabelDecode": ModelType.RECOGNITION,
    "Topk": ModelType.CLASSIFICATION,
}


def _postprocess_name(files: ModelFiles) -> str | None:
    post = files.config_data().get("PostProcess")
    if isinstance(post, dict):
        name = post.get("name")
        if isinstance(name, str):
            return name
        if len(post) == 1:  # ``PostProcess: {Topk: {...}}`` (classification models)
            return str(next(iter(post)))
    return None


def model_type_from_config(model_files: ModelFiles) -> ModelType | None:
    """The type inference.yml's post-processor implies; None when it names none we know.

    Raises ModelDirError when inference.yml exists but is not readable YAML.
    """
    return POSTPROCESS_TYPES.get(_postprocess_name(model_files) or "")


def resolve_model_type(model_files: ModelFiles, declared: str | ModelType | None) -> ModelType:
    """The declared type, checked against inference.yml first (so a wrong one is named, not
    found later as a TensorRT or Paddle error); without one, the type the model says it is."""
    found = model_type_from_config(model_files)
    if declared is None:
        name = model_files.model_name()
        mtype = found or (model_type_from_name(name) if name else None)
        if mtype is None:
            raise UnsupportedModelTypeError(
                f"cannot tell the model type of {model_files.model_dir} (model name {name!r}); "
                "pass detection, recognition or classification"
            )
        return mtype
    mtype = ModelType.parse(declared)
    if found is not None and found is not mtype:
        raise ModelTypeMismatchError(
            f"model type {mtype.value!r} was given, but {model_files.config} describes a "
            f"{found.value} model (PostProcess {_postprocess_name(model_files)}); pass "
            f"{found.value!r} or leave the type out"
        )
    return mtype


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
