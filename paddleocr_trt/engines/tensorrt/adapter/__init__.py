"""The TensorRT adapter: every TensorRT call of the package lives in this package.

``api`` holds the declared manifest (:data:`TRT_API`) and the accessors, the only code that
reaches into ``tensorrt``; ``versions`` the 10.x/10.12+/11.x decisions; ``trtlog`` the logger and
progress monitor; ``build`` the engine build; ``runtime`` loading and running plans. Callers use
this package's names (``adapter.build_serialized_engine``, ``adapter.deserialize_engine``, ...).
"""

from __future__ import annotations

from .api import (
    ACCESSORS,
    SUPPORTED_MAJORS,
    TRT_API,
    Api,
    EngineExecutionError,
    TensorRTApiError,
    _api,
    _call,
    _get,
    _has,
    _new,
    _set,
    load_tensorrt,
    major_version,
    tensorrt_version,
    version_tuple,
)
from .build import (
    BuildOutput,
    build_serialized_engine,
    combine_timing_caches,
    fit_profiles_to_network,
)
from .runtime import Engine, TensorInfo, TrtEnqueuer, deserialize_engine
from .trtlog import OOM_MARKERS, _progress_class, is_oom_message, progress_monitor, recording_logger
from .versions import (
    STRONGLY_TYPED_FROM,
    decide_builder_flags,
    decide_device_memory_property,
    decide_layer_pinning,
    decide_network_flags,
    decide_profile_memory_method,
    decide_strongly_typed,
    fp16_needs_fp16_onnx,
    strongly_typed_for_version,
)

__all__ = [
    "ACCESSORS",
    "OOM_MARKERS",
    "STRONGLY_TYPED_FROM",
    "SUPPORTED_MAJORS",
    "TRT_API",
    "Api",
    "BuildOutput",
    "Engine",
    "EngineExecutionError",
    "TensorInfo",
    "TensorRTApiError",
    "TrtEnqueuer",
    "_api",
    "_call",
    "_get",
    "_has",
    "_new",
    "_progress_class",
    "_set",
    "build_serialized_engine",
    "combine_timing_caches",
    "decide_builder_flags",
    "decide_device_memory_property",
    "decide_layer_pinning",
    "decide_network_flags",
    "decide_profile_memory_method",
    "decide_strongly_typed",
    "deserialize_engine",
    "fit_profiles_to_network",
    "fp16_needs_fp16_onnx",
    "is_oom_message",
    "load_tensorrt",
    "major_version",
    "progress_monitor",
    "recording_logger",
    "strongly_typed_for_version",
    "tensorrt_version",
    "version_tuple",
]
