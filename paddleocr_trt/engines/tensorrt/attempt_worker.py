"""One engine attempt (build + validate against the model's reference), run only in a child.

``attempts.IsolatedEngineBuilder`` calls :func:`build_and_validate` through
``isolation.call_in_child``: a TensorRT abort, segfault or hang here ends this child, never the
user's process, and the parent records it as one failed attempt. :func:`build_only` (a
TensorRT-RTX build ahead of time, no GPU) and :func:`validate_plan` (such a plan validated on
the target GPU) are its two halves, run the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _model(payload: dict[str, Any]) -> Any:
    from ...model_resolve import ResolvedModel, resolve_model
    from ...model_types import ModelType

    if payload.get("model"):
        return ResolvedModel.from_payload(payload["model"])
    return resolve_model(payload["model_dir"], ModelType.parse(payload["model_type"]))


def build_plan(payload: dict[str, Any]) -> tuple[Any, Any]:
    """Build the fused graph of ``payload["onnx"]`` into ``payload["plan"]``: the build half of
    an attempt, also what ``optimize --target`` and the CI builds run. Returns (BuildResult,
    settings). ``payload["flavor"]`` picks full TensorRT or TensorRT-RTX.

    ``payload["fused"]`` / ``payload["fused16"]``: the recipe's cached engine graph (fused fp32)
    and its fp16 variant for this attempt's FP32 pins; what is missing is made here
    (``engine_graph.EngineGraph.variants``). Whether an fp16 graph is used depends on the
    TensorRT loaded in this child; fusion comes after the fp16 conversion, so the uint8 prologue
    and the argmax epilogue stay fp32 and FP32 pins name unfused nodes.
    """
    from ...engine_graph import EngineGraph
    from ...profiles import ShapeProfile
    from ...progress import stage
    from . import adapter
    from .builder import build_engine
    from .config import BuildSettings
    from .flavors import LABELS

    flavor = str(payload.get("flavor") or "tensorrt")
    adapter.select_flavor(flavor)
    settings_dict = dict(payload["settings"])
    settings_dict["fp32_layers"] = tuple(settings_dict.get("fp32_layers") or ())
    settings_dict["targets"] = tuple(settings_dict.get("targets") or ())
    settings = BuildSettings(**settings_dict)
    plan = Path(payload["plan"])
    profiles = [
        {n: ShapeProfile(d["min"], d["opt"], d["max"]) for n, d in p.items()}
        for p in payload["profiles"]
    ]
    fp16 = settings.precision == "fp16" and adapter.fp16_needs_fp16_onnx()
    fused, fused16 = (Path(payload[k]) if payload.get(k) else None for k in ("fused", "fused16"))
    graph = EngineGraph(  # the recipe's step 2: its cached graphs where the parent gave them
        _model(payload), Path(payload["onnx"]), fused_path=fused, fused16_path=fused16
    )
    build_onnx, fp16_onnx = graph.variants(
        plan.parent, fp16=fp16, keep_fp32_nodes=settings.fp32_layers
    )
    with stage(f"building the {settings.precision} {LABELS[flavor]} engine"):
        result = build_engine(
            build_onnx,
            plan,
            settings,
            profiles,
            timing_cache_dir=_timing_cache_dir(payload),
            fp16_onnx_path=fp16_onnx,
            device_id=int(payload.get("device_id", 0)),
        )
    return result, settings


def _timing_cache_dir(payload: dict[str, Any]) -> Any:
    """The timing cache dir the parent handed over: ``timing_cache_fd``, a descriptor of the
    cache's ``timing/`` it walked to from the cache root and this child inherited (checked
    again here, never reopened by path); else a ``timing_cache_dir`` path of a caller's own
    (CI builds), or None."""
    fd = payload.get("timing_cache_fd")
    if fd is None:
        return payload.get("timing_cache_dir")
    from ...cache.safedir import SafeDir

    return SafeDir.adopt(int(fd), Path(str(payload.get("timing_cache_dir") or f"fd {fd}")))


def _validate(payload: dict[str, Any], plan: Path, what: str) -> tuple[Any, Any]:
    """(report, model): the plan compared with the model's reference on the fused pairs."""
    import numpy as np

    from ...comparator.fused import FusedPair
    from ...fusion.artifacts import check_fused_graph
    from ...model_types import ModelType
    from ...progress import stage
    from ...reference import reference_runner
    from .runner import TensorRTRunner

    model = _model(payload)
    mtype = ModelType.parse(payload["model_type"])
    with np.load(payload["inputs"]) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    inputs = [FusedPair(base, fused) for base, fused in zip(arrays[::2], arrays[1::2], strict=True)]
    device_id = int(payload.get("device_id", 0))
    with (
        stage(f"{what} against {model.reference_label} on {len(inputs)} inputs"),
        reference_runner(model) as reference,
        TensorRTRunner(
            plan, name=f"tensorrt:{model.model_dir.name}", device_id=device_id
        ) as candidate,
    ):
        report = check_fused_graph(
            mtype,
            model,
            reference,
            candidate,
            inputs,
            min_agreement=float(payload["min_agreement"]),
            tolerance=None,
        )
    return report, model


def build_and_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """Build (:func:`build_plan`) and compare the plan with the model's reference (native
    Paddle, or ONNX Runtime on an ONNX model dir's source graph) on the fused validation pairs
    (task agreement: fp16 is not exact)."""
    from ...fusion.artifacts import FUSED_GRAPH

    result, _settings = build_plan(payload)
    report, model = _validate(payload, Path(payload["plan"]), "validating")
    return {
        "graph": FUSED_GRAPH,
        "report": report.to_dict(),
        "reference": model.reference_label,
        "build_seconds": result.seconds,
        "tensorrt_version": result.tensorrt_version,
        "built_precision": result.precision,
        "workspace_bytes": result.workspace_bytes,
        "plan_bytes": result.plan_bytes,
        "onnx_built": str(result.onnx_path),
        "flavor": str(payload.get("flavor") or "tensorrt"),
        "targets": list(result.targets),
    }


def build_only(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of an ahead-of-time build (``optimize --target``): the plan, never run."""
    result, _settings = build_plan(payload)
    return {
        "build_seconds": result.seconds,
        "plan_bytes": result.plan_bytes,
        "tensorrt_version": result.tensorrt_version,
        "built_precision": result.precision,
        "workspace_bytes": result.workspace_bytes,
        "onnx_built": str(result.onnx_path),
        "targets": list(result.targets),
        "network_io": result.network_io,
        "profiles": [{n: sp.to_dict() for n, sp in p.items()} for p in result.profiles],
    }


def validate_plan(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side of validating a plan built elsewhere (TensorRT-RTX, ahead of time): its
    validity on this GPU first, then the same comparison as a new build."""
    from . import adapter

    adapter.select_flavor(str(payload.get("flavor") or "tensorrt"))
    plan = Path(payload["plan"])
    validity = adapter.plan_validity(plan.read_bytes())
    if not validity.loadable:
        raise adapter.EngineExecutionError(f"the plan cannot run here: {validity.message()}")
    report, _ = _validate(payload, plan, "validating a plan built elsewhere")
    return {"report": report.to_dict(), "validity": validity.message()}
