"""The TensorRT adapter: every TensorRT call of the package lives in this package.

``api`` holds the declared manifest (:data:`TRT_API`) and the accessors, the only code that
reaches into ``tensorrt``; ``versions`` the 10.x/10.12+/11.x decisions; ``rtx`` the
TensorRT-RTX-only calls (build targets, engine validity, runtime cache): one adapter drives both
flavors (``select_flavor``); ``trtlog`` the logger and progress monitor; ``build`` the engine
build; ``runtime`` loading and running plans. Callers use this package's names
(``adapter.build_serialized_engine``, ``adapter.deserialize_engine``, ...).
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
    active_flavor,
    engine_label,
    flavor_installed,
    flavor_of,
    load_tensorrt,
    major_version,
    select_flavor,
    tensorrt_version,
    version_tuple,
)
from .build import (
    BuildOutput,
    build_serialized_engine,
    combine_timing_caches,
    fit_profiles_to_network,
)
from .rtx import Validity, apply_targets, engine_validity, supports_targets
from .runtime import Engine, TensorInfo, TrtEnqueuer, deserialize_engine, plan_validity
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
    "Validity",
    "_api",
    "_call",
    "_get",
    "_has",
    "_new",
    "_progress_class",
    "_set",
    "active_flavor",
    "apply_targets",
    "build_serialized_engine",
    "combine_timing_caches",
    "decide_builder_flags",
    "decide_device_memory_property",
    "decide_layer_pinning",
    "decide_network_flags",
    "decide_profile_memory_method",
    "decide_strongly_typed",
    "deserialize_engine",
    "engine_label",
    "engine_validity",
    "fit_profiles_to_network",
    "flavor_installed",
    "flavor_of",
    "fp16_needs_fp16_onnx",
    "is_oom_message",
    "load_tensorrt",
    "major_version",
    "plan_validity",
    "progress_monitor",
    "recording_logger",
    "select_flavor",
    "strongly_typed_for_version",
    "supports_targets",
    "tensorrt_version",
    "version_tuple",
]
