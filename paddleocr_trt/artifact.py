"""What every artifact step hands on: a cached, validated :class:`Artifact`, and what an engine's
artifact step may ask of the recipe that calls it (:class:`ArtifactSource`).

Here, below :mod:`paddleocr_trt.pipeline` and the engines' artifact modules, so that an engine's
step takes what it needs as an argument instead of importing the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .cache.failures import FailureMemo
from .cache.key import CacheKey
from .cache.store import CacheEntry, EngineCache
from .errors import PaddleOCRTRTError
from .log import get_logger
from .model_resolve import ModelRef, ResolvedModel
from .model_types import ModelType

log = get_logger("pipeline")

ONNX_ARTIFACT = "model.onnx"
ENGINE_ARTIFACT = "engine.plan"


@dataclass
class Artifact:
    """A cached, validated artifact and where it came from."""

    entry: CacheEntry
    from_cache: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.entry.artifact_path

    @property
    def validation(self) -> dict[str, Any] | None:
        return self.entry.validation


class RememberedFailureError(PaddleOCRTRTError):
    """This artifact failed before with the same key; it is not retried until cleared."""


def check_remembered(failures: FailureMemo, key: CacheKey, timeout_s: float) -> None:
    """Raise RememberedFailureError if ``key`` failed before (unless it only timed out and
    the timeout has been raised since)."""
    record = failures.get(key)
    if record is None:
        return
    before = record.context.get("timeout_s")
    if record.context.get("timed_out") and before is not None and timeout_s > float(before):
        log.info(
            "%s timed out after %s s before; retrying with the longer timeout of %s s",
            key.describe(),
            before,
            timeout_s,
        )
        return
    raise RememberedFailureError(
        f"{key.describe()} failed before and is not retried ({record.describe()}); "
        f"run `paddleocr-trt cache clear {key.digest[:12]}` to try again"
    )


def remember(failures: FailureMemo, key: CacheKey, exc: BaseException, timeout_s: float) -> None:
    """Record the failure of ``key`` (with its attempts and whether it timed out); a failure
    caused by a signal or a timeout is not remembered (see ``FailureMemo.record``)."""
    attempts = list(getattr(exc, "attempts", None) or [])
    timed_out = "timed out" in str(exc) or "timeout" in str(exc)
    if attempts:
        timed_out = any(a.get("outcome") == "timeout" for a in attempts)
    failures.record(
        key,
        exc,
        attempts=attempts,
        context={"timeout_s": timeout_s, "timed_out": timed_out},
    )


class ArtifactSource(Protocol):
    """What the recipe (``pipeline.ArtifactPipeline``) lends an engine's step: the cache, the
    options, the remembered failures and the validation inputs and comparison. No step: the
    step's input (the engine graph, ``engine_graph.EngineGraph``) is an argument, so an engine
    never calls back up."""

    cache: EngineCache
    options: Any  # pipeline.PipelineOptions
    failures: FailureMemo

    def resolve(
        self, model: ModelRef, model_type: ModelType | str | None = None
    ) -> ResolvedModel: ...

    def validation_inputs(self, model_dir: ModelRef, model_type: ModelType) -> list[np.ndarray]: ...

    def fused_validation_pairs(self, model_dir: ModelRef, model_type: ModelType) -> list[Any]: ...

    def compare(
        self, model_type: ModelType, model_dir: ModelRef, candidate: Any, inputs: Any
    ) -> Any: ...


def log_report(what: str, model_dir: ModelRef, report: Any) -> None:
    """One line per validation: info when it passed, a warning saying why when it did not;
    given the resolved model, the line names what it was validated against."""
    level = log.info if report.passed else log.warning
    reference = getattr(model_dir, "reference_label", None)
    level(
        "%s validation of %s%s: agreement %.4f (%s)",
        what,
        getattr(model_dir, "model_dir", model_dir),
        f" against {reference}" if reference else "",
        report.agreement,
        "passed" if report.passed else f"FAILED: {getattr(report, 'reason', '')}",
    )
