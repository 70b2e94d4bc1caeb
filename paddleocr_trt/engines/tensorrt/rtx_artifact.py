"""TensorRT-RTX engines in the cache: built here (no GPU needed), validated there.

TensorRT-RTX builds ahead of time for named compute capabilities, so a CI job, a build server or
a container build can make the plan. Such a plan has never run: it is stored under a *pending*
key (flavor, version, targets; GPU "any") with validation status ``not-validated``, and the hook
never serves a pending key. On the target GPU, at first use, the pending plan is checked
(``get_engine_validity``) and validated against native Paddle like any new engine; only when it
passes is it published under the GPU's *validated* key, the one the hook serves. A plan that
fails is dropped and the usual build + validation attempts run on that GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...cache.key import CacheKey
from ...errors import CacheError
from ...log import get_logger
from ...model_types import ModelType
from .flavors import (
    DEFAULT_RTX_TARGETS,
    RTX,
    RTX_BUILD_TARGETS,
    cc_target,
    covers,
    parse_targets,
)

log = get_logger("rtx")

#: the gpu_name of a pending (built ahead of time, never run) TensorRT-RTX engine key
PENDING_GPU = "any (built ahead of time, not validated)"
NOT_VALIDATED = "not-validated"
#: key fields a pending entry shares with the validated key it may become
KEY_FIELDS = (
    "model_fingerprint",
    "model_type",
    "precision",
    "profiles",
    "converter_versions",
    "tensorrt_version",
)


def rtx_targets(requested: tuple[str, ...], cc: tuple[int, int] | None) -> tuple[str, ...]:
    """The targets of an RTX build: the requested ones, else every architecture TensorRT-RTX
    runs (so one plan serves RTX 30/40/50), else this GPU's own where it is not among them."""
    if requested:
        return parse_targets(requested)
    if cc is None or covers(DEFAULT_RTX_TARGETS, cc):
        return DEFAULT_RTX_TARGETS
    own = cc_target(cc)
    return (own,) if own in RTX_BUILD_TARGETS else DEFAULT_RTX_TARGETS


def engine_key(
    pipeline: Any,
    model_dir: Path,
    model_type: ModelType,
    profiles: Any,
    settings: Any,
    *,
    pending: bool,
    graph_key: str | None,
) -> CacheKey:
    """The validated key (this GPU; what the hook serves) or the pending key (the targets);
    ``graph_key``: the engine graph stage's key digest the plan is built from."""
    from ...backend.onnx.convert import converter_versions
    from ...fusion.artifacts import FUSED_GRAPH
    from . import adapter

    model = pipeline.resolve(model_dir, model_type)
    builder_settings: dict[str, Any] = {
        "workspace_bytes": settings.workspace_bytes,
        "optimization_level": settings.optimization_level,
        "tf32": settings.tf32,
        "min_agreement": pipeline.options.min_agreement,
        "graph": FUSED_GRAPH,
        "graph_key": graph_key,
        **model.source_key(),
        "flavor": RTX,
    }
    if pending:
        builder_settings["targets"] = list(settings.targets)
        gpu_name, cc = PENDING_GPU, ",".join(settings.targets)
    else:
        from ...backend.cuda.runtime import device_info

        gpu = device_info(pipeline.options.device_id)
        gpu_name, cc = gpu.name, f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}"
    return CacheKey(
        model_fingerprint=str(model.fingerprint),
        model_type=model_type.value,
        kind="engine",
        precision=settings.precision,
        profiles=tuple(profiles),
        builder_settings=builder_settings,
        converter_versions=converter_versions(model.is_onnx),
        tensorrt_version=adapter.tensorrt_version(adapter.load_tensorrt(RTX)),
        gpu_name=gpu_name,
        compute_capability=cc,
    )


def find_pending(cache: Any, validated: CacheKey, cc: tuple[int, int]) -> list[Any]:
    """Pending entries for the same model, settings and TensorRT-RTX version whose targets
    include ``cc``, newest first."""
    want = validated.to_dict()
    found = []
    for entry in cache.entries():
        key = entry.key
        if entry.problem is not None or key is None or key.kind != "engine":
            continue
        have = key.to_dict()
        bs = dict(have.get("builder_settings") or {})
        targets = tuple(bs.pop("targets", ()) or ())
        if have.get("gpu_name") != PENDING_GPU or not covers(targets, cc) or not targets:
            continue
        same = all(have.get(f) == want.get(f) for f in KEY_FIELDS)
        if same and bs == want.get("builder_settings"):
            found.append(entry)
    return sorted(found, key=lambda e: e.created or 0, reverse=True)


class PlanValidator(Protocol):
    """Validates an existing plan on this GPU (a child process for real)."""

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]: ...


