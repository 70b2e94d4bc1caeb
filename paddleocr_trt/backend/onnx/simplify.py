"""Graph simplification: constant folding and dead-node removal before TensorRT sees the graph.

paddle2onnx leaves hundreds of ``Constant -> Identity -> Cast`` chains (the shape arithmetic of
Paddle's dynamic reshapes). Polygraphy's ``fold_constants`` would need ``onnx-graphsurgeon``,
which is not a dependency; ONNX Runtime's *basic* graph optimizations do the same folding, emit
only standard ``ai.onnx`` operators (basic level adds no contrib or layout ops), and are already
required. The result is checked by the caller (checker, ONNX Runtime run, comparison with the
unsimplified model's numbers via the Paddle smoke test), never trusted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from ...log import get_logger

log = get_logger("onnx.simplify")

_STANDARD_DOMAINS = ("", "ai.onnx")


def simplify_model(model: onnx.ModelProto, workdir: str | Path) -> onnx.ModelProto:
    """Return a constant-folded copy of ``model`` (files go to ``workdir``, cleaned up here)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(dir=workdir, prefix="simplify-") as tmp:
        source = Path(tmp) / "in.onnx"
        target = Path(tmp) / "out.onnx"
        onnx.save(model, str(source))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        simplified = onnx.load(str(target))

    foreign = {node.domain for node in simplified.graph.node} - set(_STANDARD_DOMAINS)
    if foreign:
        raise ValueError(f"simplification introduced non-standard operator domains {foreign}")
    # ORT declares every domain it knows; keep only what the graph uses.
    used = {node.domain for node in simplified.graph.node} | {""}
    kept = [o for o in simplified.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del simplified.opset_import[:]
    simplified.opset_import.extend(kept)
    simplified.producer_name = model.producer_name
    simplified.producer_version = model.producer_version
    log.debug("simplified graph: %d -> %d nodes", len(model.graph.node), len(simplified.graph.node))
    return simplified
