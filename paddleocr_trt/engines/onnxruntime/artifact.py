"""The ONNX Runtime engine's artifact: the engine graph, validated under its provider, cached.

Step 3 of the recipe for ONNX Runtime: the engine graph (``engine_graph.EngineGraph``, the fused
graph of the recipe's validated ONNX, a cached stage of its own) is what it runs, so its artifact
is that graph's bytes, validated under the provider in two steps of its own (below) and cached
under a key that carries the graph stage's; the recipe lends the cache and the validation
images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...artifact import ONNX_ARTIFACT, Artifact, ArtifactSource, log_report
from ...cache.key import CacheKey
from ...engine_graph import EngineGraph
from ...fusion.artifacts import check_fused_graph
from ...progress import stage


def onnxruntime_key(pipeline: ArtifactSource, graph: EngineGraph, provider: str) -> CacheKey:
    """The key of the engine graph validated under ``provider``: the graph stage's key (so a
    new graph recipe re-keys it), the provider and the model's."""
    from ...backend.onnx.convert import converter_versions

    model = graph.model
    return CacheKey(
        model_fingerprint=str(model.fingerprint),
        model_type=model.model_type.value,
        kind="onnxruntime",
        precision="fp32",
        builder_settings={
            "provider": provider,
            "min_agreement": pipeline.options.min_agreement,
            "graph": graph.version,
            "graph_key": graph.digest,
            **model.source_key(),
        },
        converter_versions=converter_versions(model.is_onnx),
    )


def onnxruntime_engine(
    pipeline: ArtifactSource,
    graph: EngineGraph,
    provider: str,
    device_id: int = 0,
) -> Artifact:
    """The engine graph (``fuse_model`` of the validated ONNX), checked twice before it is
    cached.

    1. The unfused graph against the model's reference (native Paddle; ONNX Runtime on the
       CPU running an ONNX model dir's source graph) under ``provider``. On the CPU provider
       the ONNX step did exactly that with this ONNX Runtime, so its report is reused rather
       than repeating a 10-30 s comparison.
    2. The fused graph against the unfused one under ``provider`` on the same real images
       (:mod:`paddleocr_trt.comparator.fused`: within fp32 rounding; rec: the same indices).

    Either failing raises ``ValidationFailedError`` and nothing is cached.
    """
    from .runner import OnnxRuntimeRunner

    model = graph.model  # resolved once, by the recipe
    onnx = graph.onnx  # the recipe's validated ONNX (step 1), which the graph is made from
    assert onnx is not None
    model_dir = model.model_dir
    mtype = model.model_type
    key = onnxruntime_key(pipeline, graph, provider)
    created: dict[str, Any] = {}

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        target = tmp / ONNX_ARTIFACT
        # the validated ONNX once, checked against its manifest: the unfused side of the
        # comparison runs these bytes, never the cache path again (issue 19)
        created["source"] = onnx.entry.read_artifact()
        meta = graph.write(target)  # the graph stage's checked bytes: fused once, cached
        created["from"] = onnx.entry.digest
        graph_entry = {"graph_entry": graph.fused.entry.digest} if graph.fused else {}
        return target, {
            **onnx.entry.metadata,
            **meta,
            **model.source_metadata(),
            "onnx_entry": onnx.entry.digest,
            **graph_entry,
        }

    def runner(path: Path | bytes, what: str) -> OnnxRuntimeRunner:
        return OnnxRuntimeRunner(
            path, providers=[provider], device_id=device_id, name=f"{what}:{model_dir.name}"
        )

    def validate(path: Path) -> dict[str, Any]:
        if provider == "CPUExecutionProvider" and onnx.validation:
            base = {**onnx.validation, "reused_from": onnx.entry.digest}
        else:
            inputs = pipeline.validation_inputs(model, mtype)
            with runner(created["source"], provider) as candidate:
                report = pipeline.compare(mtype, model, candidate, inputs)
            log_report(f"ONNX Runtime ({provider})", model, report)
            base = report.to_dict()
        if not base.get("passed"):
            return base
        pairs = pipeline.fused_validation_pairs(model, mtype)
        with (
            stage(f"validating the fused {mtype.value} graph of {model_dir.name} ({provider})"),
            runner(created["source"], "unfused") as reference,
            runner(path, "fused") as candidate,
        ):
            fused = check_fused_graph(
                mtype,
                model,
                reference,
                candidate,
                pairs,
                min_agreement=pipeline.options.min_agreement,
            )
        log_report(f"fused graph ({provider})", model, fused)
        return {**base, "passed": fused.passed, "reason": fused.reason, "fused": fused.to_dict()}

    entry = pipeline.cache.get_or_create(
        key, create, artifact_name=ONNX_ARTIFACT, validate_fn=validate
    )
    return Artifact(entry, from_cache="from" not in created, extra={"onnx": onnx})
