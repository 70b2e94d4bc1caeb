"""Build an engine file from an ONNX model: FP16 path per TensorRT version, timing cache, OOM
back-off (halve the workspace and retry), atomic write.

The build runs with the target GPU current (TensorRT builds for, and times tactics on, the
current device). The timing cache is per TensorRT version + GPU name + compute capability (a
cache from another GPU "may lead to functional/performance bugs"), loaded strictly and merged
into the file under its lock, so concurrent builders add entries instead of overwriting them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...backend.cuda.runtime import device_scope
from ...cache.lock import lock_in
from ...cache.safedir import SafeDir
from ...errors import CacheError, EngineBuildError, OutOfMemoryError
from ...log import get_logger
from ...profiles import Profile, ShapeProfile
from . import adapter
from .config import BuildSettings

logger = get_logger("trt.builder")

MIN_WORKSPACE_BYTES = 128 << 20
#: TensorRT-RTX reports a layer whose scratch exceeds the workspace *limit* as "OutOfMemory
#: (Requested size was N bytes)" with N just above the limit, even with memory to spare (seen
#: without a GPU: the det graph's default profiles to 4000x4000 fail at 256 MiB and 1 GiB and
#: build at 4 GiB; on an H200 the fp16 det graph failed at 4 GiB). Halving would make it worse:
#: the limit is doubled instead, up to this many times and this size.
MAX_WORKSPACE_GROWTH = 3
MAX_WORKSPACE_BYTES = 64 << 30
_REQUESTED = re.compile(r"Requested size was (\d+) bytes")


def workspace_too_small(message: str, workspace_bytes: int) -> int | None:
    """The size TensorRT asked for when it exceeds the workspace limit (the limit is the cause,
    not the machine's memory), else None."""
    found = _REQUESTED.search(message)
    if found is None or int(found.group(1)) <= int(workspace_bytes):
        return None
    return int(found.group(1))


TIMING_CACHE_LOCK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class BuildResult:
    plan_path: Path
    seconds: float
    plan_bytes: int
    precision: str  # as the adapter reports it: fp32 | fp16-flag | fp16-onnx
    pinned_layers: tuple[str, ...]
    workspace_bytes: int  # the workspace of the successful attempt
    attempts: int
    tensorrt_version: str
    timing_cache_path: Path | None
    onnx_path: Path  # the ONNX actually built (the fp16 one on 11.x FP16)
    #: The profiles in the engine (the requested ones fitted to the network's fixed dims).
    profiles: tuple[dict[str, ShapeProfile], ...] = ()
    #: FP32 pin patterns that matched no layer (flag-path FP16 only).
    unmatched_pins: tuple[str, ...] = ()
    #: the network's I/O as the builder parsed it (see ``adapter.build``)
    network_io: dict | None = None
    #: TensorRT-RTX compute capability targets of the plan (empty: the builder's GPU)
    targets: tuple[str, ...] = ()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def gpu_cache_tag(device_id: int) -> str:
    """``<GPU name>-sm<major><minor>`` of ``device_id`` (the timing cache's GPU key)."""
    from ...backend.cuda.runtime import device_info

    info = device_info(device_id)
    major, minor = info.compute_capability
    return f"{info.name}-sm{major}{minor}"


def timing_cache_name(gpu_tag: str) -> str:
    """One timing cache per TensorRT version and GPU (name + compute capability): its file name."""
    if not gpu_tag:
        raise ValueError("a timing cache needs the GPU's tag (gpu_cache_tag(device_id))")
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{adapter.tensorrt_version()}-{gpu_tag}")
    return f"timing-{tag}.cache"


def timing_cache_file(timing_cache_dir: Path, gpu_tag: str) -> Path:
    """Where the timing cache of ``gpu_tag`` lives in ``timing_cache_dir`` (for messages)."""
    return Path(timing_cache_dir) / timing_cache_name(gpu_tag)


def read_timing_cache(directory: SafeDir, name: str) -> bytes | None:
    """The timing cache's bytes if it is a private file of ours, read through the held timing
    dir's descriptor (never a path), else None: TensorRT must not be fed tactic data another
    user could have planted (a link, a hard link, a file not ours is refused with a warning)."""
    try:
        return directory.read_bytes(name)
    except FileNotFoundError:
        return None
    except (OSError, CacheError) as exc:
        logger.warning("not using the TensorRT timing cache %s: %s", directory.path / name, exc)
        return None


def save_timing_cache(directory: SafeDir, name: str, new: bytes) -> None:
    """Merge ``new`` into the cache file under its lock (never overwrite others' entries);
    everything through the held timing dir's descriptor (see cache/safedir.py)."""
    with lock_in(directory, name + ".lock", TIMING_CACHE_LOCK_TIMEOUT_S, "timing cache"):
        current = read_timing_cache(directory, name) or b""
        merged = adapter.combine_timing_caches(current, new) if current else new
        directory.write_bytes(name, merged)


@contextlib.contextmanager
def _timing_dir(given: str | Path | SafeDir | None) -> Iterator[SafeDir | None]:
    """The timing cache dir as a held SafeDir: the one given (a cache's, walked to from its
    root through descriptors; the caller closes it), or a directory path of the caller's own
    (direct use of :func:`build_engine`: created 0700, its last component not followed)."""
    if given is None or isinstance(given, SafeDir):
        yield given
        return
    path = Path(given)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with SafeDir.open_path(path) as directory:
        yield directory


def _precheck(onnx_path: Path, *, strongly_typed: bool) -> None:
    """Warn, before a long build, about what TensorRT's parser is documented to reject."""
    from ...backend.onnx.trt_support import check_trt_support

    try:
        problems = check_trt_support(onnx_path, strongly_typed=strongly_typed)
    except Exception as exc:  # the check is advisory; the parser has the last word
        logger.debug("static TensorRT support check skipped for %s: %s", onnx_path.name, exc)
        return
    if problems:
        logger.warning(
            "%s: %d node(s) TensorRT's ONNX parser may reject (first: %s)",
            onnx_path.name,
            len(problems),
            "; ".join(map(str, problems[:5])),
        )


def _log_memory_estimate(onnx_path: Path, profiles: Sequence[Profile], *, float_bytes: int) -> None:
    """Log each profile's estimated context memory; warn above the per-context budget."""
    from ...backend.onnx.activation_memory import estimate_profiles
    from ...profiles import CONTEXT_BUDGET_BYTES

    try:
        estimates = estimate_profiles(onnx_path, profiles, float_bytes=float_bytes)
    except Exception as exc:  # advisory only (e.g. profiles not yet fitted to fixed dims)
        logger.debug("no activation-memory estimate for %s: %s", onnx_path.name, exc)
        return
    for est in estimates:
        level = logging.WARNING if est.peak_bytes > CONTEXT_BUDGET_BYTES else logging.INFO
        logger.log(
            level,
            "%s: a context for max shapes %s needs about %.2f GiB of activations (estimate)",
            onnx_path.name,
            est.shapes,
            est.peak_gib,
        )


def build_engine(
    onnx_path: str | Path,
    out_path: str | Path,
    settings: BuildSettings,
    profiles: Sequence[Profile],
    *,
    timing_cache_dir: str | Path | SafeDir | None = None,
    fp16_onnx_path: str | Path | None = None,
    device_id: int = 0,
    gpu_tag: str | None = None,
) -> BuildResult:
    """Build ``onnx_path`` into ``out_path``.

    FP16: TensorRT 10.x sets the FP16 builder flag on the fp32 ONNX (and pins
    ``settings.fp32_layers``); 11.x builds a strongly typed network from an fp16 ONNX, taken from
    ``fp16_onnx_path`` or, when absent, converted here with ``settings.fp32_layers`` kept fp32.
    On a builder OOM the workspace is halved and the build retried (down to 128 MiB). The build
    runs on ``device_id``; ``gpu_tag`` (default: :func:`gpu_cache_tag` of that device) keys the
    timing cache, read and merged through ``timing_cache_dir`` (a held :class:`SafeDir`, e.g. the
    descriptor an attempt's child inherits, or a directory path of the caller's own).
    """
    with _timing_dir(timing_cache_dir) as timing:
        args = (settings, profiles, timing, fp16_onnx_path, device_id, gpu_tag)
        return _build(Path(onnx_path), Path(out_path), *args)


def _build(
    onnx_path: Path,
    out_path: Path,
    settings: BuildSettings,
    profiles: Sequence[Profile],
    timing: SafeDir | None,
    fp16_onnx_path: str | Path | None,
    device_id: int,
    gpu_tag: str | None,
) -> BuildResult:
    source = onnx_path
    if settings.precision == "fp16" and adapter.fp16_needs_fp16_onnx():
        if fp16_onnx_path is None:
            from ...backend.onnx.fp16 import convert_to_fp16

            fp16_onnx_path = convert_to_fp16(
                onnx_path,
                out_path.with_suffix(".fp16.onnx"),
                keep_fp32_nodes=settings.fp32_layers,
            )
        source = Path(fp16_onnx_path)
        logger.info("TensorRT %s: FP16 from the fp16 ONNX %s", adapter.tensorrt_version(), source)

    _precheck(source, strongly_typed=adapter.fp16_needs_fp16_onnx())
    _log_memory_estimate(source, profiles, float_bytes=2 if settings.precision == "fp16" else 4)
    cache_name: str | None = None
    cache_path: Path | None = None
    cache_bytes: bytes | None = None
    if timing is not None:
        cache_name = timing_cache_name(gpu_tag if gpu_tag else gpu_cache_tag(device_id))
        cache_path = timing.path / cache_name
        cache_bytes = read_timing_cache(timing, cache_name)

    start = time.perf_counter()
    attempt_settings, attempts, growths = settings, 0, 0
    while True:
        attempts += 1
        try:
            # An ahead-of-time build for named targets (TensorRT-RTX) needs no GPU at all.
            scope = contextlib.nullcontext() if settings.targets else device_scope(device_id)
            with scope:
                out = adapter.build_serialized_engine(
                    source, attempt_settings, profiles, timing_cache=cache_bytes
                )
            break
        except OutOfMemoryError as exc:
            current = attempt_settings.workspace_bytes
            asked = workspace_too_small(str(exc), current)
            if asked is not None and growths < MAX_WORKSPACE_GROWTH:
                bigger = min(max(current * 2, asked), MAX_WORKSPACE_BYTES)
                if bigger > current:
                    growths += 1
                    logger.warning(
                        "engine build for %s: a layer needs more than the %d MiB workspace "
                        "limit (%s asked for %d bytes); retrying with %d MiB",
                        onnx_path.name,
                        current >> 20,
                        adapter.engine_label(),
                        asked,
                        bigger >> 20,
                    )
                    attempt_settings = attempt_settings.with_workspace(bigger)
                    continue
            if growths:
                raise
            half = attempt_settings.workspace_bytes // 2
            if half < MIN_WORKSPACE_BYTES:
                raise OutOfMemoryError(
                    f"engine build for {onnx_path.name} ran out of GPU memory even with a "
                    f"{attempt_settings.workspace_bytes >> 20} MiB workspace: {exc}"
                ) from exc
            logger.warning(
                "engine build for %s ran out of GPU memory with a %d MiB workspace; retrying "
                "with %d MiB",
                onnx_path.name,
                attempt_settings.workspace_bytes >> 20,
                half >> 20,
            )
            attempt_settings = attempt_settings.with_workspace(half)
    seconds = time.perf_counter() - start
    if not out.plan:
        raise EngineBuildError(f"engine build for {onnx_path.name} returned an empty plan")
    _write_atomic(out_path, out.plan)
    if timing is not None and cache_name is not None and out.timing_cache:
        with device_scope(device_id):
            save_timing_cache(timing, cache_name, out.timing_cache)
    logger.info(
        "built %s (%s %s%s, %.1f MiB) in %.1f s",
        out_path.name,
        adapter.engine_label(),
        out.precision,
        f" for {','.join(attempt_settings.targets)}" if attempt_settings.targets else "",
        len(out.plan) / (1 << 20),
        seconds,
    )
    return BuildResult(
        plan_path=out_path,
        seconds=seconds,
        plan_bytes=len(out.plan),
        precision=out.precision,
        pinned_layers=out.pinned_layers,
        workspace_bytes=attempt_settings.workspace_bytes,
        attempts=attempts,
        tensorrt_version=out.tensorrt_version,
        timing_cache_path=cache_path,
        onnx_path=source,
        profiles=out.profiles,
        unmatched_pins=out.unmatched_pins,
        network_io=out.network_io,
        targets=attempt_settings.targets,
    )
