"""Step 2 of the recipe: the engine graph, made from step 1's validated ONNX.

One input (the validated unfused ONNX of a resolved model), one output (:class:`EngineGraph`):
the fused graph every engine builds or runs (``fusion``: uint8 NHWC in for det/cls, CTC argmax
out for rec, det's packed DB bitmap), in the variant the engine asks for: fp32, or fp16 with
chosen nodes kept in fp32 (TensorRT's FP16 and FP16-with-pinned-layers attempts). An engine's
step (step 3) takes the value as an argument and never calls the recipe back.

Where the files are made: in the temp dir of the engine artifact being created, by
:meth:`EngineGraph.write` / :meth:`EngineGraph.variants`, so the graph is cached as part of the
artifact that embeds it (ONNX Runtime caches the fused graph itself; TensorRT a plan built from
it) and never on its own: an engine graph is only ever wanted to make an engine artifact, and
whether TensorRT needs a strongly typed fp16 graph depends on the TensorRT loaded in the attempt's
child, so the fp16 variants are made there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .artifact import Artifact
from .fusion.artifacts import FUSED_GRAPH, engine_onnx, fused_input_name, write_fused_onnx
from .model_resolve import ResolvedModel
from .model_types import ModelType


@dataclass(frozen=True)
class EngineGraph:
    """The fused engine graph of ``model``, made from the validated ONNX at ``onnx_path``."""

    model: ResolvedModel
    onnx_path: Path
    #: the unfused graph's inputs (the first is the image tensor, float NCHW)
    base_inputs: tuple[str, ...] = ("x",)
    #: ``fusion.artifacts.FUSED_GRAPH``: the fused graph's version, part of every engine key
    version: str = FUSED_GRAPH
    #: step 1's artifact it was made from (None in a child process, which gets only the path)
    onnx: Artifact | None = field(default=None, compare=False)

    @classmethod
    def from_onnx(cls, onnx: Artifact, model: ResolvedModel) -> EngineGraph:
        """Step 2: the engine graph of step 1's output."""
        names = onnx.entry.metadata.get("input_names") or ["x"]
        return cls(model, onnx.path, tuple(names), FUSED_GRAPH, onnx)

    @property
    def model_type(self) -> ModelType:
        return self.model.model_type

    @property
    def base_input(self) -> str:
        return self.base_inputs[0]

    @property
    def input_name(self) -> str:
        """The fused graph's image input: det/cls take uint8 images, rec keeps its input."""
        return fused_input_name(self.model_type, self.base_input)

    def write(self, target: Path) -> dict[str, Any]:
        """The fused fp32 graph at ``target``; returns its manifest metadata."""
        return write_fused_onnx(self.model_type, self.onnx_path, self.model, target)

    def variants(
        self, workdir: Path, *, fp16: bool, keep_fp32_nodes: tuple[str, ...] = ()
    ) -> tuple[Path, Path | None]:
        """(fused fp32 graph, fused fp16 graph or None) in ``workdir`` (the fp32 one made once
        per dir). The fp16 conversion comes before fusion, so the uint8 prologue and the argmax
        epilogue stay fp32 and ``keep_fp32_nodes`` name nodes of the unfused graph."""
        return engine_onnx(
            self.model_type,
            self.model,
            self.onnx_path,
            workdir,
            fp16_onnx=fp16,
            keep_fp32_nodes=keep_fp32_nodes,
        )
