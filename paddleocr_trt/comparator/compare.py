"""Reference-vs-candidate validation: does an artifact still do the OCR job native Paddle does?

One entry point for every backend (Polygraphy's comparator idea): run the same real inputs
through both runners, record tensor differences, and decide on a task-level agreement number,
because only that says whether "accuracy is retained":

* detection: F1 at IoU 0.5 of the candidate's DB boxes against the reference's, pooled over all
  inputs;
* recognition: 1 - CER of the candidate's CTC text against the reference's (exact-match rate is
  reported too);
* classification (text-line orientation): share of rows with the same argmax label.

The candidate passes iff agreement >= ``min_agreement`` and all its outputs are finite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..backend.base import BaseRunner
from ..log import get_logger
from ..model_types import ModelType
from . import metrics

log = get_logger("comparator")

_METRIC_NAMES = {
    ModelType.DETECTION: "det_box_f1@iou0.5",
    ModelType.RECOGNITION: "rec_1_minus_cer",
    ModelType.CLASSIFICATION: "cls_label_agreement",
}


@dataclass
class ValidationReport:
    """Outcome of one comparison; ``to_dict()`` is what goes into a cache manifest."""

    model_type: str
    passed: bool
    agreement: float
    metric: str
    min_agreement: float
    reference: str
    candidate: str
    num_inputs: int
    tensor_stats: list[dict[str, Any]] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))


def task_settings(
    mtype: ModelType,
    post_config: dict[str, Any],
    character_dict: Sequence[str] | None,
    db_params: dict[str, Any] | None,
    *,
    remedy: str,
) -> tuple[Sequence[str] | None, dict[str, Any] | None]:
    """(rec character dictionary, det DB settings) for the task metrics: the caller's, else the
    model's inference.yml PostProcess; a rec comparison without a dictionary is refused."""
    if mtype is ModelType.RECOGNITION:
        character_dict = character_dict or post_config.get("character_dict")
        if not character_dict:
            raise ValueError(
                f"recognition comparison needs the model's character dictionary: {remedy}"
            )
    if mtype is ModelType.DETECTION and db_params is None:
        db_params = {k: v for k, v in post_config.items() if k != "name"}
    return character_dict, db_params


