"""The only module that touches ``tensorrt``; version-neutral over TensorRT 10.x and 11.x.

Every TensorRT name used here is declared in :data:`TRT_API` and reached only through the
accessors :func:`_api`, :func:`_new`, :func:`_call`, :func:`_get`, :func:`_set` and :func:`_has`,
which refuse undeclared names and names not declared for the loaded major version. The
conformance test (``pytest -m trt_api``) checks every declared entry (existence, kind, argument
count and kinds) against the real 10.x and 11.x bindings and scans this file's AST to prove no
TensorRT attribute is reached any other way. The 10/11 differences live in the small ``decide_*``
functions, which take the module object so the test can call them with each real version.
"""

from __future__ import annotations

import fnmatch
import importlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import (
    EngineBuildError,
    OutOfMemoryError,
    PaddleOCRTRTError,
    TensorRTUnavailableError,
)
from ...log import get_logger, warn_once
from ...profiles import Profile, ShapeNotCoveredError, ShapeProfile
from .config import BuildSettings

logger = get_logger("trt")

SUPPORTED_MAJORS = (10, 11)
OOM_MARKERS = ("out of memory", "insufficient memory", "requested amount of gpu memory")


# --------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Api:
    """One TensorRT name the adapter uses.

    kind: "module_attr" | "function" | "class" | "enum_member" | "method" | "property" |
    "override" (a method of a TensorRT base class that the adapter's subclass implements).
    ``args`` are the kinds of the positional arguments the adapter passes (self excluded; for a
    class, its constructor): "str", "int", "bool", "buffer", "shape" (tuple of ints), "dims" or
    a TensorRT class name (the annotation must name it). ``absent_in`` lists majors where the
    name must NOT exist (a removal the version dispatch exists for).
    """

    kind: str
    versions: tuple[int, ...] = SUPPORTED_MAJORS
    args: tuple[str, ...] = ()
    settable: bool = False
    optional: bool = False
    absent_in: tuple[int, ...] = ()


def _m(*args: str, versions: tuple[int, ...] = SUPPORTED_MAJORS, **kw: Any) -> Api:
    return Api("method", versions=versions, args=args, **kw)


def _e(versions: tuple[int, ...] = SUPPORTED_MAJORS, **kw: Any) -> Api:
    return Api("enum_member", versions=versions, **kw)


def _prop(settable: bool = False, versions: tuple[int, ...] = SUPPORTED_MAJORS, **kw: Any) -> Api:
    return Api("property", versions=versions, settable=settable, **kw)


_V10 = (10,)

