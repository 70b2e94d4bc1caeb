"""The cache key: everything that changes an artifact's bytes or its validity, and nothing else.

An engine is only valid for the TensorRT version and GPU that built it, and an ONNX file only for
the converter versions that wrote it; leaving any of these out serves a foreign artifact, so they
are required fields. Values are normalised to plain JSON so that a key read back from a manifest
compares equal to the one a caller builds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model_types import ModelType

KEY_VERSION = 1
#: "onnx": the validated fp32 ONNX; "graph": the engine graph made from it (fused; fp16/pinned
#: variants), what engines build from; "engine": a TensorRT plan; "onnxruntime": the graph an
#: ONNX Runtime engine runs, validated under its execution provider.
KINDS = ("onnx", "graph", "engine", "onnxruntime")
DIGEST_HEX_CHARS = 24

#: one optimization profile: ``{input name: (min shape, opt shape, max shape)}``
ProfileSpec = Mapping[str, Any]


def _shape(value: Any) -> list[int]:
    return [int(d) for d in value]


def _normalise_profile(profile: ProfileSpec) -> dict[str, dict[str, list[int]]]:
    """Accept ``(min, opt, max)``, ``{"min":..}`` or any object with min/opt/max attributes."""
    out: dict[str, dict[str, list[int]]] = {}
    for name, spec in profile.items():
        if hasattr(spec, "min") and hasattr(spec, "opt") and hasattr(spec, "max"):
            mn, op, mx = spec.min, spec.opt, spec.max
        elif isinstance(spec, Mapping):
            mn, op, mx = spec["min"], spec["opt"], spec["max"]
        else:
            mn, op, mx = spec
        out[str(name)] = {"min": _shape(mn), "opt": _shape(op), "max": _shape(mx)}
    return out


def _plain(value: Any) -> Any:
    """JSON-plain form (tuples -> lists, objects with to_dict() -> dicts) for hashing/equality."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@dataclass(frozen=True)
class CacheKey:
    """Identity of one cached artifact. Build with keywords; all values end up JSON-plain."""

    model_fingerprint: str
    model_type: str
    kind: str
    precision: str
    profiles: tuple[Any, ...] = ()
    builder_settings: Any = field(default_factory=dict)
    converter_versions: Any = field(default_factory=dict)
    tensorrt_version: str | None = None
    gpu_name: str | None = None
    compute_capability: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.model_fingerprint:
            raise ValueError("CacheKey needs a model_fingerprint")
        set_(self, "model_type", ModelType.parse(self.model_type).value)
        if self.kind not in KINDS:
            raise ValueError(f"artifact kind must be one of {KINDS}, got {self.kind!r}")
        set_(self, "precision", str(self.precision).lower())
        set_(self, "profiles", tuple(_normalise_profile(p) for p in self.profiles))
        set_(self, "builder_settings", _plain(self.builder_settings or {}))
        set_(self, "converter_versions", _plain(self.converter_versions or {}))
        cc = self.compute_capability
        if isinstance(cc, (tuple, list)):
            cc = ".".join(str(int(x)) for x in cc)
        set_(self, "compute_capability", None if cc is None else str(cc))
        trt_fields = (self.tensorrt_version, self.gpu_name, self.compute_capability)
        if self.kind == "engine" and not all(trt_fields):
            raise ValueError(
                "an engine key needs tensorrt_version, gpu_name and compute_capability: an engine "
                "is only valid for the TensorRT version and GPU that built it"
            )
        if self.kind == "onnxruntime" and self.tensorrt_version is not None:
            raise ValueError(f"a {self.kind} key must not carry tensorrt_version")
        if self.kind in ("onnx", "graph") and any(f is not None for f in trt_fields):
            raise ValueError(
                f"an {self.kind} key must not carry tensorrt_version/gpu_name/"
                "compute_capability: ONNX graphs do not depend on them, and keying on them "
                "would rebuild for nothing"
            )

    def __hash__(self) -> int:  # dict fields are unhashable; the digest says it all
        return hash(self.digest)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_version": KEY_VERSION,
            "model_fingerprint": self.model_fingerprint,
            "model_type": self.model_type,
            "kind": self.kind,
            "precision": self.precision,
            "profiles": [dict(p) for p in self.profiles],
            "builder_settings": self.builder_settings,
            "converter_versions": self.converter_versions,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
        }

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        """Stable directory name: first 24 hex chars of sha256 over the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:DIGEST_HEX_CHARS]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheKey:
        if data.get("key_version") != KEY_VERSION:
            raise ValueError(f"unknown cache key version {data.get('key_version')!r}")
        fields = {k: v for k, v in data.items() if k != "key_version"}
        fields["profiles"] = tuple(fields.get("profiles") or ())
        return cls(**fields)

    def describe(self) -> str:
        """One line for logs: what this artifact is, without the hashes."""
        parts = [self.kind, self.model_type, self.precision, f"model {self.model_fingerprint[:12]}"]
        if self.kind == "graph":
            settings = self.builder_settings or {}
            parts.append(f"engine graph {settings.get('graph', '?')}")
            if settings.get("keep_fp32_nodes"):
                parts.append(f"{len(settings['keep_fp32_nodes'])} nodes kept fp32")
        if self.kind == "onnxruntime":
            provider = (self.builder_settings or {}).get("provider", "?")
            version = self.converter_versions.get("onnxruntime", "?")
            parts.append(f"ONNX Runtime {version} {provider}")
        if self.kind == "engine":
            parts.append(
                f"TensorRT {self.tensorrt_version} on {self.gpu_name} "
                f"(sm {self.compute_capability})"
            )
        return ", ".join(parts)
