"""Task-level agreement metrics: what "accuracy retained" means for each OCR model type.

Raw tensor differences say little about OCR quality (a det map can move by 0.05 everywhere and
give the same boxes; a rec logit can move by 1e-3 and flip a character), so validation judges
candidates the way the pipeline uses their outputs: boxes, text and labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance (insert, delete, substitute all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, 1):
        current = [i]
        for j, item_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item_a != item_b))
            )
        previous = current
    return previous[-1]


def character_error_rate(reference: str, hypothesis: str, *, ignore_spaces: bool = False) -> float:
    """Edit distance over the reference length; 0.0 for two empty strings, 1.0 for "" vs text."""
    if ignore_spaces:
        reference = "".join(reference.split())
        hypothesis = "".join(hypothesis.split())
    if not reference:
        return 0.0 if not hypothesis else 1.0
    return edit_distance(reference, hypothesis) / len(reference)


# -- tensors --------------------------------------------------------------------------------


@dataclass
class TensorStats:
    """Element-wise difference of one output; ``finite`` is False if the candidate has NaN/inf."""

    name: str
    shape: tuple[int, ...]
    max_abs_diff: float
    mean_abs_diff: float
    finite: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "finite": self.finite,
        }


def tensor_stats(name: str, reference: np.ndarray, candidate: np.ndarray) -> TensorStats:
    if reference.shape != candidate.shape:
        raise ValueError(
            f"output {name!r}: candidate shape {candidate.shape} != reference {reference.shape}"
        )
    finite = bool(np.isfinite(candidate).all())
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    if not finite:
        diff = np.where(np.isfinite(diff), diff, np.inf)
    return TensorStats(
        name=name,
        shape=tuple(int(d) for d in reference.shape),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        finite=finite,
    )


# -- detection ------------------------------------------------------------------------------

#: PaddleX's DBPostProcess settings for PP-OCR det models (OCR.yaml / inference.yml).
DEFAULT_DB_PARAMS: dict[str, Any] = {
    "thresh": 0.3,
    "box_thresh": 0.6,
    "unclip_ratio": 1.5,
    "max_candidates": 1000,
}


def db_boxes(prob_map: np.ndarray, params: dict[str, Any] | None = None) -> list[np.ndarray]:
    """Quad boxes per image of an ``[N,1,H,W]`` probability map, in input-tensor pixels.

    PaddleX's own ``DBPostProcess`` does the work, so "same boxes" means same pipeline output.
    """
    from paddlex.inference.models.text_detection.processors import DBPostProcess

    settings = {**DEFAULT_DB_PARAMS, **(params or {})}
    keep = (
        "thresh",
        "box_thresh",
        "unclip_ratio",
        "max_candidates",
        "use_dilation",
        "score_mode",
        "box_type",
    )
    post = DBPostProcess(**{k: v for k, v in settings.items() if k in keep})
    n, _, height, width = prob_map.shape
    shapes = [np.array([height, width, 1.0, 1.0])] * n
    boxes, _scores = post([prob_map], shapes)
    return [np.asarray(b, dtype=np.float32).reshape(-1, 4, 2) for b in boxes]


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    from shapely.geometry import Polygon

    pa, pb = Polygon(a).buffer(0), Polygon(b).buffer(0)
    union = pa.union(pb).area
    return float(pa.intersection(pb).area / union) if union > 0 else 0.0


@dataclass
class BoxMatch:
    true_positives: int
    reference_count: int
    candidate_count: int

    @property
    def f1(self) -> float:
        total = self.reference_count + self.candidate_count
        return 1.0 if total == 0 else 2.0 * self.true_positives / total


def match_boxes(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> BoxMatch:
    """Greedy one-to-one matching, best IoU first (the usual detection-evaluation rule)."""
    pairs = sorted(
        (
            (polygon_iou(r, c), i, j)
            for i, r in enumerate(reference)
            for j, c in enumerate(candidate)
        ),
        reverse=True,
    )
    used_r: set[int] = set()
    used_c: set[int] = set()
    for iou, i, j in pairs:
        if iou < iou_threshold:
            break
        if i not in used_r and j not in used_c:
            used_r.add(i)
            used_c.add(j)
    return BoxMatch(len(used_r), len(reference), len(candidate))


def box_f1(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> float:
    return match_boxes(reference, candidate, iou_threshold).f1


# -- recognition ----------------------------------------------------------------------------


def load_postprocess_config(model_dir: Any) -> dict[str, Any]:
    """The ``PostProcess`` section of a model's inference.yml ({} when there is none);
    ``model_dir``: a resolved model (read from memory) or a model dir."""
    from ..model_resolve import model_config

    return dict(model_config(model_dir).get("PostProcess") or {})


def ctc_decode(probs: np.ndarray, character_dict: Sequence[str]) -> list[str]:
    """Greedy CTC text per batch row with PaddleX's own ``CTCLabelDecode``."""
    from paddlex.inference.models.text_recognition.processors import CTCLabelDecode

    texts, _scores = CTCLabelDecode(character_list=list(character_dict))([probs])
    return list(texts)


@dataclass
class TextAgreement:
    exact_matches: int
    count: int
    edits: int
    reference_chars: int

    @property
    def exact_match_rate(self) -> float:
        return 1.0 if self.count == 0 else self.exact_matches / self.count

    @property
    def cer(self) -> float:
        if self.reference_chars == 0:
            return 0.0 if self.edits == 0 else 1.0
        return self.edits / self.reference_chars


def text_agreement(reference: Sequence[str], candidate: Sequence[str]) -> TextAgreement:
    if len(reference) != len(candidate):
        raise ValueError(f"{len(candidate)} candidate texts for {len(reference)} references")
    edits = sum(edit_distance(r, c) for r, c in zip(reference, candidate, strict=True))
    return TextAgreement(
        exact_matches=sum(r == c for r, c in zip(reference, candidate, strict=True)),
        count=len(reference),
        edits=edits,
        reference_chars=sum(len(r) for r in reference),
    )


# -- classification -------------------------------------------------------------------------


def label_agreement(reference: np.ndarray, candidate: np.ndarray) -> tuple[int, int]:
    """(rows whose argmax labels agree, rows) of two ``[N, classes]`` score arrays."""
    ref = np.asarray(reference).reshape(reference.shape[0], -1).argmax(axis=1)
    cand = np.asarray(candidate).reshape(candidate.shape[0], -1).argmax(axis=1)
    return int((ref == cand).sum()), int(ref.size)
