"""A model, resolved once: its files, type, inference.yml, normalisation, dictionary, fingerprint.

The entry points (the pipeline, the optimizer, the CLI, the drop-in hook) turn a model dir into
one :class:`ResolvedModel`; everything below them (conversion, the cache key, the reference
runner, validation inputs, comparisons, fused graphs, engine attempts in child processes) takes
that value instead of a path, so the directory is read once and every step sees the same answers.
Functions that still accept a bare path for their own callers read it through
:func:`model_config` (once per call); given the value, they read nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelTypeMismatchError
from .model_types import (
    ModelFiles,
    ModelFormat,
    ModelSource,
    ModelType,
    locate_model_files,
    resolve_model_type,
)

#: bump when what ``backend/onnx/source_onnx.py`` does to a source graph changes: it is part
#: of every cache key made from an ONNX source
SOURCE_ONNX_RECIPE = 1


@dataclass(frozen=True)
class ResolvedModel:
    """One model dir, read once. ``fingerprint`` is set by the cache (``ArtifactPipeline``)."""

    files: ModelFiles
    model_type: ModelType
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    fingerprint: str | None = None

    @property
    def model_dir(self) -> Path:
        return self.files.model_dir

    def __str__(self) -> str:
        return str(self.files.model_dir)

    def __fspath__(self) -> str:
        """Path-like: code that only needs the directory's name or path takes the value too."""
        return str(self.files.model_dir)

    @property
    def name(self) -> str:
        return self.files.model_dir.name

    @property
    def is_onnx(self) -> bool:
        """The source graph is the dir's ``inference.onnx``: no conversion, no Paddle."""
        return self.files.format is ModelFormat.ONNX

    @property
    def model_name(self) -> str | None:
        value = _mapping(self.config.get("Global")).get("model_name")
        return value if isinstance(value, str) else None

    @property
    def reference_label(self) -> str:
        """What validations of this model compare against (reports say it)."""
        if self.is_onnx:
            return f"ONNX Runtime (CPU) running the source graph {self.files.program.name}"
        return f"native Paddle Inference (CPU) running {self.files.program.name}"

    def postprocess(self) -> dict[str, Any]:
        """inference.yml's ``PostProcess`` (DB thresholds, rec dictionary...); {} if none."""
        return dict(_mapping(self.config.get("PostProcess")))

    def character_dict(self) -> list[str] | None:
        chars = self.postprocess().get("character_dict")
        return list(chars) if isinstance(chars, list | tuple) else None

    def max_input_shape(self) -> tuple[int, ...] | None:
        """The largest input shape inference.yml's ``Hpi`` dynamic shapes state (PaddleX's
        TensorRT ranges: PP-OCRv5/v6 det ``[1, 3, 4000, 4000]``, rec ``[8, 3, 48, 3200]``);
        None when it states none. Engine profiles take their upper bounds from it."""
        configs = _mapping(_mapping(self.config.get("Hpi")).get("backend_configs"))
        for backend, key in (
            ("tensorrt", "dynamic_shapes"),
            ("paddle_infer", "trt_dynamic_shapes"),
        ):
            shapes = _mapping(_mapping(configs.get(backend)).get(key))
            for ranges in shapes.values():
                try:
                    return tuple(int(d) for d in ranges[-1])
                except (TypeError, ValueError, IndexError):
                    continue
        return None

    def profile_limits(self) -> dict[str, Any]:
        """``profiles.default_profiles`` keyword arguments from :meth:`max_input_shape`."""
        shape = self.max_input_shape()
        if shape is None or len(shape) != 4:
            return {}
        if self.model_type is ModelType.DETECTION:
            return {"det_max_side": max(shape[2], shape[3])}
        if self.model_type is ModelType.RECOGNITION:
            from .profiles import REC_MAX_WIDTH

            width = shape[3]
            return {"rec_width_edges": (min(960, width), width)} if width != REC_MAX_WIDTH else {}
        return {}

    def source_key(self) -> dict[str, Any]:
        """Builder settings an ONNX source adds to every cache key made from it: the recipe
        applied to the source graph (``source_onnx.py``), so a change there is a new entry.
        A Paddle source adds nothing (its keys stay as they were)."""
        return {"source_onnx": SOURCE_ONNX_RECIPE} if self.is_onnx else {}

    def source_metadata(self) -> dict[str, Any]:
        """What a manifest says about the model's source and the validation reference."""
        meta = {"source_format": self.files.format.value, "reference": self.reference_label}
        if self.files.choice:
            meta["source_choice"] = self.files.choice
        return meta

    def with_fingerprint(self, digest: str) -> ResolvedModel:
        return dataclasses.replace(self, fingerprint=digest)

    # -- crossing into a child process (JSON) ---------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        f = self.files
        return {
            "model_dir": str(f.model_dir),
            "format": f.format.value,
            "program": str(f.program),
            "params": str(f.params) if f.params else None,
            "config_path": str(f.config) if f.config else None,
            "choice": f.choice,
            "model_type": self.model_type.value,
            "config": dict(self.config),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> ResolvedModel:
        def path(key: str) -> Path | None:
            return Path(data[key]) if data.get(key) else None

        files = ModelFiles(
            Path(data["model_dir"]),
            ModelFormat(data["format"]),
            Path(data["program"]),
            path("params"),
            path("config_path"),
            data.get("choice"),
        )
        return cls(
            files, ModelType.parse(data["model_type"]), dict(data["config"]), data["fingerprint"]
        )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


ModelRef = str | Path | ResolvedModel


def resolve_model(
    model: ModelRef,
    model_type: str | ModelType | None = None,
    *,
    source: str | ModelSource | None = None,
) -> ResolvedModel:
    """The resolved value of ``model`` (returned as is when it already is one).

    The declared type is checked against inference.yml (``resolve_model_type``); ``source``
    picks the program of a dir that holds both formats (``locate_model_files``).
    """
    if isinstance(model, ResolvedModel):
        if model_type is not None and ModelType.parse(model_type) is not model.model_type:
            raise ModelTypeMismatchError(
                f"model type {ModelType.parse(model_type).value!r} was given for "
                f"{model.model_dir}, resolved as {model.model_type.value}"
            )
        return model
    files = locate_model_files(Path(model).expanduser().resolve(), source)
    mtype = resolve_model_type(files, model_type)
    return ResolvedModel(files, mtype, files.config_data())


def model_config(model: ModelRef | None) -> dict[str, Any]:
    """inference.yml of ``model`` as a mapping: the resolved value's (nothing read), or read
    from a bare path once ({} for None or a dir without one)."""
    if model is None:
        return {}
    if isinstance(model, ResolvedModel):
        return dict(model.config)
    return locate_model_files(model).config_data()


def model_files_of(model: ModelRef) -> ModelFiles:
    return model.files if isinstance(model, ResolvedModel) else locate_model_files(model)
