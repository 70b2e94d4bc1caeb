"""``doctor --selftest`` with TensorRT-RTX: build the det engine for real, and run it only where
a GPU TensorRT-RTX runs on is present.

Without such a GPU the build still happens (TensorRT-RTX builds ahead of time), its time and
size are printed, and the selftest says plainly that the engine cannot run here and why, and
fails (exit 1): a build alone proves nothing about running.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def rtx_selftest(cache_dir: Path | None, det: Path | None, timeout_s: float, out: Any) -> int:
    from ..cache.store import EngineCache
    from ..engines import registry
    from ..integration.decision import cuda_status, rtx_gpu_status, tensorrt_status
    from ..model_types import ModelType, locate_model_files
    from ..pipeline import ArtifactPipeline, PipelineOptions

    rtx = registry.engine("tensorrt-rtx")  # its own methods beyond the contract
    flavor = rtx.flavor  # "tensorrt-rtx", what the adapter and the recipe options say
    status = tensorrt_status(flavor)
    print(f"TensorRT-RTX  {status.message()}", file=out)
    if not status.ok:
        return 1
    if det is None:
        print("det model     skipped: no *_det model in ~/.paddlex; pass --det-model", file=out)
        return 1
    model_dir = locate_model_files(det).model_dir.resolve()
    options = PipelineOptions(trt_flavor=flavor, build_timeout_s=timeout_s)
    pipeline = ArtifactPipeline(EngineCache(cache_dir), options)
    started = time.perf_counter()
    try:
        entry, info = rtx.prepare_ahead_of_time(
            pipeline, pipeline.graph(model_dir, ModelType.DETECTION)
        )
    except Exception as exc:  # a failed build is the finding
        print(f"det build     FAILED: {type(exc).__name__}: {exc}", file=out)
        return 1
    targets = ",".join(entry.metadata.get("targets") or [])
    print(
        f"det build     built: {entry.metadata.get('precision')} plan for {targets}, "
        f"{int(info.get('plan_bytes') or 0) / 1e6:.1f} MB, build "
        f"{float(info.get('build_seconds') or 0):.1f} s"
        + (" (from cache)" if info.get("from_cache") else "")
        + f", total {time.perf_counter() - started:.1f} s",
        file=out,
    )
    print(f"  plan:       {entry.artifact_path}", file=out)
    for gate in (cuda_status(), rtx_gpu_status(options.device_id)):
        if not gate.ok:
            print(
                f"det run       NOT RUN: the engine cannot run here ({gate.message()}). It was "
                "built, not run, and is not validated: on an RTX GPU it is validated against "
                "native Paddle at first use.",
                file=out,
            )
            return 1
    try:
        artifact = pipeline.engine(model_dir, ModelType.DETECTION)
    except Exception as exc:
        print(f"det run       FAILED on this GPU: {type(exc).__name__}: {exc}", file=out)
        return 1
    agreement = (artifact.validation or {}).get("agreement")
    print(f"det run       passed: validated on this GPU, agreement {agreement}", file=out)
    return 0
