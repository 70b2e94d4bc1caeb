"""The crash ledger: which inputs were started and never finished, cluster-wide.

Ray restarts a killed actor and retries its batch (``max_restarts``/``max_task_retries``), which
is what a worker lost to an OOM kill or a node failure needs. An input that itself kills its
worker (a decoder crash, a page that exhausts memory) would be retried for ever. Workers record
here what they start and finish; a batch whose inputs were started before without finishing is
re-run one input at a time, and an input that has crashed its worker ``max_crashes`` times
becomes an error row. The ledger is a small Ray actor owned by the driver (it must outlive the
workers it watches), also used to see which worker holds what (tests, progress).
"""

from __future__ import annotations

from typing import Any

import ray


class CrashLedger:
    """Per input id: attempts started and not finished; plus each worker's start-up report."""

    def __init__(self) -> None:
        self._open: dict[int, int] = {}  # input id -> crashed-or-running attempts
        self._started: dict[int, int] = {}  # input id -> attempts ever started
        self._running: dict[int, str] = {}  # input id -> worker ("ip:pid") running it
        self._workers: list[dict[str, Any]] = []

    def peek(self, ids: list[int]) -> dict[int, int]:
        return {i: self._open.get(i, 0) for i in ids}

    def start(self, ids: list[int], worker: str) -> dict[int, int]:
        """Record a start; return each id's unfinished attempts *before* this one."""
        before = self.peek(ids)
        for i in ids:
            self._open[i] = before[i] + 1
            self._started[i] = self._started.get(i, 0) + 1
            self._running[i] = worker
        return before

    def finish(self, ids: list[int]) -> None:
        for i in ids:
            self._open.pop(i, None)
            self._running.pop(i, None)

    def attempts(self, ids: list[int]) -> dict[int, int]:
        return {i: self._started.get(i, 0) for i in ids}

    def running(self) -> dict[int, str]:
        return dict(self._running)

    def register(self, report: dict[str, Any]) -> None:
        self._workers.append(report)

    def workers(self) -> list[dict[str, Any]]:
        return list(self._workers)


def create_ledger(name: str | None = None) -> Any:
    """A ledger actor owned by the calling process (the driver); no CPU reserved."""
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": 0}
    if name:
        options.update(name=name, get_if_exists=True)
    return ray.remote(CrashLedger).options(**options).remote()
