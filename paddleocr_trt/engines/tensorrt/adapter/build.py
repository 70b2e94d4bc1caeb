"""Parse an ONNX model and build a serialized engine (TensorRT calls only; policy is in
``builder.py``): profiles fitted to the parsed network, FP32 pins, timing cache."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ....errors import EngineBuildError, OutOfMemoryError
from ....profiles import Profile, ShapeNotCoveredError, ShapeProfile, fit_static_dims
from ..config import BuildSettings
from ..flavors import RTX
from .api import (
    _api,
    _call,
    _get,
    _new,
    _set,
    engine_label,
    flavor_of,
    load_tensorrt,
    logger,
    tensorrt_version,
)
from .rtx import apply_targets
from .trtlog import is_oom_message, progress_monitor, recording_logger
from .versions import (
    decide_builder_flags,
    decide_layer_pinning,
    decide_network_flags,
    decide_strongly_typed,
)


@dataclass(frozen=True)
class BuildOutput:
    plan: bytes
    tensorrt_version: str
    precision: str  # "fp32" | "fp16-flag" (10.x builder flag) | "fp16-onnx" (typed fp16 ONNX)
    pinned_layers: tuple[str, ...]
    timing_cache: bytes | None
    input_shapes: dict[str, tuple[int, ...]]
    #: The profiles actually built (fitted to the network's fixed dims).
    profiles: tuple[dict[str, ShapeProfile], ...] = ()
    #: FP32 pin patterns that matched no layer of the network (they changed nothing).
    unmatched_pins: tuple[str, ...] = ()
    #: the network's I/O as parsed: {name: {"input": bool, "dtype": numpy name, "shape": [..]}}
    network_io: dict[str, dict[str, Any]] | None = None


def failure(what: str, errors: Sequence[str], cls: type[Exception] = EngineBuildError) -> Exception:
    """OutOfMemoryError when TensorRT's errors say so, else ``cls`` with those errors."""
    detail = "; ".join(errors[-10:]) if errors else "no error message from TensorRT"
    if any(is_oom_message(e) for e in errors):
        return OutOfMemoryError(f"{what}: GPU out of memory ({detail})")
    return cls(f"{what}: {detail}")


def _parse_onnx(parser: Any, onnx: str | Path | bytes) -> bool:
    if isinstance(onnx, (bytes, bytearray, memoryview)):
        return bool(_call(parser, "OnnxParser.parse", bytes(onnx)))
    # From a file so ONNX external-data weights next to it are found.
    return bool(_call(parser, "OnnxParser.parse_from_file", str(onnx)))


def _parser_errors(parser: Any) -> list[str]:
    out = []
    for i in range(int(_get(parser, "OnnxParser.num_errors"))):
        err = _call(parser, "OnnxParser.get_error", i)
        out.append(f"{_call(err, 'ParserError.node_name')}: {_call(err, 'ParserError.desc')}")
    return out


def _network_inputs(network: Any) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(int(_get(network, "INetworkDefinition.num_inputs"))):
        tensor = _call(network, "INetworkDefinition.get_input", i)
        shapes[str(_get(tensor, "ITensor.name"))] = tuple(_get(tensor, "ITensor.shape"))
    return shapes


def _network_io(network: Any) -> dict[str, dict[str, Any]]:
    """Names, dtypes and shapes of the parsed network's inputs and outputs (what a runner binds;
    read back so a build without a GPU still proves the engine's I/O)."""
    nptype = _api("nptype")
    io: dict[str, dict[str, Any]] = {}
    for is_input, count, get in (
        (True, "INetworkDefinition.num_inputs", "INetworkDefinition.get_input"),
        (False, "INetworkDefinition.num_outputs", "INetworkDefinition.get_output"),
    ):
        for i in range(int(_get(network, count))):
            tensor = _call(network, get, i)
            io[str(_get(tensor, "ITensor.name"))] = {
                "input": is_input,
                "dtype": np.dtype(nptype(_get(tensor, "ITensor.dtype"))).name,
                "shape": [int(d) for d in _get(tensor, "ITensor.shape")],
            }
    return io


