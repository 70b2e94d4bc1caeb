"""Reference-vs-candidate validation on real inputs, with tensor and task-level metrics."""

from __future__ import annotations

from .compare import ValidationReport, compare
from .inputs import build_validation_inputs

__all__ = ["ValidationReport", "build_validation_inputs", "compare"]