TRT_API: dict[str, Api] = {
    # module
    "__version__": Api("module_attr"),
    "nptype": Api("function", args=("DataType",)),
    "float32": Api("module_attr"),
    "float16": Api("module_attr"),
    "Dims": Api("class", args=("shape",)),
    # logging and progress (subclassed)
    "ILogger": Api("class"),
    "ILogger.log": Api("override", args=("ILogger.Severity", "str")),
    "ILogger.Severity.INTERNAL_ERROR": _e(),
    "ILogger.Severity.ERROR": _e(),
    "ILogger.Severity.WARNING": _e(),
    "ILogger.Severity.INFO": _e(),
    "ILogger.Severity.VERBOSE": _e(),
    "IProgressMonitor": Api("class"),
    "IProgressMonitor.phase_start": Api("override", args=("str", "str", "int")),
    "IProgressMonitor.step_complete": Api("override", args=("str", "int")),
    "IProgressMonitor.phase_finish": Api("override", args=("str",)),
    # builder
    "Builder": Api("class", args=("ILogger",)),
    "Builder.create_network": _m("int"),
    "Builder.create_builder_config": _m(),
    "Builder.create_optimization_profile": _m(),
    "Builder.build_serialized_network": _m("INetworkDefinition", "IBuilderConfig"),
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": _e(),
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH": _e(versions=_V10, absent_in=(11,)),
    "OnnxParser": Api("class", args=("INetworkDefinition", "ILogger")),
    "OnnxParser.parse": _m("buffer"),
    "OnnxParser.parse_from_file": _m("str"),
    "OnnxParser.num_errors": _prop(),
    "OnnxParser.get_error": _m("int"),
    "ParserError.desc": _m(),
    "ParserError.node_name": _m(),
    "INetworkDefinition.num_inputs": _prop(),
    "INetworkDefinition.get_input": _m("int"),
    "INetworkDefinition.num_layers": _prop(),
    "INetworkDefinition.get_layer": _m("int"),
    "ITensor.name": _prop(),
    "ITensor.shape": _prop(),
    "ITensor.dtype": _prop(),
    "ILayer.name": _prop(),
    "ILayer.num_outputs": _prop(),
    "ILayer.get_output": _m("int"),
    "ILayer.precision": _prop(settable=True, versions=_V10, absent_in=(11,)),
    "ILayer.set_output_type": _m("int", "DataType", versions=_V10, absent_in=(11,)),
    "IBuilderConfig.set_memory_pool_limit": _m("MemoryPoolType", "int"),
    "MemoryPoolType.WORKSPACE": _e(),
    "IBuilderConfig.set_flag": _m("BuilderFlag"),
    "BuilderFlag.TF32": _e(),
    "BuilderFlag.FP16": _e(versions=_V10, absent_in=(11,)),
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS": _e(versions=_V10, absent_in=(11,)),
    "BuilderFlag.PREFER_PRECISION_CONSTRAINTS": _e(versions=_V10, absent_in=(11,)),
    "IBuilderConfig.builder_optimization_level": _prop(settable=True),
    "IBuilderConfig.add_optimization_profile": _m("IOptimizationProfile"),
    "IOptimizationProfile.set_shape": _m("str", "dims", "dims", "dims"),
    "IBuilderConfig.create_timing_cache": _m("buffer"),
    "IBuilderConfig.set_timing_cache": _m("ITimingCache", "bool"),
    "IBuilderConfig.get_timing_cache": _m(),
    "ITimingCache.serialize": _m(),
    "IBuilderConfig.progress_monitor": _prop(settable=True),
    # runtime
    "Runtime": Api("class", args=("ILogger",)),
    "Runtime.deserialize_cuda_engine": _m("buffer"),
    "ICudaEngine.num_io_tensors": _prop(),
    "ICudaEngine.get_tensor_name": _m("int"),
    "ICudaEngine.get_tensor_mode": _m("str"),
    "ICudaEngine.get_tensor_dtype": _m("str"),
    "ICudaEngine.get_tensor_shape": _m("str"),
    "ICudaEngine.num_optimization_profiles": _prop(),
    "ICudaEngine.get_tensor_profile_shape": _m("str", "int"),
    "ICudaEngine.create_execution_context": _m(),
    "ICudaEngine.device_memory_size_v2": _prop(optional=True),
    "ICudaEngine.device_memory_size": _prop(versions=_V10, optional=True, absent_in=(11,)),
    "TensorIOMode.INPUT": _e(),
    "IExecutionContext.set_optimization_profile_async": _m("int", "int"),
    "IExecutionContext.set_input_shape": _m("str", "shape"),
    "IExecutionContext.get_tensor_shape": _m("str"),
    "IExecutionContext.set_tensor_address": _m("str", "int"),
    "IExecutionContext.execute_async_v3": _m("int"),
}


class EngineExecutionError(PaddleOCRTRTError):
    """TensorRT failed to run an engine (not out of memory)."""


class TensorRTApiError(TensorRTUnavailableError):
    """The adapter asked for a TensorRT name it did not declare, or one the loaded version lacks."""


# --------------------------------------------------------------------------------------------
# Loading and the accessors (the only code that reaches into the module)
# --------------------------------------------------------------------------------------------
_module: Any = None
_load_lock = threading.Lock()


def load_tensorrt() -> Any:
    """Import ``tensorrt`` once; TensorRTUnavailableError (with what to install) if impossible."""
    global _module
    with _load_lock:
        if _module is None:
            try:
                mod = importlib.import_module("tensorrt")
            except Exception as exc:  # ImportError, OSError from missing libnvinfer
                raise TensorRTUnavailableError(
                    f"cannot import tensorrt ({type(exc).__name__}: {exc}); install "
                    "'paddleocr-trt[tensorrt]' (TensorRT 10.x or 11.x) on an NVIDIA GPU machine"
                ) from exc
            major_version(mod)
            _module = mod
        return _module


def _mod(trt: Any | None) -> Any:
    return load_tensorrt() if trt is None else trt


