"""``paddleocr-trt optimize MODEL_DIR --engine tensorrt-rtx [--target sm86,sm89,sm120]``.

TensorRT-RTX builds without a GPU, for the compute capabilities named (default: every one it
runs on). The plan goes into the cache under a *pending* key and, with ``-o``, to a file; it is
not validated here (nothing can run it here), and says so. On a GPU TensorRT-RTX runs on, it is
validated against native Paddle right away; elsewhere that happens at first use on the target
GPU, before the engine is ever served.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


class TargetError(ValueError):
    """A ``--target`` TensorRT-RTX cannot build for (a usage error)."""


def optimize_rtx(
    args: argparse.Namespace, model_dir: Path, mtype: Any, gb: float
) -> tuple[bool, dict[str, Any], list[str]]:
    """Build (and where possible validate): (whether a plan was built, JSON data, human lines).
    TargetError for a bad ``--target``."""
    from ..cache.safety import copy_output
    from ..cache.store import EngineCache
    from ..engines import registry
    from ..integration.decision import tensorrt_status
    from ..pipeline import ArtifactPipeline, PipelineOptions
    from ..progress import step

    rtx = registry.engine("tensorrt-rtx")  # its own methods beyond the contract
    flavor = rtx.flavor  # "tensorrt-rtx", what the adapter and the recipe options say
    try:
        targets = rtx.parse_targets(args.target) if args.target else ()
    except ValueError as exc:
        raise TargetError(str(exc)) from None
    status = tensorrt_status(flavor)
    if not status.ok:
        return False, {"ok": False, "reason": status.message()}, [f"error: {status.message()}"]
    options = PipelineOptions(
        precision=args.precision,
        workspace_bytes=int(gb * (1 << 30)),
        build_timeout_s=args.build_timeout,
        trt_flavor=flavor,
        targets=targets,
    )
    pipeline = ArtifactPipeline(EngineCache(args.cache_dir), options)
    with step(f"building a TensorRT-RTX engine for {model_dir.name}", quiet=args.json):
        entry, info = rtx.prepare_ahead_of_time(pipeline, pipeline.graph(model_dir, mtype))
    if args.output is not None:
        copy_output(entry.read_artifact(), args.output)  # the checked bytes (issue 19)
    validated = _validate_here(pipeline, model_dir, mtype)
    data = {
        "ok": True,
        "engine": "tensorrt-rtx",
        "engine_path": str(args.output or entry.artifact_path),
        "cache_entry": entry.digest,
        "targets": entry.metadata.get("targets"),
        "precision": entry.metadata.get("precision"),
        "build_seconds": info.get("build_seconds"),
        "plan_bytes": info.get("plan_bytes"),
        "from_cache": bool(info.get("from_cache")),
        "validated": validated["validated"],
        "validation": validated["text"],
    }
    lines = [
        f"engine      {data['engine_path']}" + (" (from cache)" if data["from_cache"] else ""),
        f"flavor      TensorRT-RTX {entry.key_fields.get('tensorrt_version')}, "
        f"for {','.join(data['targets'] or [])}",
        f"precision   {data['precision']}",
        f"build       {float(data['build_seconds'] or 0):.1f} s, "
        f"{int(data['plan_bytes'] or 0) / 1e6:.1f} MB",
        f"validation  {validated['text']}",
    ]
    return True, data, lines


def _validate_here(pipeline: Any, model_dir: Path, mtype: Any) -> dict[str, Any]:
    """Validate on this GPU when TensorRT-RTX runs on it; else say why not, plainly."""
    from ..integration.decision import cuda_status, rtx_gpu_status

    for status in (cuda_status(), rtx_gpu_status(pipeline.options.device_id)):
        if not status.ok:
            return {
                "validated": False,
                "text": "NOT VALIDATED yet: it cannot run here "
                f"({status.reason}); it is validated against native Paddle on the target "
                "GPU at first use, before it is served",
            }
    try:
        artifact = pipeline.engine(model_dir, mtype)
    except Exception as exc:  # the plan did not pass here: it is dropped, never served
        return {"validated": False, "text": f"FAILED on this GPU: {exc}"}
    agreement = (artifact.validation or {}).get("agreement")
    return {"validated": True, "text": f"passed on this GPU (agreement {agreement})"}
