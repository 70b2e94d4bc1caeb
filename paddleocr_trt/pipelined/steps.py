"""The OCR pipeline's steps, cut where a model call sits, so images can share model calls.

Each step is PaddleX's own code path taken apart at its ``self.runner(x=x)`` call (read in
paddlex 3.7.2: ``TextDetRunnerPredictor.process``, ``TextRecRunnerPredictor.process``,
``_OCRPipeline.predict``): the same pre-processing objects (``pre_tfs``), post-processing
(``post_op``), sorting, cropping and rotation of the live pipeline instance, called with the
same arguments. Only the engine calls change, and only in ways that leave each image's numbers
bit-identical (NOTES.md section 7):

* det: on a GPU, same-shape inputs (PDF pages) are stacked into one call; each image's slice
  of the output is post-processed alone, as in a batch of one.
* orientation: crops of several images go to the predictor in one list (per crop it is a fixed
  80x160 resize, independent of neighbours).
* rec: PaddleX's chunks (sorted by aspect ratio, ``batch_size`` crops, padded to the widest)
  are built per image exactly as stock; chunks of *equal padded width* from several images are
  concatenated into one engine call and split again (on a CPU, calls are cut to fit the caches,
  a chunk may span calls: ``call_sizes``); each chunk is decoded alone with its own
  ``wh_ratio_list``/``max_wh_ratio`` (word boxes depend on them).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .call_sizes import CPU_CALLS, GPU_CALLS, padded_width, plan_row_calls
from .lanes import Lanes
from .rows import calls_of, join_rows, split_like_paddlex, split_rows


@dataclass
class RecChunk:
    """One PaddleX rec batch of one image: its input, decode arguments and output rows."""

    x: list[np.ndarray]
    wh_ratio_list: list[float]
    max_wh_ratio: float
    preds: list[np.ndarray] | None = None
    #: outputs of the calls this chunk's rows went to, in row order (joined into ``preds``)
    parts: list[list[Any]] = field(default_factory=list)

    @property
    def width_key(self) -> tuple:
        return tuple((a.shape[1:], a.dtype.str) for a in self.x)

    @property
    def rows(self) -> int:
        return int(self.x[0].shape[0])


@dataclass
class PageItem:
    """One input image on its way through the steps (fields filled stage by stage)."""

    index: int
    input_path: Any
    page_index: Any
    image: np.ndarray | None = None
    det_x: np.ndarray | None = None
    det_shape: Any = None
    det_preds: list[np.ndarray] | None = None
    sorted_polys: Any = None  # det polygons after the pipeline's sort
    polys: list[Any] | None = None  # polygons whose crop is not empty (None: image had none)
    crops: list[np.ndarray] = field(default_factory=list)
    angles: list[int] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # crop ids sorted by w/h, as stock
    chunks: list[RecChunk] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None


def _cls_preprocess(cls: Any, crops: list[np.ndarray]) -> list[np.ndarray]:
    """``ClasRunnerPredictor.process`` (paddlex 3.7.2) up to its runner call."""
    ops = cls.preprocessors
    imgs = ops["Resize"](imgs=ops["Read"](imgs=crops))
    if "Crop" in ops:
        imgs = ops["Crop"](imgs=imgs)
    imgs = ops["ToCHW"](imgs=ops["Normalize"](imgs=imgs))
    return list(ops["ToBatch"](imgs=imgs))


class OCRSteps:
    """The steps for one ``predict`` call of one ``_OCRPipeline`` (its models, its arguments)."""

    def __init__(self, pipeline: Any, det_params: dict, settings: dict) -> None:
        self.pipeline = pipeline
        self.det = pipeline.text_det_model
        self.rec = pipeline.text_rec_model
        self.det_params = det_params
        self.use_orientation = bool(settings["model_settings"]["use_textline_orientation"])
        self.return_word_box = bool(settings["return_word_box"])
        self.score_thresh = settings["text_rec_score_thresh"]
        self.settings = settings
        self.rec_batch = max(1, int(self.rec.batch_sampler.batch_size))
        self.stats = {
            "images": 0,
            "det_calls": 0,
            "det_wide_calls": 0,
            "cls_calls": 0,
            "rec_calls": 0,
            "rec_rows": 0,
        }
        predictors = [self.det, self.rec]
        if self.use_orientation:
            predictors.append(pipeline.textline_orientation_model)
        from ..integration.fallback import cpu_threads_of, on_cpu
        from ..integration.predictor_hook import ensure_prepared

        for predictor in predictors:  # fused engines: the steps below must be the adapted ones
            ensure_prepared(predictor)
        runners = [p.runner for p in predictors]
        cpu = all(map(on_cpu, runners))
        #: engines that all compute on the CPU share its cores: as many model calls at a time as
        #: the engines were given threads (PaddleOCR's ``cpu_threads``, capped at the cores),
        #: each on one thread in a lane (``backend.base.mark_one_thread_lane``); GPU engines
        #: run concurrently from the stage threads
        self.lanes = min(map(cpu_threads_of, runners)) if cpu else 0
        self._lanes = Lanes(self.lanes) if self.lanes > 1 else None
        one_at_a_time = cpu and self._lanes is None
        self._gate: Any = threading.Lock() if one_at_a_time else contextlib.nullcontext()
        #: call sizes that pay on these engines' device
        self.calls = CPU_CALLS if cpu else GPU_CALLS

    def close(self) -> None:
        """Let the lanes go (after the run; a call in flight finishes first)."""
        if self._lanes is not None:
            self.stats["lane_calls"] = dict(self._lanes.counts)
            self._lanes.close()

    def _run_all(self, jobs: list[Callable[[], Any]], *, wide: bool = False) -> list[Any]:
        """Run engine jobs (in the lanes where there are lanes; ``wide``: each alone on every
        lane); results in job order."""
        if self._lanes is None:
            return [job() for job in jobs]
        return self._lanes.run_all(jobs, wide=wide)

    def _engine(self, runner: Any, x: list[np.ndarray]) -> list[np.ndarray]:
        with self._gate:
            return list(runner(x=x))

    def _concat_engine(self, runner: Any, parts: list[list[np.ndarray]]) -> list[np.ndarray]:
        """One call over the batch-axis concatenation of ``parts``, concatenated straight into
        the engine's pinned input buffers when it leases them (``fusion.views``)."""
        from ..fusion.views import concat_into_views, input_view_scope

        with input_view_scope():
            return self._engine(runner, concat_into_views(runner, parts))

    # --- read + det pre-processing (TextDetRunnerPredictor.process, up to the runner) --------
    def det_preprocess(self, item: PageItem) -> None:
        det, p = self.det, self.det_params
        raw = det.pre_tfs["Read"](imgs=[item.image])
        imgs, shapes = det.pre_tfs["Resize"](
            imgs=raw,
            limit_side_len=p["limit_side_len"] or det.limit_side_len,
            limit_type=p["limit_type"] or det.limit_type,
            max_side_limit=(
                p["max_side_limit"] if p["max_side_limit"] is not None else det.max_side_limit
            ),
        )
        imgs = det.pre_tfs["Normalize"](imgs=imgs)
        imgs = det.pre_tfs["ToCHW"](imgs=imgs)
        item.det_x, item.det_shape = imgs[0], shapes[0]

    def det_engine(self, items: list[PageItem]) -> None:
        """Stack consecutive same-shape inputs (at most ``calls.det_images``) into one call."""
        groups: list[list[PageItem]] = []
        for item in items:
            last = groups[-1] if groups else None
            same = last and last[0].det_x.shape == item.det_x.shape  # type: ignore[union-attr]
            room = last and len(last) < self.calls.det_images
            if same and room and last[0].det_x.dtype == item.det_x.dtype:
                last.append(item)
            else:
                groups.append([item])
        from ..fusion.predictors import process_call
        from ..fusion.views import input_view_scope

        def call(group: list[PageItem]) -> Callable[[], list[np.ndarray]]:
            def job() -> list[np.ndarray]:
                # det's db_thresh; the stack may go straight into the engine's input buffers
                with process_call(self.det, thresh=thresh), input_view_scope():
                    x = self.det.pre_tfs["ToBatch"](imgs=[it.det_x for it in group])
                    return self._engine(self.det.runner, x)

            return job

        thresh = self.det_params["thresh"]
        # a big input (a camera photo) is memory-bound: side by side with another, each call
        # runs slower and the engine's memory arena grows by a second copy (measured: page
        # faults cost seconds of system time per 12-megapixel call), so it runs alone
        big = [i for i, g in enumerate(groups) if g[0].det_x.size >= self.calls.wide_det_values]  # type: ignore[union-attr]
        small = [i for i in range(len(groups)) if i not in big]
        outputs = dict(
            zip(big, self._run_all([call(groups[i]) for i in big], wide=True), strict=True)
        )
        outputs.update(zip(small, self._run_all([call(groups[i]) for i in small]), strict=True))
        self.stats["det_wide_calls"] += len(big)
        for group, preds in zip(groups, [outputs[i] for i in range(len(groups))], strict=True):
            self.stats["det_calls"] += 1
            for it, part in zip(group, split_rows(list(preds), [1] * len(group)), strict=True):
                it.det_preds, it.det_x = part, None

    # --- DB post-processing, sort, crop (TextDetRunnerPredictor + _OCRPipeline.predict) -------
    def det_postprocess(self, item: PageItem) -> None:
        det, p, pipe = self.det, self.det_params, self.pipeline
        polys, _scores = det.post_op(
            item.det_preds,
            [item.det_shape],
            thresh=p["thresh"] or det.thresh,
            box_thresh=p["box_thresh"] or det.box_thresh,
            unclip_ratio=p["unclip_ratio"] or det.unclip_ratio,
        )
        item.det_preds = None
        item.sorted_polys = pipe._sort_boxes(polys[0])
        if len(item.sorted_polys) == 0:
            return
        subs = list(pipe._crop_by_polys(item.image, item.sorted_polys))
        item.polys, item.crops = [], []
        for sub_img, poly in zip(subs, item.sorted_polys, strict=False):  # as stock
            if sub_img.size > 0 and sub_img.shape[0] > 0 and sub_img.shape[1] > 0:
                item.crops.append(sub_img)
                item.polys.append(poly)

    # --- text-line orientation: PaddleX's per-image chunks, engine calls shared ------------
    def orientation(self, items: list[PageItem]) -> None:
        """Angles exactly as stock computes them, engine rows shared by several images.

        Stock calls the orientation predictor once per image; it cuts the crops into chunks of
        its ``batch_size`` and (paddlex 3.7.2 ``BasePredictor.apply``) hands every crop of a
        chunk the chunk's whole ``class_ids`` array, of which the pipeline reads element 0: each
        crop gets the angle of the first crop of its chunk. The chunks are therefore formed per
        image here too and their results split by :func:`split_like_paddlex`; only the engine
        call (fixed-size input, batch-invariant rows) is shared.
        """
        with_polys = [it for it in items if it.polys is not None]
        if not self.use_orientation:
            for it in with_polys:
                it.angles = [-1] * len(it.crops)
            return
        cls = self.pipeline.textline_orientation_model
        size = max(1, int(cls.batch_sampler.batch_size))
        chunks: list[tuple[PageItem, list[np.ndarray], list[np.ndarray]]] = []
        for it in with_polys:
            for start in range(0, len(it.crops), size):
                crops = it.crops[start : start + size]
                chunks.append((it, crops, _cls_preprocess(cls, crops)))
        calls = calls_of(chunks, max(1, self.calls.rec_rows // size))
        jobs = [
            (lambda parts=[c[2] for c in call]: self._concat_engine(cls.runner, parts))
            for call in calls
        ]
        outputs: list[list[np.ndarray]] = []
        for call, preds in zip(calls, self._run_all(jobs), strict=True):
            self.stats["cls_calls"] += 1
            outputs.extend(split_rows(preds, [len(c[1]) for c in call]))
        angles: dict[int, list[int]] = {id(it): [] for it in with_polys}
        for (it, crops, _x), preds in zip(chunks, outputs, strict=True):
            class_ids, scores, label_names = cls.postprocessors["Topk"](preds, topk=cls.topk)
            pred = {
                "input_path": [None] * len(crops),
                "page_index": [None] * len(crops),
                "input_img": crops,
                "class_ids": class_ids,
                "scores": scores,
                "label_names": label_names,
            }
            angles[id(it)] += [
                int(np.asarray(info["class_ids"], dtype=np.int64).ravel()[0])
                for info in split_like_paddlex(pred)
            ]
        for it in with_polys:
            it.angles = angles[id(it)]
            it.crops = self.pipeline.rotate_image(it.crops, it.angles)

    # --- rec pre-processing per image, as PaddleX chunks it ----------------------------------
    def rec_preprocess(self, item: PageItem) -> None:
        if not item.crops:
            return
        ratios = [sub.shape[1] / float(sub.shape[0]) for sub in item.crops]
        item.order = sorted(range(len(item.crops)), key=lambda i: ratios[i])
        ordered = [item.crops[i] for i in item.order]
        for start in range(0, len(ordered), self.rec_batch):
            item.chunks.append(self._rec_chunk(ordered[start : start + self.rec_batch]))
        item.crops = []

    def _rec_chunk(self, crops: list[np.ndarray]) -> RecChunk:
        """``TextRecRunnerPredictor.process`` up to its runner call, plus its decode arguments."""
        from paddlex.inference.models.text_recognition.processors import (
            validate_text_rec_image_array,
        )

        rec = self.rec
        raw = rec.pre_tfs["Read"](imgs=crops)
        for i, img in enumerate(raw):
            validate_text_rec_image_array(img, index=i)
        indices = np.argsort(np.array([img.shape[1] / float(img.shape[0]) for img in raw]))
        x = rec.pre_tfs["ToBatch"](imgs=rec.pre_tfs["ReisizeNorm"](imgs=raw))
        image_shape = next(
            op["RecResizeImg"]["image_shape"]
            for op in rec.config["PreProcess"]["transform_ops"]
            if "RecResizeImg" in op
        )
        _c, img_h, img_w = image_shape[:3]
        max_wh_ratio = img_w / img_h
        wh_ratio_list = []
        for ino in range(min(len(raw), self.rec_batch)):
            h, w = raw[indices[ino]].shape[0:2]
            max_wh_ratio = max(max_wh_ratio, w * 1.0 / h)
            wh_ratio_list.append(w * 1.0 / h)
        return RecChunk(list(x), wh_ratio_list, max_wh_ratio)

    def rec_engine(self, items: list[PageItem]) -> None:
        """Chunks of equal padded width, from any image, share calls sized by ``self.calls``."""
        by_width: dict[tuple, list[RecChunk]] = {}
        for item in items:
            for chunk in item.chunks:
                by_width.setdefault(chunk.width_key, []).append(chunk)
        calls = []
        for chunks in by_width.values():
            width = padded_width(chunks[0].x)
            for call in plan_row_calls([c.rows for c in chunks], width, self.calls):
                calls.append([(chunks[i], start, n) for i, start, n in call])
        for call, preds in zip(
            calls, self._run_all([self._rec_job(c) for c in calls]), strict=True
        ):
            self.stats["rec_calls"] += 1
            self.stats["rec_rows"] += sum(n for _c, _s, n in call)
            counts = [n for _c, _s, n in call]
            for (chunk, _start, _n), part in zip(call, split_rows(preds, counts), strict=True):
                chunk.parts.append(part)
        for chunks in by_width.values():
            for chunk in chunks:
                chunk.preds = join_rows(chunk.parts)
                chunk.x, chunk.parts = [], []

    def _rec_job(self, call: list[tuple[RecChunk, int, int]]) -> Callable[[], list[Any]]:
        parts = [
            c.x if n == c.rows else [a[start : start + n] for a in c.x] for c, start, n in call
        ]
        if len(parts) == 1:
            return lambda: self._engine(self.rec.runner, parts[0])
        return lambda: self._concat_engine(self.rec.runner, parts)

    # --- CTC decode (TextRecRunnerPredictor.process after its runner) ------------------------
    def rec_decode(self, item: PageItem) -> list[dict]:
        """Rec results in crop order (PaddleX's ``rec_res`` fields the pipeline reads)."""
        rec = self.rec
        decoded: list[tuple[Any, Any]] = []
        for chunk in item.chunks:
            texts, scores = rec.post_op(
                chunk.preds,
                return_word_box=self.return_word_box or rec.return_word_box,
                wh_ratio_list=chunk.wh_ratio_list,
                max_wh_ratio=chunk.max_wh_ratio,
            )
            if rec.model_name in ("arabic_PP-OCRv3_mobile_rec", "arabic_PP-OCRv5_mobile_rec"):
                from paddlex.inference.models.text_recognition.predictor import get_display

                texts = [
                    (get_display(s[0]), s[1]) if isinstance(s, tuple) else get_display(s)
                    for s in texts
                ]
            decoded.extend(zip(texts, scores, strict=True))
        item.chunks = []
        by_crop: list[dict] = [{} for _ in decoded]
        for position, crop_id in enumerate(item.order):
            text, score = decoded[position]
            by_crop[crop_id] = {"rec_text": text, "rec_score": score, "vis_font": rec.vis_font}
        return by_crop
