"""The FP16 -> FP16 with FP32-pinned layers -> FP32 loop: every attempt isolated and recorded.

Each attempt (build + validation against native Paddle) runs through an :class:`EngineBuilder`;
the real one, :class:`IsolatedEngineBuilder`, runs it in a child process with a timeout, so a
TensorRT exception, abort, segfault or hang is one failed attempt, never the end of the loop nor
of the user's process. Every attempt lands in the history (precision, pinned layers, outcome,
error type and message, seconds), which goes into the cache manifest or the final error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...errors import EngineBuildError, ValidationFailedError
from ...log import get_logger
from ...progress import stage
from ...settings import DEFAULT_BUILD_TIMEOUT_S

log = get_logger("engine_attempts")

#: outcomes recorded per attempt
PASSED, FAILED_VALIDATION, ERROR, CRASHED, TIMEOUT = (
    "passed",
    "failed-validation",
    "error",
    "crashed",
    "timeout",
)


@dataclass
class AttemptResult:
    """What one successful build + validation returned (the report may still say "failed")."""

    report: Any  # ValidationReport or a dict with "passed" / "agreement"
    build_seconds: float
    tensorrt_version: str
    extra: dict[str, Any]


@dataclass(frozen=True)
class AttemptJob:
    """Everything one attempt needs; plain data so that it can cross into a child process."""

    onnx_path: Path
    plan_path: Path
    settings: Any  # BuildSettings
    profiles: list[dict[str, Any]]  # profiles_to_dict form
    model_dir: Path
    model_type: str
    inputs_path: Path  # .npz of the validation inputs
    min_agreement: float
    device_id: int
    #: the cache's ``timing/`` as a held SafeDir (walked to from the cache root; the child
    #: inherits its descriptor, see ``artifact.open_timing_cache_dir``), or None
    timing_cache_dir: Any
    flavor: str = "tensorrt"  # or "tensorrt-rtx"
    #: the resolved model (``ResolvedModel.to_payload``): the child reads no model dir
    model: dict[str, Any] | None = None
    #: the engine graph stage's fused fp32 graph (the child fuses nothing), else None
    fused_path: Path | None = None
    #: the stage's fp16 variant for this attempt's FP32 pins (the child makes none), else None
    fused16_path: Path | None = None


class EngineBuilder(Protocol):
    def build_and_validate(self, job: AttemptJob) -> AttemptResult: ...


class IsolatedEngineBuilder:
    """The real builder: ``attempt_worker.py`` in a child process, with a timeout."""

    #: the function the child runs (``module:function``)
    target = "paddleocr_trt.engines.tensorrt.attempt_worker:build_and_validate"

    def __init__(self, timeout_s: float = DEFAULT_BUILD_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError(f"build timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s

    def build_and_validate(self, job: AttemptJob) -> AttemptResult:
        from ...comparator.compare import ValidationReport
        from ...isolation import call_in_child

        payload = {
            "onnx": str(job.onnx_path),
            "plan": str(job.plan_path),
            "settings": job.settings.to_dict() | {"progress": job.settings.progress},
            "profiles": job.profiles,
            "model_dir": str(job.model_dir),
            "model_type": job.model_type,
            "inputs": str(job.inputs_path),
            "min_agreement": job.min_agreement,
            "device_id": job.device_id,
            "flavor": job.flavor,
            "model": job.model,
            "fused": str(job.fused_path) if job.fused_path else None,
            "fused16": str(job.fused16_path) if job.fused16_path else None,
        }
        timing = job.timing_cache_dir
        if timing is not None:  # the held descriptor, inherited: never reopened by path
            payload.update(timing_cache_fd=timing.fd, timing_cache_dir=str(timing.path))
        out = call_in_child(
            self.target,
            payload,
            timeout_s=self.timeout_s,
            what=f"{job.settings.precision} engine build + validation of {job.model_dir.name}",
            workdir=job.plan_path.parent / f".{job.plan_path.stem}.child",
            pass_fds=() if timing is None else (timing.fd,),
        )
        report = ValidationReport(**out.pop("report"))
        return AttemptResult(
            report=report,
            build_seconds=float(out.pop("build_seconds")),
            tensorrt_version=str(out.pop("tensorrt_version")),
            extra=out,
        )


#: an attempt: fixed settings, or a function that makes them when their turn comes (None: skip)
AttemptSpec = Any


def attempt_plan(settings: Any, pinned: Callable[[], Any]) -> list[AttemptSpec]:
    """FP16, then FP16 with sensitive layers pinned to FP32 (``pinned()``), then FP32."""
    if settings.precision != "fp16":
        return [settings]
    return [settings, pinned, replace(settings, precision="fp32", fp32_layers=())]


def _passed(report: Any) -> bool:
    value = report.get("passed") if isinstance(report, dict) else getattr(report, "passed", None)
    return bool(value)


def _field(report: Any, name: str) -> Any:
    return report.get(name) if isinstance(report, dict) else getattr(report, name, None)


def _classify(exc: BaseException) -> tuple[str, str, str, str]:
    """(outcome, error type, message, child's stderr tail) of an attempt that raised."""
    from ...isolation import KIND_CRASHED, KIND_TIMEOUT, ChildProcessFailure

    if isinstance(exc, ChildProcessFailure):
        outcome = {KIND_CRASHED: CRASHED, KIND_TIMEOUT: TIMEOUT}.get(exc.kind, ERROR)
        return outcome, exc.error_type, exc.reason, exc.stderr_tail
    return ERROR, type(exc).__name__, str(exc), ""


def run_attempts(
    builder: EngineBuilder,
    specs: Sequence[AttemptSpec],
    job_for: Callable[[Any, int], AttemptJob],
    *,
    what: str,
) -> tuple[Path, Any, dict[str, Any]]:
    """Try ``specs`` in order; return (plan, report, metadata) of the first that passes.

    Any ``Exception`` from an attempt (or a dead/hung child) is recorded and the next attempt
    runs. When none passes: ``ValidationFailedError`` if some attempt was validated (its report
    attached), else ``EngineBuildError``; both carry ``.attempts`` (the history).
    """
    history: list[dict[str, Any]] = []
    last_report = None
    total = len(specs)
    for number, spec in enumerate(specs, 1):
        settings, why_not = _settings_of(spec, f"{what}: choosing FP16 layers to keep in FP32")
        if settings is None:
            history.append(
                {"attempt": number, "precision": "fp16-pinned", "outcome": "skipped", **why_not}
            )
            continue
        job = job_for(settings, number)
        label = settings.precision + (" (FP32-pinned layers)" if settings.fp32_layers else "")
        record: dict[str, Any] = {
            "attempt": number,
            "precision": settings.precision,
            "fp32_layers": list(settings.fp32_layers),
        }
        started = time.perf_counter()
        try:
            with stage(f"{what}: {label} engine, attempt {number}/{total}"):
                result = builder.build_and_validate(job)
        except Exception as exc:
            outcome, error_type, message, stderr_tail = _classify(exc)
            record.update(outcome=outcome, error_type=error_type, error=message[:2000])
            if getattr(exc, "returncode", None) is not None:
                record["returncode"] = exc.returncode  # type: ignore[attr-defined]
            if stderr_tail:
                record["stderr_tail"] = stderr_tail
            record["seconds"] = round(time.perf_counter() - started, 3)
            history.append(record)
            log.warning(
                "%s: %s engine attempt %d/%d %s: %s: %s",
                what,
                label,
                number,
                total,
                outcome,
                error_type,
                message,
            )
            if stderr_tail and outcome != ERROR:
                log.warning("last lines the child wrote:\n%s", stderr_tail[-1000:])
            job.plan_path.unlink(missing_ok=True)
            continue
        report = result.report
        passed = _passed(report)
        record.update(
            outcome=PASSED if passed else FAILED_VALIDATION,
            agreement=_field(report, "agreement"),
            build_seconds=result.build_seconds,
            seconds=round(time.perf_counter() - started, 3),
        )
        if not passed:
            record["error"] = str(_field(report, "reason") or "")
        history.append(record)
        last_report = report
        if passed:
            log.info("%s: %s engine passed validation", what, label)
            meta = {
                "precision": settings.precision,
                "fp32_layers": list(settings.fp32_layers),
                "build_seconds": result.build_seconds,
                "tensorrt_version": result.tensorrt_version,
                "attempts": history,
                **result.extra,
            }
            return job.plan_path, report, meta
        log.warning(
            "%s: %s engine failed validation (agreement %s): %s",
            what,
            label,
            _field(report, "agreement"),
            record["error"],
        )
        job.plan_path.unlink(missing_ok=True)
    summary = "; ".join(_summary(h) for h in history)
    message = f"no TensorRT engine for {what} passed ({summary})"
    error: ValidationFailedError | EngineBuildError
    if last_report is not None:
        error = ValidationFailedError(message, last_report)
    else:
        error = EngineBuildError(message)
    error.attempts = history  # type: ignore[attr-defined]
    raise error


def _settings_of(spec: AttemptSpec, desc: str) -> tuple[Any, dict[str, str]]:
    """The settings of an attempt, or (None, why) for an attempt that cannot be made."""
    if not callable(spec):
        return spec, {}
    try:
        with stage(desc):
            settings = spec()
    except Exception as exc:  # the analysis is an optimisation; the next attempt still runs
        log.warning("%s failed: %s: %s", desc, type(exc).__name__, exc)
        return None, {"error_type": type(exc).__name__, "error": str(exc)[:2000]}
    return settings, ({} if settings is not None else {"error": "no layers to pin (see the log)"})


def _summary(record: dict[str, Any]) -> str:
    """``fp16+pinned: error (RuntimeError: first line of the message)``"""
    text = f"{record.get('precision')}{'+pinned' if record.get('fp32_layers') else ''}: "
    text += str(record.get("outcome"))
    detail = str(record.get("error") or "").strip().splitlines()
    if record.get("error_type") or detail:
        why = ": ".join(
            p for p in (record.get("error_type"), detail[0][:200] if detail else "") if p
        )
        text += f" ({why})"
    return text


def save_inputs(inputs: Sequence[Any], path: Path) -> Path:
    """Validation inputs for a child process, in the order the comparison uses them: arrays, or
    fused pairs (``comparator.fused.FusedPair``) stored as base, fused, base, fused, ..."""
    arrays: list[np.ndarray] = []
    for item in inputs:
        arrays.extend([item.base, item.fused] if hasattr(item, "fused") else [item])
    np.savez(path, *[np.ascontiguousarray(x) for x in arrays])
    return path


#: error types (as recorded by the attempt loop) that mean "this needed too much GPU memory"
OOM_ERRORS = ("OutOfMemoryError", "NoContextMemoryError")


def build_validated(
    builder: EngineBuilder,
    *,
    model_dir: Path,
    mtype: Any,
    onnx_path: Path,
    tmp: Path,
    profiles: Sequence[Any],
    settings: Any,
    inputs: Sequence[Any],
    min_agreement: float,
    device_id: int,
    timing_cache_dir: Any,  # a held SafeDir or None
    flavor: str = "tensorrt",
    model: Any = None,
    fused_path: Path | None = None,
    fp16_graph: Callable[[tuple[str, ...]], Path | None] | None = None,
) -> tuple[Path, Any, dict[str, Any]]:
    """FP16, FP16 with sensitive layers pinned to FP32, FP32 (:func:`attempt_plan`); the first
    plan that passes validation wins. When attempts ran out of GPU memory (a context or the
    build), the whole sequence is tried again with ``profiles.smaller_profiles`` while a smaller
    set is left; the history of every attempt goes into the metadata (or the raised error).
    ``fp16_graph(fp32 pins)``: the fp16 engine graph an FP16 attempt builds from (None, or no
    function: the attempt's child makes it)."""
    from ...profiles import profiles_to_dict, smaller_profiles

    inputs_path = save_inputs(inputs, tmp / "validation-inputs.npz")
    history: list[dict[str, Any]] = []
    what = f"{mtype.value} model {model_dir.name}"
    while True:

        def job_for(attempt: Any, number: int, profiles=profiles) -> AttemptJob:
            return AttemptJob(
                onnx_path=onnx_path,
                plan_path=tmp / f"{attempt.precision}-{len(history) + number}.plan",
                settings=attempt,
                profiles=profiles_to_dict(profiles),
                model_dir=model_dir,
                model_type=mtype.value,
                inputs_path=inputs_path,
                min_agreement=min_agreement,
                device_id=device_id,
                timing_cache_dir=timing_cache_dir,
                flavor=flavor,
                model=model.to_payload() if model is not None else None,
                fused_path=fused_path,
                fused16_path=(
                    fp16_graph(tuple(attempt.fp32_layers))
                    if fp16_graph is not None and attempt.precision == "fp16"
                    else None
                ),
            )

        pinned = lambda: pinned_settings(settings, onnx_path, inputs)  # noqa: E731
        try:
            plan, report, meta = run_attempts(
                builder, attempt_plan(settings, pinned), job_for, what=what
            )
        except (EngineBuildError, ValidationFailedError) as exc:
            tried = getattr(exc, "attempts", [])
            history.extend(tried)
            oom = any(a.get("error_type") in OOM_ERRORS for a in tried)
            smaller = smaller_profiles(profiles) if oom else None
            if smaller is None:
                exc.attempts = history  # type: ignore[attr-defined]
                raise
            log.warning(
                "%s: out of GPU memory with %d profile(s); trying again with smaller ones",
                what,
                len(profiles),
            )
            profiles = smaller
            continue
        inputs_path.unlink(missing_ok=True)
        meta["attempts"] = history + meta.get("attempts", [])
        meta.update(model_dir=str(model_dir), profiles=profiles_to_dict(profiles))
        return plan, report, meta


def pinned_settings(settings: Any, onnx_path: Path, inputs: Sequence[Any]) -> Any:
    """FP16 settings with the most FP16-sensitive nodes (up to 8) pinned to FP32, or None."""
    from ...backend.onnx.precision import find_fp16_sensitive_nodes

    try:
        # The unfused graph names the nodes to pin; it takes the pairs' float input.
        first = inputs[0]
        sensitive = find_fp16_sensitive_nodes(onnx_path, [getattr(first, "base", first)])
    except Exception as exc:
        log.warning("fp16 sensitivity analysis failed (%s); skipping layer pinning", exc)
        return None
    names = tuple(s.node for s in sensitive[:8]) if sensitive else ()
    if not names:
        return None
    log.info("retrying FP16 with %d layers pinned to FP32: %s", len(names), ", ".join(names))
    return replace(settings, fp32_layers=names)