def tensorrt_version(trt: Any | None = None) -> str:
    return str(_api("__version__", trt))


def major_version(trt: Any) -> int:
    """The manifest major (10 or 11) the module is driven as; newer majors run as 11."""
    raw = str(getattr(trt, "__version__", "0"))
    try:
        major = int(raw.split(".")[0])
    except ValueError as exc:
        raise TensorRTUnavailableError(f"unreadable TensorRT version {raw!r}") from exc
    if major < SUPPORTED_MAJORS[0]:
        raise TensorRTUnavailableError(
            f"TensorRT {raw} is too old: paddleocr-trt needs TensorRT 10.x or 11.x"
        )
    if major > SUPPORTED_MAJORS[-1]:
        warn_once(
            ("trt-major", raw),
            "TensorRT %s is newer than the versions this release was checked against (10, 11); "
            "driving it as 11.x",
            raw,
        )
        return SUPPORTED_MAJORS[-1]
    return major


def _entry(name: str, trt: Any, kinds: tuple[str, ...]) -> Api:
    entry = TRT_API.get(name)
    if entry is None:
        raise TensorRTApiError(f"adapter bug: TensorRT name {name!r} is not declared in TRT_API")
    if entry.kind not in kinds:
        raise TensorRTApiError(f"adapter bug: {name!r} is a {entry.kind}, used as {kinds}")
    if name != "__version__" and major_version(trt) not in entry.versions:
        raise TensorRTApiError(
            f"adapter bug: {name!r} is declared for TensorRT {entry.versions}, "
            f"not for the loaded {getattr(trt, '__version__', '?')}"
        )
    return entry


def _resolve(trt: Any, name: str) -> Any:
    obj = trt
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _api(name: str, trt: Any | None = None) -> Any:
    """A module-level TensorRT object (class, enum member, function, attribute)."""
    mod = _mod(trt)
    _entry(name, mod, ("module_attr", "function", "class", "enum_member"))
    try:
        return _resolve(mod, name)
    except AttributeError as exc:
        raise TensorRTApiError(
            f"TensorRT {getattr(mod, '__version__', '?')} has no {name}: {exc}"
        ) from exc


def _has(name: str, trt: Any | None = None) -> bool:
    """Whether a declared name is usable with this module (declared for its major and present)."""
    mod = _mod(trt)
    entry = TRT_API.get(name)
    if entry is None:
        raise TensorRTApiError(f"adapter bug: TensorRT name {name!r} is not declared in TRT_API")
    if major_version(mod) not in entry.versions:
        return False
    try:
        _resolve(mod, name)
    except AttributeError:
        return False
    return True


def _new(name: str, *args: Any) -> Any:
    """Construct a TensorRT class with the declared number of arguments."""
    entry = _entry(name, _mod(None), ("class",))
    if len(args) != len(entry.args):
        raise TensorRTApiError(f"adapter bug: {name}() declared with {len(entry.args)} args")
    return _api(name)(*args)


def _call(obj: Any, name: str, *args: Any) -> Any:
    """Call a declared method on a TensorRT object with the declared number of arguments."""
    mod = _mod(None)
    entry = _entry(name, mod, ("method",))
    if len(args) != len(entry.args):
        raise TensorRTApiError(f"adapter bug: {name} declared with {len(entry.args)} args")
    cls_name, _, attr = name.rpartition(".")
    if not isinstance(obj, _resolve(mod, cls_name)):
        raise TensorRTApiError(f"adapter bug: {name} called on a {type(obj).__name__}")
    return getattr(obj, attr)(*args)


def _get(obj: Any, name: str) -> Any:
    _entry(name, _mod(None), ("property",))
    return getattr(obj, name.rpartition(".")[2])


def _set(obj: Any, name: str, value: Any) -> None:
    entry = _entry(name, _mod(None), ("property",))
    if not entry.settable:
        raise TensorRTApiError(f"adapter bug: {name} is not declared settable")
    setattr(obj, name.rpartition(".")[2], value)


#: The functions allowed to use getattr/setattr/importlib (the AST test enforces this).
ACCESSORS = (
    "load_tensorrt",
    "major_version",
    "_entry",
    "_resolve",
    "_api",
    "_has",
    "_new",
    "_call",
    "_get",
    "_set",
)


