"""Validation of a fused graph (issue 11): does it compute what the validated graph computes?

A fused graph (:mod:`paddleocr_trt.fusion`) takes other tensors than the graph it came from
(det / text-line orientation: the uint8 NHWC images PaddleX holds after resizing; rec: returns
(index, max prob) instead of the softmax), so :func:`compare` cannot feed both the same input.
Here every validation input is a :class:`FusedPair`: what the stock predictor would send the
base graph (PaddleX's own normalisation of the resized images) and what the adapted predictor
sends the fused one (the same resized images, uint8). :func:`compare_fused` judges

* exactly (``tolerance`` given; the ONNX Runtime engine against the validated fp32 graph):
  det/cls outputs within ``tolerance`` of the base graph's, rec indices identical to the
  base softmax's first-index argmax and max probs within ``tolerance``;
* by task (always): the comparator's agreement metrics (det box F1, rec 1-CER, cls labels)
  against ``min_agreement``; this alone decides for engines that may not be exact (TensorRT
  fp16 against native Paddle).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backend.base import BaseRunner
from ..backend.onnx.fuse_db import db_thresh_input
from ..log import get_logger
from ..model_types import ModelType
from ..postprocess.bitmap import unpack_db_bitmap
from . import metrics
from .compare import (
    _METRIC_NAMES,
    ValidationReport,
    _merge_stats,
    _postprocess_config,
    _Totals,
    task_settings,
)
from .compare import _task_detail as _base_task_detail
from .inputs import ImageInput

log = get_logger("comparator")

#: ``tolerance`` for a fused graph against its base graph on the same runtime: the prologue
#: repeats PaddleX's float32 arithmetic, so only kernel choice (fp32 rounding) may differ.
FP32_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FusedPair:
    """One validation input in both forms."""

    base: np.ndarray  # float32 NCHW, as the stock predictor feeds the unfused graph
    fused: np.ndarray  # uint8 NHWC (det/cls) or ``base`` itself (rec)
    #: the fused graph's further inputs (det: ``db_thresh``)
    extra: tuple[np.ndarray, ...] = ()

    @property
    def fused_inputs(self) -> list[np.ndarray]:
        return [self.fused, *self.extra]


def build_fused_pairs(
    model_type: ModelType | str,
    images: Sequence[ImageInput],
    *,
    model_dir: str | Path,
    batch_sizes: Sequence[int] = (1,),
) -> list[FusedPair]:
    """Real validation inputs in both forms, cut by PaddleX's own processors.

    det/cls: each batch of resized images (PaddleX's ``DetResizeForTest`` / ``Resize`` of the
    real images, so the uint8 values are what the adapted predictor really sends) stacked as
    uint8 and, separately, normalised by PaddleX's own steps. rec: the same float input twice
    (fusion changes rec's outputs only).
    """
    from . import inputs as vinputs

    mtype = ModelType.parse(model_type)
    config = vinputs._load_config(model_dir)
    if mtype is ModelType.RECOGNITION:
        tensors = vinputs.build_validation_inputs(
            mtype, images, model_dir=model_dir, batch_sizes=batch_sizes
        )
        return [FusedPair(t, t) for t in tensors]
    if mtype is ModelType.DETECTION:
        finish = vinputs.det_finisher(config)
        batches = vinputs.det_resized(
            images, config, vinputs.DEFAULT_DET_SIDES, batch_sizes, max_shape=None
        )
    else:
        crops = vinputs._crops(images, None)
        if not crops:
            raise ValueError("no text crops found in the validation images")
        finish = vinputs.cls_finisher(config)
        batches = vinputs.cls_resized(crops, config, batch_sizes, max_shape=None)
    thresh = None
    if mtype is ModelType.DETECTION:
        post = metrics.load_postprocess_config(model_dir)
        _chars, db = task_settings(mtype, post, None, None, remedy="")
        thresh = float((db or {}).get("thresh", 0.3))
    pairs = []
    for resized in batches:
        stacked = np.ascontiguousarray(np.stack(resized, axis=0))
        if stacked.dtype != np.uint8 or stacked.ndim != 4 or stacked.shape[3] != 3:
            raise ValueError(
                f"PaddleX's resize gave {stacked.dtype} {stacked.shape}, not uint8 NHWC"
            )
        extra = () if thresh is None else (db_thresh_input(thresh, stacked.shape[0]),)
        pairs.append(FusedPair(finish(list(resized)), stacked, extra))
    return pairs


def compare_fused(
    model_type: ModelType | str,
    reference: BaseRunner,
    candidate: BaseRunner,
    pairs: Sequence[FusedPair],
    *,
    tolerance: float | None = FP32_TOLERANCE,
    min_agreement: float = 0.99,
    character_dict: Sequence[str] | None = None,
    db_params: dict[str, Any] | None = None,
    model_dir: str | Path | None = None,
) -> ValidationReport:
    """``reference`` (unfused graph, fed ``pair.base``) against ``candidate`` (fused graph, fed
    ``pair.fused``); see the module docstring for what passes. ``tolerance=None`` skips the
    exact check (task agreement only). ``model_dir``: where the rec dictionary and det
    post-processing settings are read (default: the reference runner's model dir)."""
    mtype = ModelType.parse(model_type)
    if not pairs:
        raise ValueError("compare_fused needs at least one input pair")
    if model_dir is not None:
        post_config = metrics.load_postprocess_config(model_dir)
    else:
        post_config = _postprocess_config(reference)
    character_dict, db_params = task_settings(
        mtype, post_config, character_dict, db_params, remedy="pass model_dir= or character_dict="
    )
    decoder = _index_decoder(character_dict) if mtype is ModelType.RECOGNITION else None

    started = time.perf_counter()
    totals, stats, details = _Totals(), [], []
    reason: str | None = None
    for index, pair in enumerate(pairs):
        ref_out = reference.infer([pair.base])
        cand_out = candidate.infer(pair.fused_inputs)
        where = f"input {index} {tuple(pair.fused.shape)}"
        detail: dict[str, Any] = {"index": index, "input_shape": list(pair.fused.shape)}
        problem = _structure_problem(mtype, ref_out, cand_out)
        if problem:
            reason = f"{where}: {problem}"
            details.append({**detail, "error": problem})
            break
        if mtype is ModelType.RECOGNITION:
            ref_index, ref_prob = ref_out[0].argmax(axis=-1), ref_out[0].max(axis=-1)
            cand_index, cand_prob = cand_out
            s = metrics.tensor_stats("ctc_max_prob", ref_prob, cand_prob)
            mismatched = int((ref_index != cand_index).sum())
            detail["index_mismatches"] = mismatched
            if tolerance is not None and mismatched and reason is None:
                reason = f"{where}: {mismatched} CTC indices differ from the base graph's argmax"
            ref_text = metrics.ctc_decode(ref_out[0], character_dict)  # type: ignore[arg-type]
            cand_text = [row[0] for row in decoder.decode(cand_index, cand_prob)]  # type: ignore[union-attr]
            text = metrics.text_agreement(ref_text, cand_text)
            totals.exact += text.exact_matches
            totals.texts += text.count
            totals.edits += text.edits
            totals.reference_chars += text.reference_chars
            detail["cer"] = text.cer
        else:
            s = metrics.tensor_stats("output0", ref_out[0], cand_out[0])
            detail.update(
                _base_task_detail(mtype, ref_out[0], cand_out[0], totals, None, db_params, 0.5)
            )
            if mtype is ModelType.DETECTION:
                wrong = _bitmap_mismatches(cand_out, pair.extra[0])
                detail["bitmap_mismatches"] = wrong
                if tolerance is not None and wrong and reason is None:
                    reason = f"{where}: {wrong} DB bitmap pixels differ from map > thresh"
        stats.append(s)
        detail["max_abs_diff"] = s.max_abs_diff
        if reason is None and not s.finite:
            reason = f"{where}: the fused graph's output has NaN/inf"
        if reason is None and tolerance is not None and s.max_abs_diff > tolerance:
            reason = (
                f"{where}: {s.name} differs from the base graph by {s.max_abs_diff:.3g} "
                f"> {tolerance:g}"
            )
        details.append(detail)

    agreement, summary = (0.0, {}) if len(details) < len(pairs) else totals.result(mtype)
    if reason is None and not agreement >= min_agreement:
        reason = f"{_METRIC_NAMES[mtype]} {agreement:.4f} < required {min_agreement:.4f}"
    report = ValidationReport(
        model_type=mtype.value,
        passed=reason is None,
        agreement=float(agreement),
        metric=_METRIC_NAMES[mtype],
        min_agreement=float(min_agreement),
        reference=f"{reference.name} ({reference.backend})",
        candidate=f"{candidate.name} ({candidate.backend}, fused graph)",
        num_inputs=len(pairs),
        tensor_stats=[_merge_stats(stats).to_dict()] if stats else [],
        details=details,
        summary={**summary, "tolerance": tolerance},
        reason=reason,
        seconds={"total": round(time.perf_counter() - started, 4)},
    )
    if report.passed:
        log.info("fused %s graph agrees: %s", mtype.value, _stats_line(report))
    else:
        log.warning("fused %s graph FAILED validation: %s", mtype.value, reason)
    return report


def _index_decoder(character_dict: Sequence[str] | None) -> Any:
    from paddlex.inference.models.text_recognition.processors import CTCLabelDecode

    from ..postprocess.ctc import ArgmaxCTCDecoder

    return ArgmaxCTCDecoder(CTCLabelDecode(character_list=list(character_dict or [])).character)


def _structure_problem(
    mtype: ModelType, ref_out: list[np.ndarray], cand_out: list[np.ndarray]
) -> str | None:
    if mtype is ModelType.RECOGNITION:
        if len(cand_out) != 2:
            return f"fused rec graph returned {len(cand_out)} outputs, not (index, max prob)"
        expected = ref_out[0].shape[:-1]
        if any(o.shape != expected for o in cand_out):
            return f"fused rec outputs {[o.shape for o in cand_out]} != {expected}"
        if not np.issubdtype(cand_out[0].dtype, np.integer):
            return f"fused rec indices are {cand_out[0].dtype}, not integers"
        return None
    expected_outputs = len(ref_out) + (1 if mtype is ModelType.DETECTION else 0)
    if len(cand_out) != expected_outputs:
        return f"fused graph returned {len(cand_out)} outputs, expected {expected_outputs}"
    if mtype is ModelType.DETECTION:
        n, c, h, w = ref_out[0].shape
        packed = (n, c, h, w // 8)
        if cand_out[1].dtype != np.uint8 or cand_out[1].shape != packed:
            return f"DB bitmap is {cand_out[1].dtype} {cand_out[1].shape}, not uint8 {packed}"
    if cand_out[0].shape != ref_out[0].shape:
        return f"output shape {cand_out[0].shape} != base graph's {ref_out[0].shape}"
    return None


def _bitmap_mismatches(cand_out: list[np.ndarray], thresh: np.ndarray) -> int:
    """Pixels where the engine's packed bitmap disagrees with its own map > thresh."""
    prob = cand_out[0]
    expected = prob > thresh.reshape(-1, 1, 1, 1)
    return int((unpack_db_bitmap(cand_out[1]) != expected).sum())


def _stats_line(report: ValidationReport) -> str:
    worst = report.tensor_stats[0]["max_abs_diff"] if report.tensor_stats else 0.0
    return f"{report.metric}={report.agreement:.4f}, max abs diff {worst:.3g}"


def uint8_like(x: np.ndarray, model_dir: str | Path) -> np.ndarray:
    """A uint8 NHWC batch that normalises (approximately) to the float NCHW ``x``.

    For benchmarks of a fused det/cls engine only: latency depends on shapes, not pixels.
    """
    from ..backend.onnx.fuse import load_normalize_args, normalize_constants

    alpha, beta = normalize_constants(**load_normalize_args(model_dir))
    nhwc = np.transpose(np.asarray(x, np.float32), (0, 2, 3, 1))
    return np.ascontiguousarray(np.clip(np.rint((nhwc - beta) / alpha), 0, 255).astype(np.uint8))