def _pin_layers_fp32(network: Any, patterns: Sequence[str]) -> tuple[list[str], list[str]]:
    """Flag-path FP16: keep matching layers (all float outputs) in FP32.

    Returns (pinned layer names, patterns that matched no layer). Node names follow the ONNX
    parser's rule (``backend/onnx/naming.py``), so a pattern that matches nothing is a naming
    mismatch and is reported, not silently ignored.
    """
    fp32 = _api("float32")
    floats = (fp32, _api("float16"))
    pinned: list[str] = []
    matched: set[str] = set()
    for i in range(int(_get(network, "INetworkDefinition.num_layers"))):
        layer = _call(network, "INetworkDefinition.get_layer", i)
        name = str(_get(layer, "ILayer.name"))
        hits = [p for p in patterns if fnmatch.fnmatchcase(name, p)]
        if not hits:
            continue
        matched.update(hits)
        n_out = int(_get(layer, "ILayer.num_outputs"))
        outs = [_call(layer, "ILayer.get_output", k) for k in range(n_out)]
        if not outs or any(_get(t, "ITensor.dtype") not in floats for t in outs):
            continue  # shape/int layers have no precision to pin
        _set(layer, "ILayer.precision", fp32)
        for k in range(n_out):
            _call(layer, "ILayer.set_output_type", k, fp32)
        pinned.append(name)
    return pinned, [p for p in patterns if p not in matched]


def _profile_dims(sp: ShapeProfile) -> tuple[Any, Any, Any]:
    return _new("Dims", sp.min), _new("Dims", sp.opt), _new("Dims", sp.max)


def _add_profiles(
    builder: Any, config: Any, profiles: Sequence[Profile], inputs: Mapping[str, Sequence[int]]
) -> None:
    for idx, prof in enumerate(profiles):
        missing = set(inputs) - set(prof)
        if missing:
            raise EngineBuildError(f"optimization profile {idx} lacks inputs {sorted(missing)}")
        opt_profile = _call(builder, "Builder.create_optimization_profile")
        for name in inputs:
            _call(opt_profile, "IOptimizationProfile.set_shape", name, *_profile_dims(prof[name]))
        if int(_call(config, "IBuilderConfig.add_optimization_profile", opt_profile)) < 0:
            raise EngineBuildError(
                f"TensorRT rejected optimization profile {idx} "
                f"{ {n: prof[n].to_dict() for n in inputs} } for network inputs {dict(inputs)}: "
                + "; ".join(recording_logger().recorded_errors()[-5:])
            )


def _apply_timing_cache(config: Any, timing_cache: bytes | None) -> None:
    """Load the cache strictly (``ignore_mismatch=False``): a cache from another GPU or TensorRT
    is refused by TensorRT and the build starts from an empty one instead."""
    cache = _call(config, "IBuilderConfig.create_timing_cache", bytes(timing_cache or b""))
    if _call(config, "IBuilderConfig.set_timing_cache", cache, False):
        return
    logger.warning("TensorRT refused the timing cache (other GPU or version); starting empty")
    empty = _call(config, "IBuilderConfig.create_timing_cache", b"")
    _call(config, "IBuilderConfig.set_timing_cache", empty, False)


def _serialize_timing_cache(config: Any) -> bytes | None:
    cache = _call(config, "IBuilderConfig.get_timing_cache")
    if cache is None:
        return None
    return bytes(memoryview(_call(cache, "ITimingCache.serialize")))


def combine_timing_caches(current: bytes, new: bytes) -> bytes:
    """``current`` with ``new``'s entries merged in (Polygraphy's rule: never overwrite another
    process's entries). Falls back to ``new`` when TensorRT refuses to combine them (mismatch).
    Call it under the timing cache's file lock."""
    load_tensorrt()
    builder = _new("Builder", recording_logger())
    config = _call(builder, "Builder.create_builder_config")
    common = _call(config, "IBuilderConfig.create_timing_cache", bytes(current))
    incoming = _call(config, "IBuilderConfig.create_timing_cache", bytes(new))
    if not _call(common, "ITimingCache.combine", incoming, False):
        logger.warning("timing caches do not match (other GPU or version); keeping the new one")
        return bytes(new)
    return bytes(memoryview(_call(common, "ITimingCache.serialize")))


