"""PaddleOCR device strings -> GPU ids, and GPU ids grouped by model.

A TensorRT engine is valid for one GPU model (name + compute capability), so on a machine with
several identical GPUs one build serves them all; different models need their own engines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .runtime import DeviceInfo, device_info

#: PaddleX's device types (paddlex.utils.device.SUPPORTED_DEVICE_TYPE); only "gpu" is CUDA.
DEVICE_TYPES = ("cpu", "gpu", "xpu", "npu", "mlu", "gcu", "dcu", "iluvatar_gpu", "metax_gpu")


@dataclass(frozen=True)
class DeviceSpec:
    device_type: str
    #: None when the string named no ids ("gpu"): PaddleX then uses device 0.
    device_ids: tuple[int, ...] | None = None

    @property
    def is_cuda(self) -> bool:
        return self.device_type == "gpu"

    @property
    def gpu_ids(self) -> tuple[int, ...]:
        """CUDA device ids this spec runs on; () for non-GPU devices."""
        if not self.is_cuda:
            return ()
        return self.device_ids if self.device_ids is not None else (0,)


def parse_device(device: str) -> DeviceSpec:
    """Parse ``"gpu"``, ``"gpu:0"``, ``"gpu:0,1"``, ``"cpu"`` (PaddleX's syntax, same errors)."""
    text = device.strip()
    parts = text.split(":")
    if len(parts) > 2 or not parts[0]:
        raise ValueError(f"Invalid device: {device!r}")
    device_type = parts[0].strip().lower()
    if device_type not in DEVICE_TYPES:
        raise ValueError(f"Unsupported device type {device_type!r} in {device!r}")
    if len(parts) == 1:
        return DeviceSpec(device_type)
    raw_ids = [p.strip() for p in parts[1].split(",")]
    if not all(p.isdigit() for p in raw_ids):
        raise ValueError(f"Device ids must be integers: {device!r}")
    if device_type == "cpu":
        raise ValueError(f"No device id should be specified for CPUs: {device!r}")
    ids = tuple(int(p) for p in raw_ids)
    if len(set(ids)) != len(ids):
        raise ValueError(f"Repeated device id in {device!r}")
    return DeviceSpec(device_type, ids)


@dataclass(frozen=True)
class DeviceGroup:
    """Devices that can share one engine build."""

    name: str
    compute_capability: tuple[int, int]
    device_ids: tuple[int, ...]


def group_by_model(
    device_ids: Sequence[int], info: Callable[[int], DeviceInfo] = device_info
) -> list[DeviceGroup]:
    """Group ids by (name, compute capability), in order of first appearance."""
    groups: dict[tuple[str, tuple[int, int]], list[int]] = {}
    for device_id in device_ids:
        d = info(device_id)
        groups.setdefault((d.name, d.compute_capability), []).append(device_id)
    return [DeviceGroup(name, cc, tuple(ids)) for (name, cc), ids in groups.items()]
