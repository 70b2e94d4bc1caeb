"""CPU engine calls side by side: ``n`` one-thread lanes, or one wide call when it is alone.

On 2 cores, two one-thread model calls side by side beat one two-thread call after another
(rec 60 vs 75 ms a call, det 221 vs 251 ms; with other processes on the cores too), but one
one-thread call alone leaves a core idle (det 1024x1376: 477 ms alone vs 304 ms on two
threads). So a job that arrives alone while no other engine call is running takes every lane
and runs on the caller's thread with the engine's full thread count; otherwise each job takes
one lane and runs on a lane thread, where ONNX Runtime runners use a one-thread session
(``backend.base.mark_one_thread_lane``). A wide call and lane calls never overlap, so the
engines never ask for more threads than they were given. A caller can also ask for wide calls
(``run_all(..., wide=True)``): det of a camera-sized page, which is memory-bound and whose
side-by-side copies grow the engine's memory arena (4000x3000 photos, 4 a call list: ours went
from 0.75x to 1.14x stock ``engine="onnxruntime"`` images/s; CHANGELOG, issue 22).
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from ..backend.base import mark_one_thread_lane


class Lanes:
    """``lanes`` engine calls at a time (``lanes`` >= 2)."""

    def __init__(self, lanes: int) -> None:
        self.lanes = lanes
        self._free = lanes
        self._cv = threading.Condition()
        self._pool = ThreadPoolExecutor(lanes, "pipelined-lane", initializer=mark_one_thread_lane)
        #: calls made wide (alone, every lane) and narrow (one lane each), for tests and stats
        self.counts = {"wide": 0, "narrow": 0}

    def _take(self, n: int) -> None:
        with self._cv:
            while self._free < n:
                self._cv.wait()
            self._free -= n

    def _give(self, n: int) -> None:
        with self._cv:
            self._free += n
            self._cv.notify_all()

    def _narrow(self, job: Callable[[], Any]) -> Any:
        self._take(1)
        try:
            return job()
        finally:
            self._give(1)

    def _wide(self, job: Callable[[], Any]) -> Any:
        """``job`` with every lane taken, on the caller's thread (the engine's full threads)."""
        self._take(self.lanes)
        with self._cv:
            self.counts["wide"] += 1
        try:
            return job()
        finally:
            self._give(self.lanes)

    def run_all(self, jobs: list[Callable[[], Any]], *, wide: bool = False) -> list[Any]:
        """Results in job order; the first failure is raised after every job ended. Each job
        runs in a copy of the caller's context (the fused steps read their call's arguments
        from it). ``wide``: each job waits for every lane and runs alone on the engine's full
        threads, one after another (calls too big to share the memory bus and caches)."""
        if wide:  # one after another: no job is left running when one fails
            return [self._wide(job) for job in jobs]
        if len(jobs) == 1:
            with self._cv:
                alone = self._free == self.lanes
                if alone:
                    self._free = 0
                    self.counts["wide"] += 1
            if alone:
                try:
                    return [jobs[0]()]
                finally:
                    self._give(self.lanes)
        with self._cv:
            self.counts["narrow"] += len(jobs)
        futures = [
            self._pool.submit(self._narrow, functools.partial(contextvars.copy_context().run, job))
            for job in jobs
        ]
        wait(futures)  # every job ends before a failure is raised: no call left running
        return [future.result() for future in futures]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
