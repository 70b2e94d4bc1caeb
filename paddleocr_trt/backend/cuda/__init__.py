"""CUDA memory, streams, copies, CUDA graphs and OOM back-off through cuda-python.

Importing this package never imports cuda-python; the first CUDA call does.
"""

from __future__ import annotations

from .devices import DeviceGroup, DeviceSpec, group_by_model, parse_device
from .executor import CudaExecutor, Enqueuer, ExecutorStats
from .oom import run_with_backoff
from .runtime import CudaError, DeviceInfo, cuda_available, device_count, device_info

__all__ = [
    "CudaError",
    "CudaExecutor",
    "DeviceGroup",
    "DeviceInfo",
    "DeviceSpec",
    "Enqueuer",
    "ExecutorStats",
    "cuda_available",
    "device_count",
    "device_info",
    "group_by_model",
    "parse_device",
    "run_with_backoff",
]
