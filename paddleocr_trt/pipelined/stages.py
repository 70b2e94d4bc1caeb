"""A chain of worker threads joined by bounded queues: images in flight, stages overlapped.

Why threads: the engines (ONNX Runtime, TensorRT through cuda-python) and most of OpenCV and
numpy release the GIL, so one image's model call overlaps another image's host work. Each stage
is one thread, so every stage sees items in input order and the output order is the input order
by construction. A stage may take several queued items at once (``gather``): that is where
images are batched together (det of same-size pages, orientation, rec chunks of equal width);
it never waits for more items than are already queued.

Errors travel as items: the item that failed carries its exception past later stages and is
raised to the caller at its position, after every earlier result, as a sequential loop would.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..log import get_logger

log = get_logger("pipelined")

_STOP = object()  # end of input, passed down the chain
_POLL_S = 0.05  # how often a blocked put/get looks at the cancel flag
_JOIN_S = 120  # longest wait for a worker to finish its current model call on close


class Cancelled(Exception):
    """The consumer went away (generator closed or an error raised); workers stop."""


@dataclass
class Stage:
    """One worker: ``fn(items)`` processes a gathered list in place (same items, same order)."""

    name: str
    fn: Callable[[list[Any]], None]
    gather: int = 1  # at most this many queued items per call
    #: optional cost of an item; a gather stops before the total passes ``budget``
    weight: Callable[[Any], int] | None = None
    budget: int = 0
    #: room in the queue in front of this stage (None: the chain's ``depth``); a gathering
    #: stage needs room for what it gathers
    queue_size: int | None = None


class StageChain:
    """Runs ``source`` through ``stages``; iterate it for the items in input order.

    Items must have an ``error`` attribute (None or an exception). ``depth`` bounds each queue,
    so at most about ``depth * (len(stages) + 1)`` items are in flight (memory stays bounded
    however long the input).
    """

    def __init__(self, source: Iterable[Any], stages: list[Stage], *, depth: int = 2) -> None:
        self._source = source
        self._stages = stages
        self._cancel = threading.Event()
        sizes = [s.queue_size or depth for s in stages] + [depth]
        self._queues: list[queue.Queue] = [queue.Queue(maxsize=n) for n in sizes]
        self._threads: list[threading.Thread] = []
        #: seconds each worker spent working (not waiting): the slowest one bounds throughput
        self.busy_s = {"source": 0.0, **{s.name: 0.0 for s in stages}}

    # --- queue helpers that give up when cancelled ---------------------------------------
    def _put(self, q: queue.Queue, item: Any) -> None:
        while not self._cancel.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise Cancelled

    def _get(self, q: queue.Queue) -> Any:
        while not self._cancel.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        raise Cancelled

    # --- workers -----------------------------------------------------------------------------
    def _feed(self) -> None:
        out = self._queues[0]
        try:
            source, clock = iter(self._source), time.perf_counter()
            for item in source:
                self.busy_s["source"] += time.perf_counter() - clock
                self._put(out, item)
                if item.error is not None:
                    break  # the source failed: nothing after it is produced
                clock = time.perf_counter()
            self._put(out, _STOP)
        except Cancelled:
            pass
        except BaseException as exc:  # a bug in the source itself: surface it, do not hang
            log.debug("pipelined source failed: %r", exc)
            self._fail(exc)

    def _work(self, index: int) -> None:
        stage, inq, outq = self._stages[index], self._queues[index], self._queues[index + 1]
        try:
            while True:
                first = self._get(inq)
                if first is _STOP:
                    self._put(outq, _STOP)
                    return
                batch, stop = self._gather(stage, inq, first)
                live = [item for item in batch if item.error is None]
                if live:
                    clock = time.perf_counter()
                    try:
                        stage.fn(live)
                    except Exception as exc:  # a stage failing on a batch fails its items
                        for item in live:
                            if item.error is None:
                                item.error = exc
                    self.busy_s[stage.name] += time.perf_counter() - clock
                for item in batch:
                    self._put(outq, item)
                if stop:
                    self._put(outq, _STOP)
                    return
        except Cancelled:
            pass
        except BaseException as exc:
            log.debug("pipelined stage %s failed: %r", stage.name, exc)
            self._fail(exc)

    def _gather(self, stage: Stage, inq: queue.Queue, first: Any) -> tuple[list[Any], bool]:
        batch, total = [first], stage.weight(first) if stage.weight else 0
        while len(batch) < stage.gather:
            if stage.weight is not None and total >= stage.budget:
                break
            try:
                item = inq.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
            if stage.weight is not None:
                total += stage.weight(item)
        return batch, False

    def _fail(self, exc: BaseException) -> None:
        """Last resort for an unexpected failure outside an item: hand it to the consumer."""
        self._cancel.set()
        try:
            self._queues[-1].put_nowait(_Failure(exc))
        except queue.Full:
            self._failure = exc

    # --- consumer ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        self._failure: BaseException | None = None
        self._threads = [threading.Thread(target=self._feed, name="pipelined-source", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work, args=(i,), name=f"pipelined-{s.name}", daemon=True)
            for i, s in enumerate(self._stages)
        ]
        for thread in self._threads:
            thread.start()
        last = self._queues[-1]
        try:
            while True:
                try:
                    item = last.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._failure is not None:
                        raise self._failure from None
                    continue
                if item is _STOP:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                if item.error is not None:
                    raise item.error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop every worker (idempotent); called when iteration ends, fails or is abandoned.

        A worker inside a model call finishes that call first (an engine call cannot be
        interrupted), so this may wait for one call per stage.
        """
        self._cancel.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=_JOIN_S)
                if thread.is_alive():
                    log.warning("pipelined worker %s still busy after %d s", thread.name, _JOIN_S)


@dataclass
class _Failure:
    exc: BaseException
