"""One pipelined ``_OCRPipeline.predict`` call: source, stages, result assembly, in input order.

The result dicts are built by the same statements as ``_OCRPipeline.predict`` (paddlex 3.7.2)
in the same order, from the same values, so every field (texts, scores, polygons, boxes,
orientation angles, word boxes, input path, page index) comes out as stock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ..log import get_logger
from .stages import Stage, StageChain
from .steps import OCRSteps, PageItem

log = get_logger("pipelined")

#: images gathered by one orientation / rec-engine call, and their caps in crops / rows
GATHER_IMAGES = 8
GATHER_CROPS = 512
_stats_lock = threading.Lock()
_last_stats: dict[str, Any] = {}
_runs = 0


def last_run_stats() -> dict[str, Any]:
    """Counters of the latest finished pipelined run in this process (images, engine calls,
    rec rows, ``busy_ms`` per stage thread) plus ``runs``, the number of pipelined runs so far:
    tests and benchmarks use it to see that the path ran, what it merged, which stage bounds
    it."""
    with _stats_lock:
        return {**_last_stats, "runs": _runs}


def _source(steps: OCRSteps, input: Any) -> Iterator[PageItem]:
    """The pipeline's own sampler and reader, one item per image; a failure becomes an item."""
    pipe, index = steps.pipeline, 0
    batches = iter(pipe.batch_sampler(input))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            yield PageItem(index, None, None, error=exc)
            return
        try:
            images = pipe.img_reader(batch.instances)
        except Exception as exc:
            yield PageItem(index, None, None, error=exc)
            return
        for image, path, page in zip(images, batch.input_paths, batch.page_indexes, strict=True):
            item = PageItem(index, path, page, image=image)
            index += 1
            try:
                steps.det_preprocess(item)
            except Exception as exc:
                item.error = exc
            yield item
            if item.error is not None:
                return


def _each(fn):  # a per-item step as a stage function
    def run(items: list[PageItem]) -> None:
        for item in items:
            try:
                fn(item)
            except Exception as exc:
                item.error = exc

    return run


def _assemble(steps: OCRSteps, items: list[PageItem]) -> None:
    """``_OCRPipeline.predict``'s result building for each item (same statements, same order)."""
    from paddlex.inference.pipelines.components import cal_ocr_word_box, convert_points_to_boxes
    from paddlex.inference.pipelines.ocr.result import OCRResult

    s, pipe = steps.settings, steps.pipeline
    for item in items:
        try:
            res = {
                "input_path": item.input_path,
                "page_index": item.page_index,
                "doc_preprocessor_res": {"output_img": item.image},
                "dt_polys": item.sorted_polys,
                "model_settings": s["model_settings"],
                "text_det_params": steps.det_params,
                "text_type": pipe.text_type,
                "text_rec_score_thresh": s["text_rec_score_thresh"],
                "return_word_box": s["return_word_box"],
                "rec_texts": [],
                "rec_scores": [],
                "rec_polys": [],
                "vis_fonts": [],
            }
            if s["return_word_box"]:
                res["text_word"] = []
                res["text_word_region"] = []
            if item.polys is not None:
                dt_polys = item.polys
                res["dt_polys"] = dt_polys
                res["textline_orientation_angles"] = item.angles
                for sno, rec_res in enumerate(steps.rec_decode(item)):
                    if rec_res["rec_score"] >= s["text_rec_score_thresh"]:
                        if s["return_word_box"]:
                            word_box_content_list, word_box_list = cal_ocr_word_box(
                                rec_res["rec_text"][0], dt_polys[sno], rec_res["rec_text"][1]
                            )
                            res["text_word"].append(word_box_content_list)
                            res["text_word_region"].append(word_box_list)
                            res["rec_texts"].append(rec_res["rec_text"][0])
                        else:
                            res["rec_texts"].append(rec_res["rec_text"])
                        res["rec_scores"].append(rec_res["rec_score"])
                        res["vis_fonts"].append(rec_res["vis_font"])
                        res["rec_polys"].append(dt_polys[sno])
            if pipe.text_type == "general":
                res["rec_boxes"] = convert_points_to_boxes(res["rec_polys"])
                if s["return_word_box"]:
                    res["text_word_boxes"] = [
                        convert_points_to_boxes(line) for line in res["text_word_region"]
                    ]
            else:
                import numpy as np

                res["rec_boxes"] = np.array([])
            item.result = OCRResult(res)
            item.image = None
        except Exception as exc:
            item.error = exc


def run_pipelined(pipeline: Any, input: Any, det_params: dict, settings: dict) -> Iterator[Any]:
    """Yield ``OCRResult`` objects for ``input`` in input order, several images in flight."""
    global _runs, _last_stats
    steps = OCRSteps(pipeline, det_params, settings)
    crops = lambda it: len(it.crops) or 1  # noqa: E731
    rows = lambda it: sum(c.rows for c in it.chunks) or 1  # noqa: E731
    stages = [
        Stage("det", steps.det_engine, gather=max(steps.calls.det_images, steps.lanes)),
        Stage("det-post", _each(steps.det_postprocess)),
        Stage("orientation", steps.orientation, GATHER_IMAGES, crops, GATHER_CROPS, GATHER_IMAGES),
        Stage("rec-pre", _each(steps.rec_preprocess)),
        Stage("rec", steps.rec_engine, GATHER_IMAGES, rows, GATHER_CROPS, GATHER_IMAGES),
        Stage("assemble", lambda items: _assemble(steps, items)),
    ]
    chain = StageChain(_source(steps, input), stages)
    try:
        for item in chain:
            steps.stats["images"] += 1
            yield item.result
    finally:
        chain.close()
        steps.close()
        with _stats_lock:
            _runs += 1
            _last_stats = {**steps.stats, "busy_ms": {k: 1000 * v for k, v in chain.busy_s.items()}}
        log.debug("pipelined run: %s", steps.stats)
