"""Stock PaddleOCR with only its model runners swapped: the baseline the end-to-end path beats.

This is what PaddleOCR's own high-performance mode does (NOTES.md section 6): PaddleX's
predictors and pipeline run untouched - float32 NCHW normalisation on the host, the full rec
softmax returned and decoded on the host, one image at a time - and only ``predictor.runner``
becomes another engine. Here that engine is an ONNX Runtime session over the *plain* converted
graph (the validated fp32 ONNX of :meth:`paddleocr_trt.pipeline.ArtifactPipeline.onnx`), so
a benchmark can put it side by side with this package's path on the same engine.

For benchmarks and tests only: the runners are timed (``take_stage_timings`` sees their engine
seconds and output bytes) but carry no fallback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PREDICTOR_ATTRS = ("text_det_model", "text_rec_model", "textline_orientation_model")


def swap_in_plain_onnxruntime(
    pipeline: Any, cache_dir: str | Path, *, threads: int | None = None
) -> list[str]:
    """Give each OCR predictor of a PaddleX ``_OCRPipeline`` (built on native Paddle) an ONNX
    Runtime CPU runner over its plain converted graph; return the model names swapped.

    Refuses a pipeline whose predictors our hook already adapted to fused graphs: that would
    not be stock any more.
    """
    from ..engines.onnxruntime.runner import OnnxRuntimeRunner
    from ..fusion.predictors import ADAPTED_ATTR
    from ..integration.report import TimedRunner
    from ..model_resolve import resolve_model
    from ..pipeline import PipelineOptions, shared_pipeline

    converter = shared_pipeline(str(cache_dir), PipelineOptions(precision="fp32"))
    swapped = []
    for attr in PREDICTOR_ATTRS:
        predictor = getattr(pipeline, attr, None)
        if predictor is None:
            continue
        if getattr(predictor, ADAPTED_ATTR, None) is not None:
            raise ValueError(f"{attr} is adapted to a fused graph; build the pipeline plain")
        model = resolve_model(Path(predictor.model_dir))
        artifact = converter.onnx(model, model.model_type)
        engine = OnnxRuntimeRunner(
            artifact.entry.read_artifact(), threads=threads, name=predictor.model_name
        )
        old = predictor.runner
        predictor.runner = TimedRunner(engine, predictor.model_name, "onnxruntime-plain")
        close = getattr(old, "close", None)
        if close is not None:
            close()
        swapped.append(predictor.model_name)
    return swapped
