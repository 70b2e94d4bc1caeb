"""Which backend each model actually got, and why: the demo and ``doctor`` print this."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BackendDecision:
    model_name: str
    model_dir: str | None
    backend: str  # "tensorrt" | "paddle"
    reason: str  # why this backend ("engine loaded from cache", "TensorRT is not installed", ...)
    precision: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_decisions: list[BackendDecision] = []
_lock = threading.Lock()


def record(decision: BackendDecision) -> None:
    with _lock:
        _decisions.append(decision)


def backend_report() -> list[BackendDecision]:
    """Every decision taken in this process, oldest first."""
    with _lock:
        return list(_decisions)


def clear() -> None:
    with _lock:
        _decisions.clear()