def compare(
    model_type: ModelType | str,
    reference: BaseRunner,
    candidate: BaseRunner,
    inputs: Sequence[np.ndarray],
    *,
    min_agreement: float = 0.99,
    character_dict: Sequence[str] | None = None,
    db_params: dict[str, Any] | None = None,
    iou_threshold: float = 0.5,
) -> ValidationReport:
    """Run ``inputs`` through both runners and judge the candidate against the reference.

    character_dict: rec only; taken from the reference runner's ``inference.yml`` when omitted
        (runners that expose ``model_files``, like ``PaddleInferenceRunner``).
    db_params: det only; DBPostProcess settings (default: the reference model's inference.yml,
        else PP-OCR's).
    """
    mtype = ModelType.parse(model_type)
    if not inputs:
        raise ValueError("compare needs at least one input tensor")
    character_dict, db_params = task_settings(
        mtype,
        _postprocess_config(reference),
        character_dict,
        db_params,
        remedy="pass character_dict= (PostProcess.character_dict of its inference.yml)",
    )

    started = time.perf_counter()
    timings = {"reference": 0.0, "candidate": 0.0, "metrics": 0.0}
    stats_by_output: dict[int, list[metrics.TensorStats]] = {}
    details: list[dict[str, Any]] = []
    totals = _Totals()
    reason: str | None = None
    broken = False  # outputs that cannot be compared at all

    for index, x in enumerate(inputs):
        t0 = time.perf_counter()
        ref_out = reference.infer([x])
        t1 = time.perf_counter()
        cand_out = candidate.infer([x])
        t2 = time.perf_counter()
        timings["reference"] += t1 - t0
        timings["candidate"] += t2 - t1
        detail: dict[str, Any] = {"index": index, "input_shape": list(x.shape)}
        problem = _structure_problem(ref_out, cand_out)
        if problem:
            reason = f"input {index} {tuple(x.shape)}: {problem}"
            details.append({**detail, "error": problem})
            broken = True
            break
        for k, (r, c) in enumerate(zip(ref_out, cand_out, strict=True)):
            s = metrics.tensor_stats(f"output{k}", r, c)
            stats_by_output.setdefault(k, []).append(s)
            detail.setdefault("max_abs_diff", []).append(s.max_abs_diff)
            if not s.finite and reason is None:
                reason = f"input {index} {tuple(x.shape)}: candidate output {k} has NaN/inf"
        detail.update(
            _task_detail(
                mtype, ref_out[0], cand_out[0], totals, character_dict, db_params, iou_threshold
            )
        )
        timings["metrics"] += time.perf_counter() - t2
        details.append(detail)

    agreement, summary = (0.0, {}) if broken else totals.result(mtype)
    if reason is None and not agreement >= min_agreement:
        reason = (
            f"{mtype.value}: {_METRIC_NAMES[mtype]} {agreement:.4f} < required "
            f"{min_agreement:.4f}; {_failure_hint(mtype, details)}"
        )
    passed = reason is None
    timings["total"] = time.perf_counter() - started
    report = ValidationReport(
        model_type=mtype.value,
        passed=passed,
        agreement=float(agreement),
        metric=_METRIC_NAMES[mtype],
        min_agreement=float(min_agreement),
        reference=f"{reference.name} ({reference.backend})",
        candidate=f"{candidate.name} ({candidate.backend})",
        num_inputs=len(inputs),
        tensor_stats=[
            _merge_stats(stats).to_dict() for _, stats in sorted(stats_by_output.items())
        ],
        details=details,
        summary=summary,
        reason=reason,
        seconds={k: round(v, 4) for k, v in timings.items()},
    )
    if passed:
        log.info(
            "%s validation passed: %s=%.4f over %d inputs (%s vs %s, %.1f s)",
            mtype.value, report.metric, agreement, len(inputs), report.candidate,
            report.reference, timings["total"],
        )  # fmt: skip
    else:
        log.warning("%s validation FAILED: %s", mtype.value, reason)
    return report


# -- helpers --------------------------------------------------------------------------------


@dataclass
class _Totals:
    true_positives: int = 0
    reference_boxes: int = 0
    candidate_boxes: int = 0
    exact: int = 0
    texts: int = 0
    edits: int = 0
    reference_chars: int = 0
    labels_agree: int = 0
    labels: int = 0

    def result(self, mtype: ModelType) -> tuple[float, dict[str, Any]]:
        if mtype is ModelType.DETECTION:
            match = metrics.BoxMatch(
                self.true_positives, self.reference_boxes, self.candidate_boxes
            )
            return match.f1, {
                "f1": match.f1,
                "true_positives": self.true_positives,
                "reference_boxes": self.reference_boxes,
                "candidate_boxes": self.candidate_boxes,
            }
        if mtype is ModelType.RECOGNITION:
            text = metrics.TextAgreement(self.exact, self.texts, self.edits, self.reference_chars)
            return 1.0 - min(1.0, text.cer), {
                "cer": text.cer,
                "exact_match_rate": text.exact_match_rate,
                "texts": self.texts,
                "reference_chars": self.reference_chars,
            }
        rate = 1.0 if self.labels == 0 else self.labels_agree / self.labels
        return rate, {"label_agreement": rate, "labels": self.labels}


