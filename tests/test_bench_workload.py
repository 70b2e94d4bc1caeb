"""The benchmark workload helpers: rendered pages and the engine-output replay."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from paddleocr_trt.model_types import ModelType
from paddleocr_trt.testing.pages import render_pages
from paddleocr_trt.testing.replay import ReplayRunner, set_mode


def test_pages_mix_sizes_and_are_deterministic(tmp_path) -> None:
    pages = render_pages(tmp_path / "a", 4, seed=3)
    sizes = {p.kind: Image.open(p.path).size for p in pages}
    assert sizes["document"] == (1000, 1400) and sizes["large"] == (3000, 4000)
    assert sizes["receipt"][0] == 560
    assert all(20 <= len(p.lines) <= 40 for p in pages if p.kind == "document")
    again = render_pages(tmp_path / "b", 4, seed=3)
    assert [p.path.read_bytes() for p in pages] == [p.path.read_bytes() for p in again]
    with pytest.raises(ValueError, match="at least 3"):
        render_pages(tmp_path / "c", 2)


def test_replay_answers_rows_in_any_batching_without_the_engine(onnx_models) -> None:
    from paddleocr_trt.engines.onnxruntime.runner import OnnxRuntimeRunner

    engine = OnnxRuntimeRunner(onnx_models[ModelType.CLASSIFICATION].onnx_path)
    replay = ReplayRunner(engine)
    batch = np.random.default_rng(2).random((3, 3, 48, 192), dtype=np.float32)
    set_mode([replay], "record")
    recorded = replay(x=[batch])[0]
    engine.close()  # from here on, any engine call would raise
    set_mode([replay], "replay")
    reordered = replay(x=[batch[[2, 0]]])[0]
    np.testing.assert_array_equal(reordered, recorded[[2, 0]])
    assert replay.misses == 0
    with pytest.raises(RuntimeError, match="closed"):  # an unrecorded row reaches the engine
        replay(x=[batch[:1] + 1.0])
    assert replay.misses == 1
    with pytest.raises(ValueError, match="mode"):
        set_mode([replay], "fast")
