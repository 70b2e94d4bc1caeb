"""The pipelined path's CPU lanes, with real threads: one job alone runs wide on the caller's
thread; several run side by side on one-thread lane threads; never more than ``lanes`` at once,
and a wide call never overlaps a lane call."""

from __future__ import annotations

import threading
import time

import pytest

from paddleocr_trt.backend.base import in_one_thread_lane
from paddleocr_trt.pipelined.lanes import Lanes


class _Probe:
    """Jobs that record where they ran and how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.wide_running = False
        self.overlap = False
        self.seen: list[tuple[str, bool]] = []

    def job(self, value: int, seconds: float = 0.05, wide: bool = False):
        def run() -> int:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                if self.wide_running or (wide and self.running > 1):
                    self.overlap = True
                self.wide_running = self.wide_running or wide
                self.seen.append((threading.current_thread().name, in_one_thread_lane()))
            time.sleep(seconds)
            with self.lock:
                self.running -= 1
                if wide:
                    self.wide_running = False
            return value

        return run


def _side_by_side(**stages) -> dict:
    """Run each stage function on its own thread at once; their return values by name."""
    results: dict = {}

    def run(name: str) -> None:
        results[name] = stages[name]()

    threads = [threading.Thread(target=run, args=(name,)) for name in stages]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _batches(lanes: Lanes, probe: _Probe, calls: int) -> list:
    return [lanes.run_all([probe.job(i, 0.03) for i in range(3)]) for _ in range(calls)]


@pytest.fixture
def lanes():
    lanes = Lanes(2)
    yield lanes
    lanes.close()


def test_a_job_alone_runs_wide_on_the_callers_thread(lanes: Lanes) -> None:
    probe = _Probe()
    assert lanes.run_all([probe.job(7)]) == [7]
    assert probe.seen == [(threading.current_thread().name, False)]
    assert lanes.counts == {"wide": 1, "narrow": 0}


def test_several_jobs_run_side_by_side_in_one_thread_lanes(lanes: Lanes) -> None:
    probe = _Probe()
    assert lanes.run_all([probe.job(i) for i in range(5)]) == list(range(5))
    assert probe.most == 2, "two lanes: two jobs at a time"
    assert all(name.startswith("pipelined-lane") and lane for name, lane in probe.seen)
    assert lanes.counts == {"wide": 0, "narrow": 5}


def test_a_wide_call_never_overlaps_lane_calls_from_other_stages(lanes: Lanes) -> None:
    """Two stage threads: one sends single jobs (wide when nothing runs), the other batches."""
    probe = _Probe()
    results = _side_by_side(
        singles=lambda: [lanes.run_all([probe.job(i, 0.02, wide=True)])[0] for i in range(8)],
        batches=lambda: _batches(lanes, probe, 4),
    )
    assert results["singles"] == list(range(8))
    assert results["batches"] == [[0, 1, 2]] * 4
    assert probe.most <= 2 and not probe.overlap


def test_a_failing_job_fails_the_call_after_the_others_ended(lanes: Lanes) -> None:
    probe = _Probe()

    def boom() -> None:
        raise ValueError("engine failed")

    with pytest.raises(ValueError, match="engine failed"):
        lanes.run_all([probe.job(1, 0.05), boom, probe.job(2, 0.05)])
    assert probe.running == 0
    assert lanes.run_all([probe.job(3)]) == [3], "the lanes are free again"


def test_wide_jobs_run_alone_one_after_another_on_the_callers_thread(lanes: Lanes) -> None:
    """``wide=True`` (det of a camera photo): every job waits for all lanes, runs on the caller's
    thread with the engine's full threads, never beside a lane call from another stage."""
    probe = _Probe()
    caller: dict[str, str] = {}

    def big() -> list:
        caller["name"] = threading.current_thread().name
        return lanes.run_all([probe.job(i, 0.03, wide=True) for i in range(4)], wide=True)

    results = _side_by_side(big=big, batches=lambda: _batches(lanes, probe, 3))
    assert results["big"] == [0, 1, 2, 3]
    assert results["batches"] == [[0, 1, 2]] * 3
    assert not probe.overlap, "a wide job ran beside another job"
    wide_seen = [s for s in probe.seen if not s[1]]
    assert wide_seen == [(caller["name"], False)] * 4, "wide jobs run on the caller's thread"
    assert lanes.counts["wide"] == 4 and lanes.counts["narrow"] == 9
    with pytest.raises(ValueError, match="engine failed"):
        lanes.run_all([_fail, probe.job(9)], wide=True)
    assert lanes.run_all([probe.job(3)]) == [3], "the lanes are free again"


def _fail() -> None:
    raise ValueError("engine failed")
