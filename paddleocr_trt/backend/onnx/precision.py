"""Find the nodes that break an fp16 model, and pin them to fp32 until it validates.

FP16 TensorRT engines of PP-OCR det models are known to lose most of their accuracy, so an fp16
model is only used after validation, and when validation fails the fix is per node, not
"give up on fp16". The analysis is Polygraphy's "mark all outputs": every float tensor of the
fp32 graph is exposed as an output in both the fp32 and the fp16 model, both run on ONNX Runtime
(CPU is enough: the errors come from fp16 storage, which the CPU reproduces), and each fp16 node
is scored by how much relative error its outputs carry beyond what its inputs already carried.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...log import get_logger
from .fp16 import (
    convert_model_to_fp16,
    ensure_node_names,
    fp16_node_names,
    save_model_atomic,
    tensor_elem_types,
)

log = get_logger("onnx.precision")

Feed = np.ndarray | Mapping[str, np.ndarray]
#: Relative error given to a tensor that is finite in fp32 but not in fp16 (overflow).
NON_FINITE_ERROR = float("inf")


@dataclass(frozen=True)
class NodeSensitivity:
    """How much error one fp16 node adds: ``introduced = output_error - input_error``.

    Errors are relative L2 norms ``||fp16 - fp32|| / ||fp32||`` of the node's tensors, the worst
    over all inputs fed; ``inf`` means the fp16 tensor held inf/NaN where fp32 was finite.
    """

    node: str
    op_type: str
    input_error: float
    output_error: float

    @property
    def introduced(self) -> float:
        if np.isinf(self.output_error) and not np.isinf(self.input_error):
            return float("inf")
        return max(self.output_error - self.input_error, 0.0)


@dataclass(frozen=True)
class RepairRound:
    round: int
    pinned: tuple[str, ...]
    passed: bool
    seconds: float


@dataclass
class Fp16RepairResult:
    """Outcome of :func:`repair_fp16`; ``onnx_path`` is None when no candidate passed."""

    passed: bool
    onnx_path: Path | None
    pinned_nodes: list[str]
    rounds: int
    fp16_nodes: int
    seconds: float
    history: list[RepairRound] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "onnx_path": str(self.onnx_path) if self.onnx_path else None,
            "pinned_nodes": list(self.pinned_nodes),
            "rounds": self.rounds,
            "fp16_nodes": self.fp16_nodes,
            "seconds": round(self.seconds, 3),
            "history": [
                {"round": r.round, "pinned": list(r.pinned), "passed": r.passed}
                for r in self.history
            ],
        }


def relative_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    """``||candidate - reference||_2 / ||reference||_2``; inf on fp16 overflow.

    Computed in float32 with BLAS dot products: the analysis compares hundreds of feature maps,
    and a ranking needs no more than float32 precision.
    """
    ref = np.asarray(reference, dtype=np.float32).ravel()
    cand = np.asarray(candidate, dtype=np.float32).ravel()
    if cand.shape != ref.shape:
        return NON_FINITE_ERROR
    if not np.isfinite(ref).all():
        keep = np.isfinite(ref)
        ref, cand = ref[keep], cand[keep]
    if not np.isfinite(cand).all():
        return NON_FINITE_ERROR
    diff = cand - ref
    scale = float(np.sqrt(np.dot(ref, ref)))
    return float(np.sqrt(np.dot(diff, diff))) / max(scale, 1e-12)


def _feeds(model: onnx.ModelProto, inputs: Sequence[Feed]) -> list[dict[str, np.ndarray]]:
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    feeds = []
    for item in inputs:
        if isinstance(item, Mapping):
            feeds.append({k: np.asarray(v) for k, v in item.items()})
        elif len(names) == 1:
            feeds.append({names[0]: np.asarray(item)})
        else:
            raise ValueError(f"model has inputs {names}: pass one mapping name -> array per run")
    if not feeds:
        raise ValueError("at least one input is needed to measure fp16 error")
    return feeds


def _expose(model: onnx.ModelProto, tensors: Iterable[str]) -> bytes:
    """Serialized copy of ``model`` with ``tensors`` added as graph outputs."""
    exposed = onnx.ModelProto.FromString(model.SerializeToString())
    types = tensor_elem_types(exposed)
    present = {o.name for o in exposed.graph.output}
    for name in tensors:
        if name not in present and name in types:
            exposed.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    return exposed.SerializeToString()


def _session(model_bytes: bytes):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Graph optimisations fuse nodes and would hide (or re-type) the tensors being compared.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class _Reference:
    """The fp32 model with every float tensor exposed, run once per input and kept."""

    def __init__(self, model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> None:
        types = tensor_elem_types(model)
        constants = {i.name for i in model.graph.initializer}
        constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
        self.tensors = [
            out
            for node in model.graph.node
            for out in node.output
            if out and types.get(out) == TensorProto.FLOAT and out not in constants
        ]
        session = _session(_expose(model, self.tensors))
        names = [o.name for o in session.get_outputs()]
        self.results = [dict(zip(names, session.run(names, feed), strict=True)) for feed in feeds]


def _analyse(
    model: onnx.ModelProto,
    reference: _Reference,
    feeds: list[dict[str, np.ndarray]],
    keep_fp32_nodes: Iterable[str],
    keep_out_of_range_weights: bool,
) -> list[NodeSensitivity]:
    keep = list(keep_fp32_nodes)
    fp16_model = convert_model_to_fp16(
        model, keep_fp32_nodes=keep, keep_out_of_range_weights=keep_out_of_range_weights
    )
    fp16_nodes = fp16_node_names(model, keep, keep_out_of_range_weights=keep_out_of_range_weights)
    session = _session(_expose(fp16_model, reference.tensors))
    names = [o.name for o in session.get_outputs() if o.name in set(reference.tensors)]
    errors: dict[str, float] = {}
    for feed, ref in zip(feeds, reference.results, strict=True):
        for name, value in zip(names, session.run(names, feed), strict=True):
            errors[name] = max(errors.get(name, 0.0), relative_error(value, ref[name]))
    scores = []
    for node in model.graph.node:
        if node.name not in fp16_nodes:
            continue
        outputs = [errors[o] for o in node.output if o in errors]
        if not outputs:
            continue
        inputs = [errors.get(i, 0.0) for i in node.input if i]
        scores.append(
            NodeSensitivity(node.name, node.op_type, max(inputs, default=0.0), max(outputs))
        )
    scores.sort(key=lambda s: (s.introduced, s.output_error), reverse=True)
    return scores


def find_fp16_sensitive_nodes(
    onnx_path: str | Path,
    inputs: Sequence[Feed],
    *,
    top_k: int | None = 10,
    keep_fp32_nodes: Iterable[str] = (),
    keep_out_of_range_weights: bool = True,
) -> list[NodeSensitivity]:
    """The fp16 nodes that add the most error on ``inputs``, worst first.

    ``inputs``: one array per run for single-input models (else a name -> array mapping).
    Node names are those of :func:`~.fp16.ensure_node_names` and can be passed straight to
    ``convert_to_fp16(keep_fp32_nodes=...)``.
    """
    model = onnx.load(str(onnx_path))
    ensure_node_names(model)
    feeds = _feeds(model, inputs)
    scores = _analyse(
        model, _Reference(model, feeds), feeds, keep_fp32_nodes, keep_out_of_range_weights
    )
    return scores if top_k is None else scores[:top_k]


def repair_fp16(
    onnx_path: str | Path,
    out_path: str | Path,
    inputs: Sequence[Feed],
    check: Callable[[Path], bool],
    *,
    max_rounds: int = 8,
    keep_fp32_nodes: Iterable[str] = (),
    keep_out_of_range_weights: bool = True,
) -> Fp16RepairResult:
    """Convert to fp16, then pin the worst nodes to fp32 until ``check(candidate)`` passes.

    Round 0 checks the plain conversion; each later round re-runs the sensitivity analysis with
    the pins so far and pins the next worst nodes (1, 2, 4, ... per round: a single broken node,
    the common case, costs one round; a badly broken model still converges in few rounds).
    ``out_path`` is written (atomically) only with a candidate that passed; otherwise the result
    says ``passed=False`` and the caller keeps fp32.
    """
    started = time.perf_counter()
    out = Path(out_path)
    model = onnx.load(str(onnx_path))
    ensure_node_names(model)
    feeds = _feeds(model, inputs)
    pinned = list(dict.fromkeys(keep_fp32_nodes))
    reference: _Reference | None = None
    history: list[RepairRound] = []
    fp16_count = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    for round_index in range(max_rounds + 1):
        round_started = time.perf_counter()
        candidate = convert_model_to_fp16(
            model, keep_fp32_nodes=pinned, keep_out_of_range_weights=keep_out_of_range_weights
        )
        fp16_count = len(
            fp16_node_names(model, pinned, keep_out_of_range_weights=keep_out_of_range_weights)
        )
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.r{round_index}.", dir=out.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            save_model_atomic(candidate, tmp)
            passed = bool(check(tmp))
            if passed:
                os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        history.append(
            RepairRound(round_index, tuple(pinned), passed, time.perf_counter() - round_started)
        )
        log.info(
            "fp16 repair round %d: %d node(s) pinned to fp32, %d in fp16, check %s",
            round_index,
            len(pinned),
            fp16_count,
            "passed" if passed else "failed",
        )
        if passed:
            return Fp16RepairResult(
                True, out, pinned, round_index, fp16_count, time.perf_counter() - started, history
            )
        if round_index == max_rounds or fp16_count == 0:
            break
        if reference is None:
            reference = _Reference(model, feeds)
        scores = _analyse(model, reference, feeds, pinned, keep_out_of_range_weights)
        worst = [s for s in scores if s.introduced > 0.0][: 2**round_index]
        if not worst:
            log.info("fp16 repair: no fp16 node adds measurable error; stopping")
            break
        for score in worst:
            log.info(
                "pinning %s (%s): relative error %.3g -> %.3g",
                score.node,
                score.op_type,
                score.input_error,
                score.output_error,
            )
        pinned.extend(s.node for s in worst)
    log.warning(
        "fp16 repair of %s failed after %d round(s) with %d node(s) pinned; keep fp32",
        onnx_path,
        len(history) - 1,
        len(pinned),
    )
    return Fp16RepairResult(
        False, None, pinned, len(history) - 1, fp16_count, time.perf_counter() - started, history
    )
