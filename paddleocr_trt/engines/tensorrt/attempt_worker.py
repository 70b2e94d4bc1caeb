"""One engine attempt (build + validate against native Paddle), run only in a child process.

``attempts.IsolatedEngineBuilder`` calls :func:`build_and_validate` through
``isolation.call_in_child``: a TensorRT abort, segfault or hang here ends this child, never the
user's process, and the parent records it as one failed attempt.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def build_and_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """Build the fused graph of ``payload["onnx"]`` into ``payload["plan"]`` and compare it with
    native Paddle on the fused validation pairs (task agreement: fp16 is not exact).

    Fusion happens here, after the fp16 conversion (``fusion.artifacts.engine_onnx``), so the
    uint8 prologue and the argmax epilogue stay fp32 and FP32 pins name unfused nodes.
    """
    import numpy as np

    from ...backend.paddle.runner import PaddleInferenceRunner
    from ...comparator.fused import FusedPair
    from ...fusion.artifacts import check_fused_graph, engine_onnx
    from ...model_types import ModelType
    from ...profiles import ShapeProfile
    from ...progress import stage
    from . import adapter
    from .builder import build_engine
    from .config import BuildSettings
    from .runner import TensorRTRunner

    settings_dict = dict(payload["settings"])
    settings_dict["fp32_layers"] = tuple(settings_dict.get("fp32_layers") or ())
    settings = BuildSettings(**settings_dict)
    plan = Path(payload["plan"])
    model_dir = Path(payload["model_dir"])
    mtype = ModelType.parse(payload["model_type"])
    profiles = [
        {n: ShapeProfile(d["min"], d["opt"], d["max"]) for n, d in p.items()}
        for p in payload["profiles"]
    ]
    fp16 = settings.precision == "fp16" and adapter.fp16_needs_fp16_onnx()
    build_onnx, fp16_onnx = engine_onnx(
        mtype,
        model_dir,
        Path(payload["onnx"]),
        plan.parent,
        fp16_onnx=fp16,
        keep_fp32_nodes=settings.fp32_layers,
    )
    with stage(f"building the {settings.precision} engine"):
        result = build_engine(
            build_onnx,
            plan,
            settings,
            profiles,
            timing_cache_dir=payload.get("timing_cache_dir"),
            fp16_onnx_path=fp16_onnx,
            device_id=int(payload.get("device_id", 0)),
        )
    with np.load(payload["inputs"]) as data:
        arrays = [data[f"arr_{i}"] for i in range(len(data.files))]
    inputs = [FusedPair(base, fused) for base, fused in zip(arrays[::2], arrays[1::2], strict=True)]
    device_id = int(payload.get("device_id", 0))
    with (
        stage(f"validating against Paddle on {len(inputs)} inputs"),
        PaddleInferenceRunner(
            model_dir,
            device="cpu",
            cpu_threads=os.cpu_count() or 1,
            name=f"paddle:{model_dir.name}",
        ) as reference,
        TensorRTRunner(plan, name=f"tensorrt:{model_dir.name}", device_id=device_id) as candidate,
    ):
        report = check_fused_graph(
            mtype,
            model_dir,
            reference,
            candidate,
            inputs,
            min_agreement=float(payload["min_agreement"]),
            tolerance=None,
        )
    from ...fusion.artifacts import FUSED_GRAPH

    return {
        "graph": FUSED_GRAPH,
        "report": report.to_dict(),
        "build_seconds": result.seconds,
        "tensorrt_version": result.tensorrt_version,
        "built_precision": result.precision,
        "workspace_bytes": result.workspace_bytes,
        "plan_bytes": result.plan_bytes,
        "onnx_built": str(result.onnx_path),
    }
