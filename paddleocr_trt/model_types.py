"""What kind of OCR model a directory holds, and where its files are.

PaddleOCR 3.x reads model dirs in three formats: legacy (``inference.pdmodel``) and PIR
(``inference.json``), both with ``inference.pdiparams``, and ONNX (``inference.onnx``, what
PaddleX's ``engine="onnxruntime"`` runs, no Paddle needed), each with an ``inference.yml`` that
names the model. Everything downstream (conversion, cache key, validation) needs the same
answers, so they are computed once (``model_resolve.resolve_model``).
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
    ONNX = "onnx"  # inference.onnx (PaddleX's engine="onnxruntime" layout)

    @property
    def is_paddle(self) -> bool:
        return self is not ModelFormat.ONNX


class ModelSource(str, enum.Enum):
    """Which program of a model dir is the source when it holds both (settings.model_source)."""

    AUTO = "auto"  # the Paddle program where Paddle is installed, else inference.onnx
    PADDLE = "paddle"
    ONNX = "onnx"

    @classmethod
    def parse(cls, value: str | ModelSource | None) -> ModelSource:
        if value is None or value == "":
            return cls.AUTO
        if isinstance(value, ModelSource):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"model source {value!r}: use auto, paddle or onnx") from None


@dataclass(frozen=True)
class ModelFiles:
    """The files of one inference model directory (Paddle or ONNX), checked to exist."""

    model_dir: Path
    format: ModelFormat
    program: Path  # inference.json / inference.pdmodel / inference.onnx
    params: Path | None  # inference.pdiparams; None for ONNX
    config: Path | None  # inference.yml (absent in bare exported dirs)
    #: why this program was chosen when the dir holds both a Paddle program and inference.onnx
    choice: str | None = None

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


def paddle_installed() -> bool:
    """Whether ``import paddle`` can work here (without importing it: 700 MB, seconds)."""
    import importlib.util

    try:
        return importlib.util.find_spec("paddle") is not None
    except (ImportError, ValueError):
        return False


def locate_model_files(
    model_dir: str | Path, source: str | ModelSource | None = None
) -> ModelFiles:
    """Find the program/params of a model dir, or say precisely what is wrong with it.

    ``source`` picks the program of a dir that holds both a Paddle program and
    ``inference.onnx`` (default: ``settings.model_source()``, i.e. PADDLEOCR_TRT_MODEL_SOURCE,
    else auto: Paddle where it is installed, else ONNX); ``ModelFiles.choice`` says which and why.
    """
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise ModelDirError(f"model directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise ModelDirError(f"{str(path)!r} is not a directory (expected a Paddle model dir)")
    if source is None:
        from .settings import model_source

        source = model_source()
    source = ModelSource.parse(source)
    json_program = path / f"{MODEL_FILE_PREFIX}.json"
    legacy_program = path / f"{MODEL_FILE_PREFIX}.pdmodel"
    onnx_program = path / f"{MODEL_FILE_PREFIX}.onnx"
    params = path / f"{MODEL_FILE_PREFIX}.pdiparams"
    config = path / f"{MODEL_FILE_PREFIX}.yml"
    config_path = config if config.is_file() else None
    paddle_program = (
        (ModelFormat.PIR, json_program)
        if json_program.is_file()
        else (ModelFormat.LEGACY, legacy_program)
        if legacy_program.is_file()
        else None
    )
    has_onnx = onnx_program.is_file() and onnx_program.stat().st_size > 0
    choice = None
    if paddle_program is not None and has_onnx:
        use_onnx = source is ModelSource.ONNX or (
            source is ModelSource.AUTO and not paddle_installed()
        )
        why = (
            f"model source {source.value}"
            if source is not ModelSource.AUTO
            else ("auto: Paddle is not installed" if use_onnx else "auto: Paddle is installed")
        )
        chosen = onnx_program.name if use_onnx else paddle_program[1].name
        choice = (
            f"{path} holds both {paddle_program[1].name} and {onnx_program.name}; using "
            f"{chosen} ({why}; set PADDLEOCR_TRT_MODEL_SOURCE=paddle|onnx to choose)"
        )
        if use_onnx:
            paddle_program = None
    elif source is ModelSource.PADDLE and paddle_program is None and has_onnx:
        raise ModelDirError(
            f"{str(path)!r} holds only {onnx_program.name}, but model source 'paddle' was asked for"
        )
    elif source is ModelSource.ONNX and not has_onnx and paddle_program is not None:
        raise ModelDirError(
            f"{str(path)!r} holds no {onnx_program.name}, but model source 'onnx' was asked for"
        )
    if paddle_program is None:
        if has_onnx:
            return ModelFiles(path, ModelFormat.ONNX, onnx_program, None, config_path, choice)
        present = sorted(p.name for p in path.iterdir())[:10]
        raise ModelDirError(
            f"{str(path)!r} is not a Paddle inference model (nor an ONNX model dir): none of "
            f"{json_program.name}, "
            f"{legacy_program.name} or {onnx_program.name} found "
            f"(directory holds: {present or 'nothing'})"
        )
    fmt, program = paddle_program
    if not params.is_file() or params.stat().st_size == 0:
        raise ModelDirError(
            f"{str(path)!r} has {program.name} but no weights: {params.name} is missing or empty"
        )
    return ModelFiles(path, fmt, program, params, config_path, choice)
