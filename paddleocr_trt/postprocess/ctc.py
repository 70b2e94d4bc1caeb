"""CTC decoding from (argmax index, max probability), the outputs of a fused rec graph.

Why: PaddleX's ``CTCLabelDecode`` takes the full (N, T, classes) softmax, copies it with
``np.array`` and takes argmax/max on the host: 17-38 ms and 85-155 MB per page. A graph fused by
:func:`paddleocr_trt.backend.onnx.fuse.append_ctc_argmax` returns only the (N, T) index and
probability arrays; :class:`ArgmaxCTCDecoder` turns those into exactly what ``CTCLabelDecode``
returns (texts, scores, and the ``return_word_box`` tuples), so it can replace a PaddleX rec
predictor's ``post_op`` with the same call contract.

Exactness rules copied from PaddleX 3.7 ``BaseRecLabelDecode.decode``: collapse repeats, drop the
blank (index 0), score = ``np.mean`` of the kept float32 probabilities (0.0 when none),
word grouping by character class ("cn", "en&num", "symbol"), and the word-box column count
scaled by ``wh_ratio / max_wh_ratio`` per line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_BLANK = 0
_EN_NUM = re.compile("[a-zA-Z0-9]")
_DIGIT = re.compile("[0-9]")


class ArgmaxCTCDecoder:
    """Drop-in ``post_op`` for PaddleX's ``TextRecRunnerPredictor`` over a fused rec engine.

    ``character``: the full class list with the blank at index 0, as PaddleX's
    ``CTCLabelDecode.character`` holds it (``["blank", *dictionary, " "]``).
    """

    def __init__(self, character: Sequence[str], *, reverse: bool = False) -> None:
        if len(character) < 2:
            raise ValueError("character list needs the blank and at least one character")
        self.character = list(character)
        self.reverse = reverse
        self._table = np.array(self.character, dtype=object)

    @classmethod
    def from_dictionary(
        cls, dictionary: Sequence[str], *, use_space_char: bool = True
    ) -> ArgmaxCTCDecoder:
        """Build the class list the way ``CTCLabelDecode(character_list=...)`` does."""
        chars = list(dictionary) + ([" "] if use_space_char else [])
        return cls(["blank", *chars])

    def __call__(
        self, pred: Sequence[np.ndarray], return_word_box: bool = False, **kwargs: Any
    ) -> tuple[list[Any], list[float]]:
        """Same contract as ``CTCLabelDecode.__call__``: ``pred`` is the engine's output list.

        Two outputs are (index, max prob) from a fused graph; one output of rank 3 is the full
        softmax (an unfused engine), reduced here with numpy's first-index argmax.
        """
        indices, probs = self._split(pred)
        rows = self.decode(indices, probs, return_word_box=return_word_box)
        texts: list[Any] = []
        scores: list[float] = []
        for i, row in enumerate(rows):
            if return_word_box:
                info = row[2]
                info[0] = info[0] * (kwargs["wh_ratio_list"][i] / kwargs["max_wh_ratio"])
                texts.append((row[0], info))
            else:
                texts.append(row[0])
            scores.append(row[1])
        return texts, scores

    def _split(self, pred: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(pred, np.ndarray):
            pred = [pred]
        if len(pred) == 2:
            indices, probs = np.asarray(pred[0]), np.asarray(pred[1])
            if not np.issubdtype(indices.dtype, np.integer):
                raise TypeError(f"CTC indices must be integers, got {indices.dtype}")
            if indices.shape != probs.shape or indices.ndim != 2:
                raise ValueError(
                    f"CTC index/prob outputs must both be (N, T), got {indices.shape} and "
                    f"{probs.shape}"
                )
            return indices, probs
        if len(pred) == 1 and np.ndim(pred[0]) == 3:
            full = np.asarray(pred[0])
            return full.argmax(axis=-1), full.max(axis=-1)
        shapes = [np.shape(p) for p in pred]
        raise ValueError(
            f"expected (index, max prob) outputs or one (N, T, classes) softmax, got {shapes}"
        )

    def decode(
        self, indices: np.ndarray, probs: np.ndarray, *, return_word_box: bool = False
    ) -> list[tuple[Any, ...]]:
        """Rows of ``(text, score)`` or ``(text, score, [T, words, word_cols, states])``."""
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.character)):
            raise ValueError(
                f"CTC index out of range [0, {len(self.character)}): the dictionary does not "
                "match the model"
            )
        keep = indices != _BLANK
        keep[:, 1:] &= indices[:, 1:] != indices[:, :-1]
        out: list[tuple[Any, ...]] = []
        for row in range(indices.shape[0]):
            selection = keep[row]
            text = "".join(self._table[indices[row][selection]])
            conf = probs[row][selection]
            score = np.mean(conf).tolist() if len(conf) else np.mean([0]).tolist()
            if self.reverse:
                text = _reverse_ltr_runs(text)
            if return_word_box:
                words, cols, states = word_info(text, selection)
                out.append((text, score, [int(indices.shape[1]), words, cols, states]))
            else:
                out.append((text, score))
        return out


def word_info(
    text: str, selection: np.ndarray
) -> tuple[list[list[str]], list[list[int]], list[str]]:
    """Group decoded characters into words with their time-step columns (PaddleX's rules)."""
    valid_col = np.flatnonzero(selection)
    words: list[list[str]] = []
    cols: list[list[int]] = []
    states: list[str] = []
    state: str | None = None
    word: list[str] = []
    word_cols: list[int] = []
    for i, char in enumerate(text):
        if "\u4e00" <= char <= "\u9fff":
            c_state = "cn"
        elif _EN_NUM.search(char):
            c_state = "en&num"
        else:
            c_state = "symbol"
        if char == "." and state == "en&num" and i + 1 < len(text) and _DIGIT.search(text[i + 1]):
            c_state = "en&num"
        if char == "-" and state == "en&num":
            c_state = "en&num"
        if state is None:
            state = c_state
        if state != c_state:
            if word:
                words.append(word)
                cols.append(word_cols)
                states.append(state)
                word, word_cols = [], []
            state = c_state
        word.append(char)
        word_cols.append(int(valid_col[i]))
    if word:
        words.append(word)
        cols.append(word_cols)
        states.append(state)  # type: ignore[arg-type]
    return words, cols, states


def _reverse_ltr_runs(pred: str) -> str:
    """PaddleX's ``pred_reverse`` (right-to-left scripts): reverse, keeping Latin runs intact."""
    out: list[str] = []
    current = ""
    for c in pred:
        if not re.search("[a-zA-Z0-9 :*./%+-]", c):
            if current:
                out.append(current)
            out.append(c)
            current = ""
        else:
            current += c
    if current:
        out.append(current)
    return "".join(out[::-1])
