"""Moved to :mod:`paddleocr_trt.integration.request` (the request is read below activation);
this name stays for code written against it."""

from __future__ import annotations

from ..integration.request import (  # noqa: F401
    ENGINE_KWARG,
    ENGINES_COMMON_ARG,
    PIPELINE_COMMON_ARG,
    PIPELINE_KWARG,
    TensorRTRequest,
    current,
    env_engines,
    from_common_args,
    from_engine_config,
    requested,
)