def _task_detail(
    mtype: ModelType,
    ref: np.ndarray,
    cand: np.ndarray,
    totals: _Totals,
    character_dict: Sequence[str] | None,
    db_params: dict[str, Any] | None,
    iou_threshold: float,
) -> dict[str, Any]:
    if not np.isfinite(cand).all():
        cand = np.nan_to_num(cand, nan=0.0, posinf=0.0, neginf=0.0)
    if mtype is ModelType.DETECTION:
        ref_boxes, cand_boxes = metrics.db_boxes(ref, db_params), metrics.db_boxes(cand, db_params)
        matches = [
            metrics.match_boxes(r, c, iou_threshold)
            for r, c in zip(ref_boxes, cand_boxes, strict=True)
        ]
        for m in matches:
            totals.true_positives += m.true_positives
            totals.reference_boxes += m.reference_count
            totals.candidate_boxes += m.candidate_count
        return {
            "f1": [m.f1 for m in matches],
            "boxes": [[m.reference_count, m.candidate_count] for m in matches],
        }
    if mtype is ModelType.RECOGNITION:
        assert character_dict is not None
        ref_text = metrics.ctc_decode(ref, character_dict)
        cand_text = metrics.ctc_decode(cand, character_dict)
        text = metrics.text_agreement(ref_text, cand_text)
        totals.exact += text.exact_matches
        totals.texts += text.count
        totals.edits += text.edits
        totals.reference_chars += text.reference_chars
        mismatches = [[r, c] for r, c in zip(ref_text, cand_text, strict=True) if r != c]
        return {"cer": text.cer, "exact_match_rate": text.exact_match_rate,
                "mismatches": mismatches[:5]}  # fmt: skip
    agree, count = metrics.label_agreement(ref, cand)
    totals.labels_agree += agree
    totals.labels += count
    return {"label_agreement": agree / count if count else 1.0}


def _structure_problem(ref_out: list[np.ndarray], cand_out: list[np.ndarray]) -> str | None:
    if len(ref_out) != len(cand_out):
        return f"candidate returned {len(cand_out)} outputs, reference {len(ref_out)}"
    for k, (r, c) in enumerate(zip(ref_out, cand_out, strict=True)):
        if r.shape != c.shape:
            return f"output {k} shape {tuple(c.shape)} != reference {tuple(r.shape)}"
    return None


def _merge_stats(stats: list[metrics.TensorStats]) -> metrics.TensorStats:
    """One line per output over all inputs: worst max, element-weighted mean."""
    sizes = [math.prod(s.shape) for s in stats]
    total = sum(sizes) or 1
    return metrics.TensorStats(
        name=stats[0].name,
        shape=stats[0].shape if len({s.shape for s in stats}) == 1 else (),
        max_abs_diff=max(s.max_abs_diff for s in stats),
        mean_abs_diff=sum(s.mean_abs_diff * n for s, n in zip(stats, sizes, strict=True)) / total,
        finite=all(s.finite for s in stats),
    )


def _failure_hint(mtype: ModelType, details: list[dict[str, Any]]) -> str:
    if mtype is ModelType.RECOGNITION:
        examples = [m for d in details for m in d.get("mismatches", [])][:3]
        shown = ", ".join(f"{r!r} -> {c!r}" for r, c in examples)
        return f"e.g. {shown}" if shown else "texts differ"
    if mtype is ModelType.DETECTION:
        ref = sum(b[0] for d in details for b in d.get("boxes", []))
        cand = sum(b[1] for d in details for b in d.get("boxes", []))
        return f"reference found {ref} boxes, candidate {cand}"
    worst = min((d.get("label_agreement", 1.0) for d in details), default=1.0)
    return f"worst input agrees on {worst:.0%} of labels"


def _postprocess_config(runner: BaseRunner) -> dict[str, Any]:
    model = getattr(runner, "resolved_model", None)
    if model is not None:  # a reference runner made from a ResolvedModel: nothing to read
        return model.postprocess()
    files = getattr(runner, "model_files", None)
    if files is None or getattr(files, "model_dir", None) is None:
        return {}
    try:
        return metrics.load_postprocess_config(files.model_dir)
    except (OSError, ValueError) as exc:
        log.debug("no post-process config from %s: %s", files.model_dir, exc)
        return {}


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
