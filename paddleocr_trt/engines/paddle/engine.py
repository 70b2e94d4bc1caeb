"""Native Paddle behind the contract (:mod:`paddleocr_trt.engines.contract`): the engine every
model falls back to. It needs no artifact (PaddleX reads the model directory itself) and its
runner is PaddleX's own, built as PaddleX would build it (``LoadRequest.fallback``).

The Paddle Inference runner the recipe validates against (``backend/paddle``) is a different
thing: the reference every engine's artifact is compared with, used below the engines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing only: deciding must stay cheap to import
    from ...artifact import Artifact, ArtifactSource
    from ...backend.base import BaseRunner
    from ...engine_graph import EngineGraph

from ..contract import READY, Availability, LoadRequest, Target


class NativePaddleEngine:
    name = "paddle"
    label = "native Paddle"
    needs_artifact = False

    def status(self) -> Availability:
        return READY

    def availability(self, precision: str, target: Target) -> Availability:
        return READY  # PaddleX itself decides what its predictor can do

    def recipe_options(self, precision: str, target: Target) -> dict[str, Any]:
        return {}

    def prepare(
        self, source: ArtifactSource, graph: EngineGraph, target: Target
    ) -> Artifact | None:
        return None

    def load(self, artifact: Artifact | None, request: LoadRequest) -> BaseRunner:
        if request.fallback is None:
            raise ValueError("the native engine runs PaddleX's predictor: pass it as fallback")
        return request.fallback

    def describe(self, artifact: Artifact | None, runner: BaseRunner, request: LoadRequest) -> str:
        return "native Paddle inference"


ENGINE = NativePaddleEngine()
