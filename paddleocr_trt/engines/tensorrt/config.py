"""Engine build settings: plain data, shared by the adapter, the builder and cache keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ...settings import workspace_gb

PRECISIONS = ("fp32", "fp16")


def default_workspace_bytes() -> int:
    return int(workspace_gb() * (1 << 30))


@dataclass(frozen=True)
class BuildSettings:
    """What the TensorRT builder is asked for.

    ``fp32_layers`` are fnmatch patterns on layer names kept in FP32 in an FP16 build. TensorRT
    10.x pins them in the network (layer precision + output type + precision-constraint flag);
    TensorRT 11.x has no such API (strongly typed networks), so the caller must keep those nodes
    FP32 in the fp16 ONNX instead (``convert_to_fp16(..., keep_fp32_nodes=...)``).
    """

    precision: str = "fp32"
    workspace_bytes: int = field(default_factory=default_workspace_bytes)
    #: 0..5; None keeps TensorRT's default (3). Higher = longer build, maybe faster engine.
    optimization_level: int | None = None
    tf32: bool = True
    fp32_layers: tuple[str, ...] = ()
    #: OBEY fails the build when a pinned layer has no FP32 kernel; PREFER only warns.
    obey_precision_constraints: bool = True
    progress: bool = True
    #: TensorRT-RTX: compute capabilities to build for (``sm86``...), without a GPU; empty:
    #: the flavor's default (full TensorRT always builds for the GPU it runs on)
    targets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_bytes <= 0:
            raise ValueError(f"workspace_bytes must be positive, got {self.workspace_bytes}")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ValueError(f"optimization_level must be 0..5, got {self.optimization_level}")
        object.__setattr__(self, "fp32_layers", tuple(self.fp32_layers))
        object.__setattr__(self, "targets", tuple(self.targets))

    def with_workspace(self, workspace_bytes: int) -> BuildSettings:
        return replace(self, workspace_bytes=int(workspace_bytes))

    def to_dict(self) -> dict[str, object]:
        """Cache-key form; ``progress`` does not change the engine, so it is left out."""
        data = asdict(self)
        data.pop("progress")
        data["fp32_layers"] = list(self.fp32_layers)
        data["targets"] = list(self.targets)
        if not self.targets:
            data.pop("targets")  # keys of full-TensorRT engines stay what they were
        return data
