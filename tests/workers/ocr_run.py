"""Run PaddleOCR in a fresh interpreter as a user would (no import of paddleocr_trt) and print
one JSON document: init times, results (plain JSON fields), the backend report, our warnings.

Usage: python ocr_run.py '<job json>'; job keys: models (paddleocr kwargs), images (paths),
image_dir, pipelines ({label: extra kwargs}), cases (list of: single, list, dir, word_box).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time


def main() -> None:
    job = json.loads(sys.argv[1])
    log_stream = io.StringIO()
    handler = logging.StreamHandler(log_stream)
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("paddleocr_trt")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    before = sorted(m for m in sys.modules if m.startswith("paddleocr_trt.integration"))

    from paddleocr import PaddleOCR

    from paddleocr_trt.testing.results import result_fields

    out: dict = {"integration_modules_before": before, "init_seconds": {}, "results": {}}
    for label, extra in job["pipelines"].items():
        start = time.perf_counter()
        ocr = PaddleOCR(**job["models"], **extra)
        out["init_seconds"][label] = time.perf_counter() - start
        runs: dict = {}
        for case in job["cases"]:
            if case == "single":
                runs[case] = [result_fields(ocr.predict(p)[0]) for p in job["images"]]
            elif case == "list":
                runs[case] = [result_fields(r) for r in ocr.predict(job["images"])]
            elif case == "dir":
                runs[case] = [result_fields(r) for r in ocr.predict(job["image_dir"])]
            elif case == "word_box":
                runs[case] = [
                    result_fields(r) for r in ocr.predict(job["images"][:3], return_word_box=True)
                ]
        out["results"][label] = runs

    import paddleocr_trt

    out["report"] = [d.to_dict() for d in paddleocr_trt.backend_report()]
    out["log"] = log_stream.getvalue().splitlines()
    out["paddle_imported"] = "paddle" in sys.modules
    from paddleocr_trt.pipelined import last_run_stats

    out["pipelined_runs"] = last_run_stats()["runs"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
