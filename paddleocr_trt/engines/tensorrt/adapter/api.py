"""The TensorRT manifest and the accessors: the only code that reaches into ``tensorrt``.

Every TensorRT name the adapter package uses is declared in :data:`TRT_API` and reached only
through :func:`_api`, :func:`_new`, :func:`_call`, :func:`_get`, :func:`_set` and :func:`_has`,
which refuse undeclared names and names not declared for the loaded major version. The
conformance test (``pytest -m trt_api``) checks every declared entry (existence, kind, argument
count and kinds) against the real 10.x and 11.x bindings and scans every module of this package
to prove no TensorRT attribute is reached any other way. Version differences live in
``versions.py``; building in ``build.py``; running in ``runtime.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import threading
from dataclasses import dataclass
from typing import Any

from ....errors import PaddleOCRTRTError, TensorRTUnavailableError
from ....log import get_logger, warn_once
from ..flavors import FLAVORS, FULL, INSTALL, LABELS, RTX

logger = get_logger("trt")

SUPPORTED_MAJORS = (10, 11)
#: TensorRT-RTX's Python API is TensorRT 11's: it is driven with the 11.x manifest entries
#: (plus the entries declared for its flavor only); its own version numbers start at 1.
RTX_API_VERSION = (11, 0)


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
    name must NOT exist (a removal the version dispatch exists for). ``flavors``: the engine
    flavors that have it (TensorRT-RTX-only entries name just that flavor). A name may carry a
    ``#tag`` to declare a second overload of one method (``create_execution_context#config``).
    """

    kind: str
    versions: tuple[int, ...] = SUPPORTED_MAJORS
    args: tuple[str, ...] = ()
    settable: bool = False
    optional: bool = False
    absent_in: tuple[int, ...] = ()
    flavors: tuple[str, ...] = FLAVORS


def _m(*args: str, versions: tuple[int, ...] = SUPPORTED_MAJORS, **kw: Any) -> Api:
    return Api("method", versions=versions, args=args, **kw)


def _e(versions: tuple[int, ...] = SUPPORTED_MAJORS, **kw: Any) -> Api:
    return Api("enum_member", versions=versions, **kw)


def _prop(settable: bool = False, versions: tuple[int, ...] = SUPPORTED_MAJORS, **kw: Any) -> Api:
    return Api("property", versions=versions, settable=settable, **kw)


_V10 = (10,)
_RTX = {"versions": (11,), "flavors": (RTX,)}
_DIAGNOSTIC_BITS = ("VERSION_MISMATCH", "UNSUPPORTED_CC", "OLD_CUDA_DRIVER", "OLD_CUDA_RUNTIME")
_DIAGNOSTIC_BITS += ("INSUFFICIENT_GPU_MEMORY", "MALFORMED_ENGINE", "CUDA_ERROR")

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
    "INetworkDefinition.num_outputs": _prop(),
    "INetworkDefinition.get_output": _m("int"),
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
    "ITimingCache.combine": _m("ITimingCache", "bool"),
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
    "ICudaEngine.create_execution_context": _m("ExecutionContextAllocationStrategy"),
    "ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE": _e(),
    "ICudaEngine.get_device_memory_size_for_profile_v2": _m("int", optional=True),
    "ICudaEngine.device_memory_size_v2": _prop(optional=True),
    "ICudaEngine.device_memory_size": _prop(versions=_V10, optional=True, absent_in=(11,)),
    "TensorIOMode.INPUT": _e(),
    "IExecutionContext.set_optimization_profile_async": _m("int", "int"),
    "IExecutionContext.set_input_shape": _m("str", "shape"),
    "IExecutionContext.get_tensor_shape": _m("str"),
    "IExecutionContext.set_tensor_address": _m("str", "int"),
    "IExecutionContext.execute_async_v3": _m("int"),
    # TensorRT-RTX only: ahead-of-time targets, engine validity, runtime config and cache
    **{f"ComputeCapability.SM{n}": _e(**_RTX) for n in (75, 80, 86, 89, 120, 121)},
    "IBuilderConfig.num_compute_capabilities": _prop(settable=True, **_RTX),
    "IBuilderConfig.set_compute_capability": _m("ComputeCapability", "int", **_RTX),
    "Runtime.get_engine_validity": _m("buffer", **_RTX),
    **{f"EngineValidity.{n}": _e(**_RTX) for n in ("VALID", "SUBOPTIMAL", "INVALID")},
    **{f"EngineInvalidityDiagnostics.{n}": _e(**_RTX) for n in _DIAGNOSTIC_BITS},
    "ICudaEngine.create_runtime_config": _m(**_RTX),
    "ICudaEngine.create_execution_context#config": _m("IRuntimeConfig", **_RTX),
    "IRuntimeConfig.set_execution_context_allocation_strategy": _m(
        "ExecutionContextAllocationStrategy", **_RTX
    ),
    "IRuntimeConfig.create_runtime_cache": _m(**_RTX),
    "IRuntimeConfig.set_runtime_cache": _m("IRuntimeCache", **_RTX),
    "IRuntimeCache.serialize": _m(**_RTX),
    "IRuntimeCache.deserialize": _m("buffer", **_RTX),
}


