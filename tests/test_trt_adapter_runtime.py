"""The adapter's runtime code (contexts, profile selection, enqueue) over FakeTensorRTModule.

The module is a test double (``tests/fixtures/fake_tensorrt.py``): nothing here runs TensorRT.
What is checked is the adapter's own control flow: contexts are made with ON_PROFILE_CHANGE,
the profile is selected on the stream that later runs the context and nowhere else, and a
context that cannot get memory is an OutOfMemoryError, anything else an EngineExecutionError.
"""

from __future__ import annotations

import numpy as np
import pytest

from paddleocr_trt.engines.tensorrt import adapter
from paddleocr_trt.errors import OutOfMemoryError
from paddleocr_trt.profiles import ShapeNotCoveredError

OOM_TEXT = "Requested amount of GPU memory (1073741824 bytes) could not be allocated"


def _engine(fake_trt, version: str = "11.4.0"):
    fake = fake_trt(version)
    engine = adapter.deserialize_engine(b"fake-plan")
    assert engine is not None
    return fake, engine


def test_engine_metadata_and_per_profile_memory(fake_trt) -> None:
    _, engine = _engine(fake_trt)
    assert engine.input_names == ["x"] and engine.output_names == ["y"]
    assert engine.inputs[0].dtype == np.float32
    assert engine.profile_shapes(0) == {"x": ((1, 3, 48, 32), (4, 3, 48, 320), (8, 3, 48, 640))}
    assert engine.profile_memory_size(0) == 1 << 20
    assert adapter.deserialize_engine(b"garbage") is None


def test_profile_is_selected_on_the_run_stream_only(fake_trt) -> None:
    fake, engine = _engine(fake_trt)
    enq = engine.create_enqueuer(0)
    assert fake.calls == [("create_context", "ON_PROFILE_CHANGE")]  # nothing selected yet
    with pytest.raises(adapter.EngineExecutionError, match="select_profile"):
        enq.set_input_shapes([(2, 3, 48, 320)])
    enq.select_profile(0x77)
    enq.select_profile(0x77)  # idempotent on the same stream
    assert enq.set_input_shapes([(2, 3, 48, 320)]) == [(2, 2)]
    enq.bind([1], [2])
    enq.enqueue(0x77)
    assert fake.calls[1:] == [("select", 0, 0x77), ("execute", 0, 0x77)]
    with pytest.raises(adapter.EngineExecutionError, match="selected on stream"):
        enq.enqueue(0)  # the default stream is not ordered with the selection
    with pytest.raises(adapter.EngineExecutionError, match="was selected on stream"):
        enq.select_profile(0x99)


def test_no_memory_while_selecting_the_profile_is_an_oom(fake_trt) -> None:
    fake, engine = _engine(fake_trt)
    fake.select_error = OOM_TEXT
    enq = engine.create_enqueuer(0)
    with pytest.raises(OutOfMemoryError, match="could not be allocated"):
        enq.select_profile(0x10)
    fake.select_error = "some other failure"
    with pytest.raises(adapter.EngineExecutionError, match="some other failure"):
        engine.create_enqueuer(0).select_profile(0x10)


def test_context_creation_failures(fake_trt) -> None:
    fake, engine = _engine(fake_trt)
    fake.context_error = OOM_TEXT
    with pytest.raises(OutOfMemoryError):
        engine.create_enqueuer(0)
    fake.context_error = "invalid engine"
    with pytest.raises(adapter.EngineExecutionError, match="invalid engine"):
        engine.create_enqueuer(0)


def test_shape_rejected_by_the_bindings_is_not_covered(fake_trt) -> None:
    fake, engine = _engine(fake_trt)
    enq = engine.create_enqueuer(0)
    enq.select_profile(0x10)
    with pytest.raises(ShapeNotCoveredError, match="outside the context's optimization"):
        enq.set_input_shapes([(9, 3, 48, 320)])  # batch 9 > max 8: the binding raises
    fake.enqueue_ok = False
    enq.set_input_shapes([(2, 3, 48, 320)])
    with pytest.raises(adapter.EngineExecutionError, match="execute_async_v3"):
        enq.enqueue(0x10)