# --------------------------------------------------------------------------------------------
# Version dispatch: pure decisions, given the module
# --------------------------------------------------------------------------------------------
def decide_strongly_typed(trt: Any) -> bool:
    """11.x networks are always strongly typed (no FP16 builder flag exists there)."""
    return major_version(trt) >= 11


def decide_network_flags(trt: Any) -> int:
    """Creation flags: STRONGLY_TYPED on 11.x; the (no-op but still accepted) EXPLICIT_BATCH on
    10.x releases that still have it. Bit positions come from the enum, never literals."""
    if decide_strongly_typed(trt):
        return 1 << int(_api("NetworkDefinitionCreationFlag.STRONGLY_TYPED", trt))
    if _has("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", trt):
        return 1 << int(_api("NetworkDefinitionCreationFlag.EXPLICIT_BATCH", trt))
    return 0


def decide_builder_flags(trt: Any, settings: BuildSettings, *, pinned: bool) -> list[str]:
    """Manifest names of the BuilderFlags to set. FP16 and precision constraints are 10.x only:
    on 11.x precision comes from the (fp16) ONNX itself."""
    flags: list[str] = []
    if settings.tf32:
        flags.append("BuilderFlag.TF32")
    if not decide_strongly_typed(trt):
        if settings.precision == "fp16":
            flags.append("BuilderFlag.FP16")
        if pinned:
            flags.append(
                "BuilderFlag.OBEY_PRECISION_CONSTRAINTS"
                if settings.obey_precision_constraints
                else "BuilderFlag.PREFER_PRECISION_CONSTRAINTS"
            )
    return flags


def decide_layer_pinning(trt: Any, settings: BuildSettings) -> bool:
    """Per-layer FP32 pinning in the network is possible (and needed) only for 10.x FP16."""
    return (
        settings.precision == "fp16"
        and bool(settings.fp32_layers)
        and not decide_strongly_typed(trt)
    )


def fp16_needs_fp16_onnx(trt: Any | None = None) -> bool:
    """True when an FP16 engine must be built from an fp16 ONNX (11.x)."""
    return decide_strongly_typed(_mod(trt))


def decide_device_memory_property(trt: Any) -> str | None:
    """``device_memory_size_v2`` (10.x later releases, 11.x), else the 10.x original."""
    if _has("ICudaEngine.device_memory_size_v2", trt):
        return "ICudaEngine.device_memory_size_v2"
    if _has("ICudaEngine.device_memory_size", trt):
        return "ICudaEngine.device_memory_size"
    return None


# --------------------------------------------------------------------------------------------
# Logger and progress monitor (subclasses of the bindings' trampolines)
# --------------------------------------------------------------------------------------------
def is_oom_message(message: str) -> bool:
    low = message.lower()
    return any(marker in low for marker in OOM_MARKERS)


def _logger_class(trt: Any) -> type:
    base = _api("ILogger", trt)
    severities = {
        "INTERNAL_ERROR": _api("ILogger.Severity.INTERNAL_ERROR", trt),
        "ERROR": _api("ILogger.Severity.ERROR", trt),
        "WARNING": _api("ILogger.Severity.WARNING", trt),
        "INFO": _api("ILogger.Severity.INFO", trt),
        "VERBOSE": _api("ILogger.Severity.VERBOSE", trt),
    }
    errors_ = (severities["INTERNAL_ERROR"], severities["ERROR"])
    to_py = {
        severities["INTERNAL_ERROR"]: 40,
        severities["ERROR"]: 40,
        severities["WARNING"]: 30,
        severities["INFO"]: 10,
        severities["VERBOSE"]: 5,
    }

    class RecordingLogger(base):  # type: ignore[misc, valid-type]
        """Forwards TensorRT messages to the package logger and keeps the errors per thread.

        One instance per process: TensorRT keeps the first logger it was given and ignores
        later ones, so a logger per build would record nothing.
        """

        def __init__(self) -> None:
            base.__init__(self)
            self._local = threading.local()

        def _errors(self) -> list[str]:
            return self._local.__dict__.setdefault("errors", [])

        def log(self, severity: Any, msg: str) -> None:
            if severity in errors_:
                errs = self._errors()
                errs.append(str(msg))
                del errs[:-50]
            logger.log(to_py.get(severity, 10), "TensorRT: %s", msg)

        def recorded_errors(self) -> list[str]:
            """Errors logged on the calling thread since :meth:`reset_errors`."""
            return list(self._errors())

        def reset_errors(self) -> None:
            self._errors().clear()

    return RecordingLogger


