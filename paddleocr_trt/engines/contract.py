"""The one contract every engine folder implements, and the small values it speaks in.

An engine (``engines/<name>/engine.py``, object ``ENGINE``) does three things, in the spirit of
Polygraphy's backends (loaders and runners per folder) and RapidOCR's one folder per inference
engine:

- **say whether, and why not, it can run here** (:meth:`Engine.status`: is its runtime
  installed; :meth:`Engine.availability`: for this precision on this device), cheaply, before
  anything is built;
- **prepare an artifact from the engine graph** (:meth:`Engine.prepare`): given the engine
  graph (:class:`~paddleocr_trt.engine_graph.EngineGraph`, the recipe's cached step 2) and what the
  recipe lends (:class:`~paddleocr_trt.artifact.ArtifactSource`: the cache, the options, the
  validation inputs), return a cached, validated :class:`~paddleocr_trt.artifact.Artifact`;
- **load it into a runner** (:meth:`Engine.load`): a ``BaseRunner`` that PaddleX can call.

Everything above the engines (the drop-in's runner factory, the recipe, the optimizer, the CLI,
the pipelined path) asks :mod:`.registry` for an engine by name and uses only this contract.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # typing only: the engines' answers must stay cheap to import
    from ..artifact import Artifact, ArtifactSource
    from ..backend.base import BaseRunner
    from ..engine_graph import EngineGraph
    from ..model_types import ModelType

SUPPORTED_PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class Availability:
    """Whether an engine can run here; if not, one stable code, the reason and the remedy."""

    ok: bool
    code: str  # stable identifier, used to say each reason once
    reason: str = ""
    remedy: str = ""

    def message(self) -> str:
        return f"{self.reason} ({self.remedy})" if self.remedy else self.reason


READY = Availability(True, "ready")


@dataclass(frozen=True)
class Target:
    """The device the user asked for: ``device="gpu"`` stays a GPU request even where the CPU
    build of Paddle made PaddleX fall back to the CPU (our engines do not need Paddle's GPU)."""

    device_type: str
    device_id: int


@dataclass(frozen=True)
class LoadRequest:
    """What :meth:`Engine.load` and :meth:`Engine.describe` get besides the artifact."""

    name: str  # the model's name, for logs and reports
    model_type: ModelType
    target: Target
    precision: str  # what the user asked for
    options: Any  # the recipe's options (pipeline.PipelineOptions) the artifact was made with
    engine_config: Mapping[str, Any] = field(default_factory=dict)  # PaddleX's, as given
    #: native Paddle, fed exactly as PaddleX would feed it: for calls the engine cannot serve
    fallback: BaseRunner | None = None


class Engine(Protocol):
    """One engine behind the contract (see the module docstring)."""

    name: str  # what ``trt_engine=`` / ``$PADDLEOCR_TRT_ENGINE`` say
    label: str  # what the user reads
    needs_artifact: bool  # False: nothing to prepare (the recipe makes no ONNX for it)

    def status(self) -> Availability:
        """Is the engine's runtime installed and loadable (the device aside)? Cached."""
        ...

    def availability(self, precision: str, target: Target) -> Availability:
        """Can this engine run a model at ``precision`` on ``target`` here? Cheap; cached."""
        ...

    def recipe_options(self, precision: str, target: Target) -> dict[str, Any]:
        """The recipe options (``PipelineOptions`` fields) its artifacts are made with."""
        ...

    def prepare(
        self, source: ArtifactSource, graph: EngineGraph, target: Target
    ) -> Artifact | None:
        """Step 3 of the recipe: the engine graph (step 2's output, ``graph``: the cached fused
        graph of the validated ONNX of a resolved model; its checked bytes ``graph.read()``) in,
        the cached, validated artifact this engine runs out (None: it needs none), keyed with
        the graph stage's key (``graph.digest``). Calls down only: ``source`` lends the cache,
        the options and the validation, never a step."""
        ...

    def load(self, artifact: Artifact | None, request: LoadRequest) -> BaseRunner:
        """The artifact in a runner; may raise ``CacheError`` for an artifact this machine
        cannot load (the caller then drops it and prepares it once more)."""
        ...

    def describe(self, artifact: Artifact | None, runner: BaseRunner, request: LoadRequest) -> str:
        """One line for the backend report: what runs, where it came from, its agreement."""
        ...


def not_installed(module: str, name: str, remedy: str) -> Availability | None:
    """The "not installed" answer for an engine whose module cannot be found, else None."""
    if importlib.util.find_spec(module) is not None:
        return None
    return Availability(False, f"{module}-missing", f"{name} is not installed", remedy)


def unsupported_precision(precision: str) -> Availability | None:
    if precision in SUPPORTED_PRECISIONS:
        return None
    return Availability(
        False,
        "unsupported-precision",
        f"precision {precision!r} is not supported by paddleocr_trt",
        f"use one of {', '.join(SUPPORTED_PRECISIONS)}",
    )


def origin(artifact: Artifact, made: str) -> str:
    """ "loaded from cache" or what making it took ("built and validated", ...); from an ONNX
    model dir's source graph, what it was validated against (no conversion, no Paddle)."""
    if artifact.from_cache:
        return "loaded from cache"
    if artifact.entry.metadata.get("source_format") == "onnx":
        return "validated against the source ONNX graph on ONNX Runtime"
    return made


def agreement_of(artifact: Artifact) -> float | None:
    return (artifact.validation or {}).get("agreement")