class EngineExecutionError(PaddleOCRTRTError):
    """TensorRT failed to run an engine (not out of memory)."""


class TensorRTApiError(TensorRTUnavailableError):
    """The adapter asked for a TensorRT name it did not declare, or one the loaded version lacks."""


# --------------------------------------------------------------------------------------------
# Loading and the accessors (the only code that reaches into the module)
# --------------------------------------------------------------------------------------------
_modules: dict[str, Any] = {}
_load_lock = threading.Lock()
#: the flavor the accessors drive when no module is passed (one per process: a child process
#: is told its flavor by its payload)
_active = [FULL]


def _module_name(flavor: str) -> str:
    """The Python module that provides ``flavor`` (the only place that names them)."""
    names = {FULL: "tensorrt", RTX: "tensorrt_rtx"}
    if flavor not in names:
        raise TensorRTApiError(f"unknown TensorRT flavor {flavor!r}; use one of {FLAVORS}")
    return names[flavor]


def flavor_installed(flavor: str) -> bool:
    """Whether the module of ``flavor`` can be found (cheap: nothing is imported)."""
    return importlib.util.find_spec(_module_name(flavor)) is not None


def select_flavor(flavor: str) -> None:
    """Drive ``flavor`` from now on in this process (``tensorrt`` or ``tensorrt-rtx``)."""
    _module_name(flavor)
    _active[0] = flavor


def active_flavor() -> str:
    return _active[0]


def flavor_of(trt: Any | None = None) -> str:
    """The flavor of a loaded module (``tensorrt-rtx`` for TensorRT-RTX's bindings)."""
    mod = _mod(trt)
    root = str(getattr(mod, "__name__", "") or "").split(".")[0]
    return RTX if root == _module_name(RTX) else FULL


def load_tensorrt(flavor: str | None = None) -> Any:
    """Import the active flavor's module once; TensorRTUnavailableError (with what to install)
    if impossible."""
    flavor = flavor or _active[0]
    with _load_lock:
        if flavor not in _modules:
            name = _module_name(flavor)
            try:
                mod = importlib.import_module(name)
            except Exception as exc:  # ImportError, OSError from missing libnvinfer
                raise TensorRTUnavailableError(
                    f"cannot import {name} ({type(exc).__name__}: {exc}); "
                    f"{INSTALL[flavor]} on an NVIDIA GPU machine"
                ) from exc
            major_version(mod)
            _modules[flavor] = mod
        return _modules[flavor]


def _mod(trt: Any | None) -> Any:
    return load_tensorrt() if trt is None else trt


def tensorrt_version(trt: Any | None = None) -> str:
    """The module's own version (TensorRT-RTX's starts at 1: pair it with the flavor)."""
    return str(_api("__version__", trt))


def engine_label(trt: Any | None = None) -> str:
    """``TensorRT 10.16.1.11`` or ``TensorRT-RTX 1.7.1.116``: for messages and reports."""
    return f"{LABELS[flavor_of(trt)]} {tensorrt_version(trt)}"


def version_tuple(trt: Any) -> tuple[int, int]:
    """(major, minor) of the TensorRT API the module has, e.g. (10, 16); feature checks use it.
    TensorRT-RTX has TensorRT 11's API whatever its own version number."""
    if str(getattr(trt, "__name__", "") or "").split(".")[0] == _module_name(RTX):
        return RTX_API_VERSION
    raw = str(getattr(trt, "__version__", "0"))
    nums = [int(n) for n in re.findall(r"\d+", raw)[:2]]
    padded = [*nums, 0, 0]
    return padded[0], padded[1]


def major_version(trt: Any) -> int:
    """The manifest major (10 or 11) the module is driven as; newer majors run as 11."""
    if str(getattr(trt, "__name__", "") or "").split(".")[0] == _module_name(RTX):
        return RTX_API_VERSION[0]
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
    if flavor_of(trt) not in entry.flavors:
        raise TensorRTApiError(f"adapter bug: {name!r} is declared for {entry.flavors} only")
    return entry


def _resolve(trt: Any, name: str) -> Any:
    obj = trt
    for part in name.partition("#")[0].split("."):
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
    if major_version(mod) not in entry.versions or flavor_of(mod) not in entry.flavors:
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
    cls_name, _, attr = name.partition("#")[0].rpartition(".")
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
    "_module_name",
    "flavor_installed",
    "flavor_of",
    "load_tensorrt",
    "version_tuple",
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