def _progress_class(trt: Any) -> type:
    base = _api("IProgressMonitor", trt)

    class LoggingProgressMonitor(base):  # type: ignore[misc, valid-type]
        """Logs build phases (top level at INFO) and step progress at most every few seconds."""

        def __init__(self, throttle_s: float = 5.0) -> None:
            base.__init__(self)
            self._throttle_s = throttle_s
            self._last = 0.0
            self._steps: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._steps[phase_name] = int(num_steps)
            level = 20 if parent_phase is None else 10
            logger.log(level, "TensorRT build: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            now = time.monotonic()
            if now - self._last >= self._throttle_s:
                self._last = now
                total = self._steps.get(phase_name, 0)
                logger.info("TensorRT build: %s step %d/%d", phase_name, step + 1, total)
            return True

        def phase_finish(self, phase_name: str) -> None:
            self._steps.pop(phase_name, None)
            logger.debug("TensorRT build: %s done", phase_name)

    return LoggingProgressMonitor


_class_cache: dict[tuple[int, str], type] = {}
_loggers: dict[int, Any] = {}


def recording_logger(trt: Any | None = None) -> Any:
    """The process-wide recording logger for this module (created on first use)."""
    mod = _mod(trt)
    with _load_lock:
        if id(mod) not in _loggers:
            _loggers[id(mod)] = _logger_class(mod)()
        return _loggers[id(mod)]


def progress_monitor(trt: Any | None = None) -> Any:
    mod = _mod(trt)
    key = (id(mod), "progress")
    if key not in _class_cache:
        _class_cache[key] = _progress_class(mod)
    return _class_cache[key]()


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildOutput:
    plan: bytes
    tensorrt_version: str
    precision: str  # "fp32" | "fp16-flag" (10.x builder flag) | "fp16-onnx" (11.x typed ONNX)
    pinned_layers: tuple[str, ...]
    timing_cache: bytes | None
    input_shapes: dict[str, tuple[int, ...]]


def _failure(
    what: str, errors: Sequence[str], cls: type[Exception] = EngineBuildError
) -> Exception:
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


def _pin_layers_fp32(network: Any, patterns: Sequence[str]) -> list[str]:
    """10.x: keep matching layers (all float outputs) in FP32; returns the pinned names."""
    fp32 = _api("float32")
    floats = (fp32, _api("float16"))
    pinned: list[str] = []
    for i in range(int(_get(network, "INetworkDefinition.num_layers"))):
        layer = _call(network, "INetworkDefinition.get_layer", i)
        name = str(_get(layer, "ILayer.name"))
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        n_out = int(_get(layer, "ILayer.num_outputs"))
        outs = [_call(layer, "ILayer.get_output", k) for k in range(n_out)]
        if not outs or any(_get(t, "ITensor.dtype") not in floats for t in outs):
            continue  # shape/int layers have no precision to pin
        _set(layer, "ILayer.precision", fp32)
        for k in range(n_out):
            _call(layer, "ILayer.set_output_type", k, fp32)
        pinned.append(name)
    return pinned


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
        _call(config, "IBuilderConfig.add_optimization_profile", opt_profile)


def _apply_timing_cache(config: Any, timing_cache: bytes | None) -> None:
    cache = _call(config, "IBuilderConfig.create_timing_cache", bytes(timing_cache or b""))
    if not _call(config, "IBuilderConfig.set_timing_cache", cache, True):
        logger.warning("TensorRT refused the timing cache; building without it")


def _serialize_timing_cache(config: Any) -> bytes | None:
    cache = _call(config, "IBuilderConfig.get_timing_cache")
    if cache is None:
        return None
    return bytes(memoryview(_call(cache, "ITimingCache.serialize")))


def build_serialized_engine(
    onnx: str | Path | bytes,
    settings: BuildSettings,
    profiles: Sequence[Profile],
    *,
    timing_cache: bytes | None = None,
) -> BuildOutput:
    """Parse an ONNX model and build a serialized engine.

    For FP16 on 11.x pass the fp16 ONNX (:func:`fp16_needs_fp16_onnx`); the build then takes its
    precision from the ONNX. OutOfMemoryError when the builder ran out of GPU memory (the caller
    may retry with a smaller workspace), EngineBuildError with TensorRT's own errors otherwise.
    """
    trt = load_tensorrt()
    version = tensorrt_version(trt)
    log = recording_logger(trt)
    what = f"TensorRT {version} engine build"
    log.reset_errors()
    try:
        builder = _new("Builder", log)
    except (TypeError, RuntimeError) as exc:
        raise _failure(what, [*log.recorded_errors(), f"cannot create a Builder: {exc}"]) from exc
    network = _call(builder, "Builder.create_network", decide_network_flags(trt))
    parser = _new("OnnxParser", network, log)
    if not _parse_onnx(parser, onnx):
        errs = _parser_errors(parser) + log.recorded_errors()
        raise EngineBuildError(f"{what}: ONNX parse failed: " + "; ".join(errs[:10]))
    inputs = _network_inputs(network)

    config = _call(builder, "Builder.create_builder_config")
    _call(
        config,
        "IBuilderConfig.set_memory_pool_limit",
        _api("MemoryPoolType.WORKSPACE"),
        int(settings.workspace_bytes),
    )
    if settings.optimization_level is not None:
        _set(config, "IBuilderConfig.builder_optimization_level", int(settings.optimization_level))
    pinned: list[str] = []
    if decide_layer_pinning(trt, settings):
        pinned = _pin_layers_fp32(network, settings.fp32_layers)
        logger.info("keeping %d layer(s) in FP32: %s", len(pinned), ", ".join(pinned[:20]))
    elif settings.fp32_layers and settings.precision == "fp16":
        logger.debug("TensorRT %s: FP32 layers must already be FP32 in the ONNX", version)
    for flag in decide_builder_flags(trt, settings, pinned=bool(pinned)):
        _call(config, "IBuilderConfig.set_flag", _api(flag))
    _add_profiles(builder, config, profiles, inputs)
    _apply_timing_cache(config, timing_cache)
    if settings.progress:
        _set(config, "IBuilderConfig.progress_monitor", progress_monitor(trt))

    log.reset_errors()
    try:
        plan = _call(builder, "Builder.build_serialized_network", network, config)
    except MemoryError as exc:
        raise OutOfMemoryError(f"{what}: host or GPU out of memory ({exc})") from exc
    if plan is None:
        raise _failure(what, log.recorded_errors())
    if settings.precision == "fp16":
        precision = "fp16-onnx" if decide_strongly_typed(trt) else "fp16-flag"
    else:
        precision = "fp32"
    return BuildOutput(
        plan=bytes(memoryview(plan)),
        tensorrt_version=version,
        precision=precision,
        pinned_layers=tuple(pinned),
        timing_cache=_serialize_timing_cache(config),
        input_shapes=inputs,
    )


# --------------------------------------------------------------------------------------------
# Runtime
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 = dynamic


class Engine:
    """A deserialized engine plus the runtime and logger that must outlive it."""

    def __init__(self, runtime: Any, engine: Any, log: Any) -> None:
        self._runtime = runtime
        self._engine = engine
        self._log = log
        names = [
            str(_call(engine, "ICudaEngine.get_tensor_name", i))
            for i in range(int(_get(engine, "ICudaEngine.num_io_tensors")))
        ]
        self.tensors = [_tensor_info(engine, n) for n in names]
        self.input_names = [n for n, t in zip(names, self.tensors, strict=True) if t.is_input]
        self.output_names = [n for n, t in zip(names, self.tensors, strict=True) if not t.is_input]

    @property
    def inputs(self) -> list[TensorInfo]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [t for t in self.tensors if not t.is_input]

    @property
    def num_profiles(self) -> int:
        return int(_get(self._engine, "ICudaEngine.num_optimization_profiles"))

    def profile_shapes(self, index: int) -> dict[str, tuple[tuple[int, ...], ...]]:
        """{input: (min, opt, max)} of profile ``index`` as stored in the engine."""
        return {
            n: tuple(
                tuple(d)
                for d in _call(self._engine, "ICudaEngine.get_tensor_profile_shape", n, index)
            )
            for n in self.input_names
        }

    def device_memory_size(self) -> int | None:
        name = decide_device_memory_property(load_tensorrt())
        return None if name is None else int(_get(self._engine, name))

    def create_enqueuer(self, profile_index: int = 0) -> TrtEnqueuer:
        """An execution context bound to one profile, wrapped as the CUDA layer's Enqueuer."""
        ctx = _call(self._engine, "ICudaEngine.create_execution_context")
        if ctx is None:
            raise _failure(
                "creating a TensorRT execution context",
                self._log.recorded_errors(),
                EngineExecutionError,
            )
        # Stream 0 is fine here: nothing else is queued for this context yet.
        if not _call(ctx, "IExecutionContext.set_optimization_profile_async", profile_index, 0):
            raise EngineExecutionError(
                f"cannot select optimization profile {profile_index}: "
                + "; ".join(self._log.recorded_errors()[-5:])
            )
        return TrtEnqueuer(ctx, self.input_names, self.output_names, self._log)


def _tensor_info(engine: Any, name: str) -> TensorInfo:
    mode = _call(engine, "ICudaEngine.get_tensor_mode", name)
    trt_dtype = _call(engine, "ICudaEngine.get_tensor_dtype", name)
    return TensorInfo(
        name=name,
        is_input=mode == _api("TensorIOMode.INPUT"),
        dtype=np.dtype(_api("nptype")(trt_dtype)),
        shape=tuple(int(d) for d in _call(engine, "ICudaEngine.get_tensor_shape", name)),
    )


def deserialize_engine(plan: bytes) -> Engine | None:
    """None when TensorRT cannot load the plan (other TensorRT version or GPU, corrupt bytes):
    a cache miss, never a crash."""
    trt = load_tensorrt()
    log = recording_logger(trt)
    log.reset_errors()
    try:
        runtime = _new("Runtime", log)
        engine = _call(runtime, "Runtime.deserialize_cuda_engine", bytes(plan))
    except (RuntimeError, TypeError, ValueError) as exc:
        logger.info("TensorRT could not load the plan (%s); treating it as a cache miss", exc)
        return None
    if engine is None:
        logger.info(
            "TensorRT %s could not load the plan (%s); treating it as a cache miss",
            tensorrt_version(trt),
            "; ".join(log.recorded_errors()[-3:]) or "no reason given",
        )
        return None
    return Engine(runtime, engine, log)


class TrtEnqueuer:
    """The CUDA layer's ``Enqueuer`` over one IExecutionContext (one optimization profile)."""

    def __init__(
        self,
        context: Any,
        input_names: Sequence[str],
        output_names: Sequence[str],
        log: Any,
    ) -> None:
        self._ctx = context
        self._in = list(input_names)
        self._out = list(output_names)
        self._log = log

    def set_input_shapes(self, shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, ...]]:
        if len(shapes) != len(self._in):
            raise ValueError(f"expected {len(self._in)} input shapes, got {len(shapes)}")
        for name, shape in zip(self._in, shapes, strict=True):
            dims = tuple(int(d) for d in shape)
            if not _call(self._ctx, "IExecutionContext.set_input_shape", name, dims):
                raise ShapeNotCoveredError(
                    f"TensorRT rejected shape {dims} for input {name!r}: outside the context's "
                    "optimization profile"
                )
        result = []
        for name in self._out:
            out_shape = tuple(
                int(d) for d in _call(self._ctx, "IExecutionContext.get_tensor_shape", name)
            )
            if any(d < 0 for d in out_shape):
                raise ShapeNotCoveredError(f"output {name!r} shape unresolved: {out_shape}")
            result.append(out_shape)
        return result

    def bind(self, input_ptrs: Sequence[int], output_ptrs: Sequence[int]) -> None:
        for name, ptr in zip([*self._in, *self._out], [*input_ptrs, *output_ptrs], strict=True):
            if not _call(self._ctx, "IExecutionContext.set_tensor_address", name, int(ptr)):
                raise EngineExecutionError(f"TensorRT refused the device address of {name!r}")

    def enqueue(self, stream_handle: int) -> None:
        self._log.reset_errors()
        if not _call(self._ctx, "IExecutionContext.execute_async_v3", int(stream_handle)):
            raise _failure(
                "TensorRT execute_async_v3", self._log.recorded_errors(), EngineExecutionError
            )
