"""The pipelined multi-image OCR path (issue 11): several images in flight, stages overlapped.

``PaddleOCR.predict``/``predict_iter`` (and PaddleX's OCR pipeline) given several images (a
list, a directory, PDF or TIFF pages) with every model on our engines run here instead of
PaddleX's one-image-at-a-time loop: reading and det pre-processing, det, DB post-processing and
cropping, text-line orientation, rec pre-processing, rec, and decoding/assembly each run on their
own thread; orientation calls and equal-width rec chunks are shared by several images, same-size
det inputs are stacked. Results are those of stock PaddleOCR, field by field, in input order.

Off switches: ``PADDLEOCR_TRT_PIPELINE=0`` (read at each call) or ``PaddleOCR(...,
trt_pipeline=False)``. :mod:`.patch` says when the stock path is kept.
"""

from .run import last_run_stats

__all__ = ["last_run_stats"]