def fit_profiles_to_network(
    profiles: Sequence[Profile], inputs: Mapping[str, Sequence[int]]
) -> list[dict[str, ShapeProfile]]:
    """The profiles fitted to the parsed network's fixed dims; EngineBuildError if none fits."""
    try:
        return fit_static_dims(profiles, inputs)
    except ShapeNotCoveredError as exc:
        raise EngineBuildError(f"optimization profiles do not fit the network: {exc}") from exc


def build_serialized_engine(
    onnx: str | Path | bytes,
    settings: BuildSettings,
    profiles: Sequence[Profile],
    *,
    timing_cache: bytes | None = None,
) -> BuildOutput:
    """Parse an ONNX model and build a serialized engine on the current CUDA device.

    For FP16 on 10.12+/11.x pass the fp16 ONNX (:func:`fp16_needs_fp16_onnx`); the build then
    takes its precision from the ONNX. OutOfMemoryError when the builder ran out of GPU memory
    (the caller may retry with a smaller workspace), EngineBuildError with TensorRT's own errors
    otherwise.
    """
    trt = load_tensorrt()
    version = tensorrt_version(trt)
    log = recording_logger(trt)
    what = f"{engine_label(trt)} engine build"
    log.reset_errors()
    try:
        builder = _new("Builder", log)
    except (TypeError, RuntimeError) as exc:
        raise failure(what, [*log.recorded_errors(), f"cannot create a Builder: {exc}"]) from exc
    network = _call(builder, "Builder.create_network", decide_network_flags(trt))
    parser = _new("OnnxParser", network, log)
    if not _parse_onnx(parser, onnx):
        errs = _parser_errors(parser) + log.recorded_errors()
        raise EngineBuildError(f"{what}: ONNX parse failed: " + "; ".join(errs[:10]))
    inputs = _network_inputs(network)
    fitted = fit_profiles_to_network(profiles, inputs)

    config = _call(builder, "Builder.create_builder_config")
    _call(
        config,
        "IBuilderConfig.set_memory_pool_limit",
        _api("MemoryPoolType.WORKSPACE"),
        int(settings.workspace_bytes),
    )
    apply_targets(config, settings.targets)
    if settings.optimization_level is not None:
        _set(config, "IBuilderConfig.builder_optimization_level", int(settings.optimization_level))
    pinned: list[str] = []
    unmatched: list[str] = []
    if decide_layer_pinning(trt, settings):
        pinned, unmatched = _pin_layers_fp32(network, settings.fp32_layers)
        logger.info("keeping %d layer(s) in FP32: %s", len(pinned), ", ".join(pinned[:20]))
        if unmatched:
            logger.warning(
                "%d FP32 pin(s) match no TensorRT layer and change nothing: %s",
                len(unmatched),
                ", ".join(unmatched[:20]),
            )
    elif settings.fp32_layers and settings.precision == "fp16":
        logger.debug("TensorRT %s: FP32 layers must already be FP32 in the ONNX", version)
    for flag in decide_builder_flags(trt, settings, pinned=bool(pinned)):
        _call(config, "IBuilderConfig.set_flag", _api(flag))
    _add_profiles(builder, config, fitted, inputs)
    timing = flavor_of(trt) != RTX  # TensorRT-RTX: timing cache operations are no-ops
    if timing:
        _apply_timing_cache(config, timing_cache)
    if settings.progress:
        _set(config, "IBuilderConfig.progress_monitor", progress_monitor(trt))

    log.reset_errors()
    try:
        plan = _call(builder, "Builder.build_serialized_network", network, config)
    except MemoryError as exc:
        raise OutOfMemoryError(f"{what}: host or GPU out of memory ({exc})") from exc
    if plan is None:
        raise failure(what, log.recorded_errors())
    if settings.precision == "fp16":
        precision = "fp16-onnx" if decide_strongly_typed(trt) else "fp16-flag"
    else:
        precision = "fp32"
    return BuildOutput(
        plan=bytes(memoryview(plan)),
        tensorrt_version=version,
        precision=precision,
        pinned_layers=tuple(pinned),
        timing_cache=_serialize_timing_cache(config) if timing else None,
        input_shapes=inputs,
        profiles=tuple(fitted),
        unmatched_pins=tuple(unmatched),
        network_io=_network_io(network),
    )