class IsolatedPlanValidator:
    """``attempt_worker.validate_plan`` in a child process (a crash is a failed validation)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def validate(self, payload: dict[str, Any]) -> dict[str, Any]:
        from ...isolation import call_in_child

        return call_in_child(
            "paddleocr_trt.engines.tensorrt.attempt_worker:validate_plan",
            payload,
            timeout_s=self.timeout_s,
            what=f"validation of a TensorRT-RTX plan for {Path(payload['model_dir']).name}",
            workdir=Path(payload["plan"]).parent / ".validate.child",
        )


@dataclass
class Promotion:
    entry: Any  # the validated CacheEntry
    report: dict[str, Any]


def promote_pending(
    pipeline: Any,
    model_dir: Path,
    model_type: ModelType,
    validated: CacheKey,
    validator: PlanValidator,
) -> Promotion | None:
    """Validate the newest pending plan for this GPU and publish it under ``validated``.

    None when there is none or none passes (each failure is logged and its entry dropped, so
    the caller builds on this GPU as usual). Never serves a plan that did not pass.
    """
    from ...backend.cuda.runtime import device_info
    from .attempts import save_inputs

    cc = tuple(device_info(pipeline.options.device_id).compute_capability)
    model = pipeline.resolve(model_dir, model_type)
    for pending in find_pending(pipeline.cache, validated, cc):  # type: ignore[arg-type]
        what = f"TensorRT-RTX plan built ahead of time ({pending.path.name})"
        plan_name = pending.artifact_path.name
        work_name = f"rtx-validate-{pending.digest}"
        try:
            # the plan's bytes once, checked against its manifest: the bytes validated are the
            # bytes published (never the path, which could be swapped in between; issue 19)
            plan = pending.read_artifact()
            with pipeline.cache.fsroot.open("tmp", create=True) as tmp_dir:
                tmp_dir.remove_tree(work_name)
                work_dir = tmp_dir.child(work_name, create=True)
            with work_dir:
                work_dir.write_bytes(plan_name, plan, durable=False)
                work = work_dir.fd_path()  # the validating child opens it through our fd
                inputs = save_inputs(
                    pipeline.fused_validation_pairs(model, model_type), work / "inputs.npz"
                )
                out = validator.validate(
                    {
                        "flavor": RTX,
                        "plan": str(work / plan_name),
                        "model_dir": str(model.model_dir),
                        "model": model.to_payload(),
                        "model_type": model_type.value,
                        "inputs": str(inputs),
                        "min_agreement": pipeline.options.min_agreement,
                        "device_id": pipeline.options.device_id,
                    }
                )
            report = dict(out["report"])
        except Exception as exc:  # a crash, an invalid plan, a runner error: not served
            log.warning("%s could not be validated on this GPU: %s", what, exc)
            pipeline.cache.invalidate(pending, f"validation on this GPU failed: {exc}")
            continue
        finally:
            with contextlib.suppress(OSError, CacheError), pipeline.cache.fsroot.open("tmp") as t:
                t.remove_tree(work_name)
        if not report.get("passed"):
            log.warning("%s failed validation on this GPU: %s", what, report.get("reason"))
            pipeline.cache.invalidate(pending, f"failed validation: {report.get('reason')}")
            continue
        meta = dict(pending.metadata)
        meta.update(validated_from=pending.digest, validity=out.get("validity"))
        meta.update(model.source_metadata())

        def create(
            tmp: Path, data: bytes = plan, name: str = plan_name, meta: dict[str, Any] = meta
        ) -> tuple[Path, dict[str, Any]]:
            (tmp / name).write_bytes(data)  # what was validated, from memory
            return tmp / name, meta

        entry = pipeline.cache.get_or_create(
            validated,
            create,
            artifact_name=plan_name,
            validate_fn=lambda _p, report=report: report,
        )
        log.info("%s passed validation on this GPU (agreement %s)", what, report.get("agreement"))
        return Promotion(entry, report)
    return None


def not_validated_report(targets: tuple[str, ...]) -> dict[str, Any]:
    """The validation record of a pending entry: never ``passed``."""
    return {
        "passed": None,
        "status": NOT_VALIDATED,
        "reason": (
            f"built without running it, for {','.join(targets)}; validated against native "
            "Paddle on the target GPU at first use, and served only if it passes"
        ),
    }


def runtime_cache_for(cache_root: Path, entry: Any, device_id: int) -> Any:
    """The runtime cache file of a TensorRT-RTX engine entry on ``device_id``: per TensorRT-RTX
    version, GPU model and CUDA driver major (what TensorRT-RTX checks it against)."""
    from ...backend.cuda.runtime import cudart, device_info
    from . import adapter
    from .runtime_cache import RuntimeCacheFile, runtime_cache_dir

    err, version = cudart().cudaDriverGetVersion()
    driver_major = int(version) // 1000 if not int(err) else 0
    folder = runtime_cache_dir(
        cache_root, adapter.engine_label(), device_info(device_id).name, driver_major
    )
    return RuntimeCacheFile(folder / f"{entry.digest}.cache")


def rtx_status(entry: Any) -> str | None:
    """What ``cache list`` says about a TensorRT-RTX engine entry (None for anything else):
    its targets and that it is not validated, or the GPU it was validated on and the validity
    TensorRT-RTX reported there."""
    key = entry.key_fields
    settings = key.get("builder_settings") or {}
    if not isinstance(settings, dict) or settings.get("flavor") != RTX:
        return None
    label = f"TensorRT-RTX {key.get('tensorrt_version')}"
    if key.get("gpu_name") == PENDING_GPU:
        targets = ",".join(settings.get("targets") or [])
        return f"{label} for {targets}: NOT VALIDATED (validated on the target GPU at first use)"
    validity = (entry.metadata or {}).get("validity") or "valid"
    where = f"{key.get('gpu_name')} (sm {key.get('compute_capability')})"
    return f"{label} validated on {where}: {validity}"


def build_pending(
    source: Any,
    graph: Any,
    profiles: list[Any],
    settings: Any,
    *,
    fp16_graphs: Any = None,
) -> tuple[Any, dict]:
    """Build ``graph`` (the recipe's ``EngineGraph`` of step 1's validated ONNX) with
    TensorRT-RTX for ``settings.targets`` in a child process, into the cache under its pending
    key (validation status ``not-validated``): (entry, what the build reported).

    The child builds from the ONNX bytes the cache checked (``CacheEntry.read_artifact``),
    written into the held build dir, never from the ONNX entry's path: a file swapped there
    after the check is refused (``ArtifactChangedError``), never built (issue 19). It gets the
    graph stage's cached fused graph and, from ``fp16_graphs(tmp)`` (a function giving the fp16
    variant for a set of FP32 pins, or None), its fp16 variant: it fuses nothing."""
    from ...artifact import ENGINE_ARTIFACT
    from ...isolation import call_in_child
    from ...profiles import profiles_to_dict

    model_dir, model_type, onnx = graph.model.model_dir, graph.model_type, graph.onnx
    pipeline_model = source.resolve(model_dir, model_type)
    key = engine_key(
        source,
        model_dir,
        model_type,
        profiles_to_dict(profiles),
        settings,
        pending=True,
        graph_key=graph.digest,
    )
    info: dict[str, Any] = {}

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        plan = tmp / ENGINE_ARTIFACT
        checked = tmp / "source.onnx"  # dropped before sealing (not an extra file kept)
        checked.write_bytes(onnx.entry.read_artifact())
        fused = fused16 = None
        if graph.fused is not None:  # a graph made as the recipe's cached stage
            fused = tmp / "model.fused.onnx"
            fused.write_bytes(graph.read())  # the graph stage's checked bytes
            fp16_graph = fp16_graphs(tmp) if fp16_graphs is not None else None
            fused16 = fp16_graph(tuple(settings.fp32_layers)) if fp16_graph else None
        payload = {
            "fused": str(fused) if fused else None,
            "fused16": str(fused16) if fused16 else None,
            "flavor": RTX,
            "onnx": str(checked),
            "plan": str(plan),
            "settings": settings.to_dict() | {"progress": True},
            "profiles": profiles_to_dict(profiles),
            "model_dir": str(model_dir),
            "model_type": model_type.value,
            "model": pipeline_model.to_payload(),
            "timing_cache_dir": None,
        }
        out = call_in_child(
            "paddleocr_trt.engines.tensorrt.attempt_worker:build_only",
            payload,
            timeout_s=source.options.effective_build_timeout_s(),
            what=f"TensorRT-RTX build of {model_dir.name} for {','.join(settings.targets)}",
            workdir=tmp / ".child",
        )
        info.update(out)
        meta = {
            "precision": settings.precision,
            "flavor": RTX,
            "targets": list(settings.targets),
            "build_seconds": out["build_seconds"],
            "plan_bytes": out["plan_bytes"],
            "tensorrt_version": out["tensorrt_version"],
            "built_precision": out["built_precision"],
            "network_io": out["network_io"],
            "profiles": profiles_to_dict(profiles),
            "model_dir": str(model_dir),
        }
        return plan, meta

    entry = source.cache.get_or_create(
        key,
        create,
        artifact_name=ENGINE_ARTIFACT,
        validate_fn=lambda _p: not_validated_report(settings.targets),
    )
    if not info:  # from the cache
        info = {k: entry.metadata.get(k) for k in ("build_seconds", "plan_bytes", "targets")}
        info["from_cache"] = True
    return entry, info
