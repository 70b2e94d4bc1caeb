"""TensorRTRunner's input leases (zero-copy producer input), driven through test doubles.

Nothing here runs TensorRT or a GPU: the adapter and executor are the named doubles of
``fixtures.trt_runner_doubles`` (:class:`ViewExecutorDouble` keeps CudaExecutor's input contract:
views over its own buffers are used in place, other arrays are copied in, and the model reads
the buffers after a delay, so an overwritten buffer changes a result). The "engine" is the real
text-line orientation model on ONNX Runtime, and so is the fallback: every output compared is a
real model output. The real executor's side is tested on a GPU (tests/gpu).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import numpy as np
import pytest
from fixtures.trt_runner_doubles import (
    ViewAdapterDouble,
    ViewExecutorDouble,
    cls_batch,
    make_runner,
)

from paddleocr_trt.engines.tensorrt import input_views as input_views_mod
from paddleocr_trt.engines.tensorrt.runner import TensorRTRunner
from paddleocr_trt.fusion.views import concat_into_views, input_view_scope, leased_views
from paddleocr_trt.profiles import ShapeProfile

#: Profile 0: 48x192 inputs, batch <= 4; profile 1: widths 32..640, batch <= 8.
PROFILES = [
    ShapeProfile((1, 3, 48, 192), (4, 3, 48, 192), (4, 3, 48, 192)),
    ShapeProfile((1, 3, 48, 32), (2, 3, 48, 320), (8, 3, 48, 640)),
]


def _runner(monkeypatch, fake: ViewAdapterDouble, fallback=None) -> TensorRTRunner:
    return make_runner(monkeypatch, fake, ViewExecutorDouble, "cls-views", fallback=fallback)


def _executor(fake: ViewAdapterDouble, index: int) -> Any:
    return [e for e in fake.executors if e.index == index][-1]


def _same_buffer(a: np.ndarray, b: np.ndarray) -> bool:
    """The same memory as the same array (the runner may re-wrap it, never copy it)."""
    return a.ctypes.data == b.ctypes.data and a.shape == b.shape and a.dtype == b.dtype


def test_the_producers_array_is_what_the_executor_runs(monkeypatch, cls_onnx, cls_fallback) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    with _runner(monkeypatch, fake) as runner:
        lease = runner.input_views([(3, 3, 48, 192)])
        assert lease is not None and lease.index == 0
        (view,) = lease.views
        view[...] = cls_batch(3)  # the producer writes in place
        (out,) = runner.infer(lease.views)
        ex = _executor(fake, 0)
        assert _same_buffer(ex.last_inputs[0], view) and np.shares_memory(view, ex.buffers[0])
        assert (ex.zero_copy_inputs, ex.staged_inputs) == (1, 0)
        assert lease.released  # the call consumed it
        (plain,) = runner.infer([cls_batch(3)])  # an ordinary array is copied in, as before
        assert (ex.zero_copy_inputs, ex.staged_inputs) == (1, 1)
        wide = runner.input_views([(2, 3, 48, 320)])  # the profile infer picks: 1
        assert wide is not None and wide.index == 1
        wide.release()
    expected = cls_fallback.infer([cls_batch(3)])[0]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out, plain)


def test_no_views_where_one_context_would_not_run_the_call(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    with _runner(monkeypatch, fake, fallback=cls_fallback) as runner:
        assert runner.input_views([(1, 3, 48, 1024)]) is None  # no profile: per-call fallback
        assert runner.input_views([(11, 3, 48, 192)]) is None  # above max batch: split
        (wide,) = runner.infer([cls_batch(1, width=1024)])
        (split,) = runner.infer([cls_batch(11)])
        assert runner.fallback_calls == 1
        with pytest.raises(ValueError, match="1 input shape"):
            runner.input_views([(1, 3, 48, 192), (1,)])
        fake.fail_run = True
        runner.infer([cls_batch(2)])  # a CUDA failure: fallback for good
        assert runner.disabled_reason is not None
        assert runner.input_views([(2, 3, 48, 192)]) is None
    assert runner.input_views([(2, 3, 48, 192)]) is None  # closed
    np.testing.assert_array_equal(wide, cls_fallback.infer([cls_batch(1, width=1024)])[0])
    np.testing.assert_allclose(split, cls_fallback.infer([cls_batch(11)])[0], rtol=0, atol=1e-6)
    assert sum(e.zero_copy_inputs for e in fake.executors) == 0


def test_a_leased_profile_is_not_leased_twice(monkeypatch, cls_onnx) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    with _runner(monkeypatch, fake) as runner:
        with runner.input_views([(2, 3, 48, 192)]) as first:
            assert runner.input_views([(1, 3, 48, 192)]) is None  # busy: plain arrays
            other = runner.input_views([(1, 3, 48, 320)])  # another profile's buffers
            assert other is not None
            other.release()
        again = runner.input_views([(1, 3, 48, 192)])  # the with-block gave it back
        assert again is not None and first.released
        again.release()
        again.release()  # idempotent


def test_a_call_in_the_lease_holders_thread_keeps_its_views(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    with _runner(monkeypatch, fake) as runner:
        lease = runner.input_views([(2, 3, 48, 192)])
        lease.views[0][...] = cls_batch(2, seed=1)
        (other,) = runner.infer([cls_batch(2, seed=2)])  # same profile, same thread, plain array
        np.testing.assert_array_equal(lease.views[0], cls_batch(2, seed=1))  # restored
        (mine,) = runner.infer(lease.views)
        assert _executor(fake, 0).zero_copy_inputs == 1
    np.testing.assert_allclose(
        other, cls_fallback.infer([cls_batch(2, seed=2)])[0], rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        mine, cls_fallback.infer([cls_batch(2, seed=1)])[0], rtol=0, atol=1e-6
    )


def test_a_failed_call_leaves_the_lease_with_its_holder(
    monkeypatch, cls_onnx, cls_fallback
) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    with _runner(monkeypatch, fake) as runner:  # no fallback: failures are raised
        lease = runner.input_views([(2, 3, 48, 192)])
        lease.views[0][...] = cls_batch(2, seed=3)
        fake.fail_run = True
        with pytest.raises(RuntimeError, match="simulated CUDA failure"):
            runner.infer(lease.views)
        assert not lease.released and runner.input_views([(1, 3, 48, 192)]) is None
        fake.fail_run = False
        (out,) = runner.infer(lease.views)  # the holder retries with its intact views
        assert lease.released and _executor(fake, 0).zero_copy_inputs == 1
    np.testing.assert_allclose(
        out, cls_fallback.infer([cls_batch(2, seed=3)])[0], rtol=0, atol=1e-6
    )


def test_oom_back_off_on_a_view(monkeypatch, cls_onnx, cls_fallback) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES, oom_above=1)
    with _runner(monkeypatch, fake) as runner:
        lease = runner.input_views([(4, 3, 48, 192)])
        lease.views[0][...] = cls_batch(4, seed=4)
        (out,) = runner.infer(lease.views)  # halves, then quarters, each a slice of the view
    np.testing.assert_allclose(
        out, cls_fallback.infer([cls_batch(4, seed=4)])[0], rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("guarded", [True, False], ids=["leases", "no-lease-guard"])
def test_threads_never_see_their_buffer_overwritten(
    monkeypatch, cls_onnx, cls_fallback, guarded
) -> None:
    """Threads that lease (or, when busy, pass plain arrays) on one shared runner all get their
    own results. Without the guard around executor calls (``no-lease-guard``, a deliberately
    broken runner) plain calls overwrite leased buffers and results go wrong: the test's
    sensitivity check."""
    if not guarded:
        monkeypatch.setattr(
            input_views_mod.LeaseSlots, "using", lambda self, index, lease: contextlib.nullcontext()
        )
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    fake.transfer_delay = 0.002
    seeds = list(range(8))
    expected = {s: cls_fallback.infer([cls_batch(2, seed=s)])[0] for s in seeds}
    results: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(seeds))

    def work(seed: int) -> None:
        try:
            start.wait()
            for rep in range(6):
                lease = runner.input_views([(2, 3, 48, 192)])
                if lease is None:
                    (results[seed, rep],) = runner.infer([cls_batch(2, seed=seed)])
                    continue
                with lease:
                    lease.views[0][...] = cls_batch(2, seed=seed)
                    threading.Event().wait(0.001)  # a slow producer
                    (results[seed, rep],) = runner.infer(lease.views)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with _runner(monkeypatch, fake) as runner:
        threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors, errors
    ex = _executor(fake, 0)
    assert ex.zero_copy_inputs > 0 and ex.staged_inputs > 0  # both kinds of call happened
    wrong = [k for k, v in results.items() if not np.allclose(v, expected[k[0]], rtol=0, atol=1e-6)]
    assert len(results) == 6 * len(seeds)
    if guarded:
        assert not wrong
    else:
        assert wrong, "the sensitivity check found no overwritten buffer"


def test_producers_get_views_only_inside_a_scope(monkeypatch, cls_onnx, cls_fallback) -> None:
    fake = ViewAdapterDouble(cls_onnx, PROFILES)
    parts = [[cls_batch(1, seed=5)], [cls_batch(2, seed=6)]]
    with _runner(monkeypatch, fake) as runner:
        with input_view_scope():
            assert leased_views(runner, [(1, 3, 48, 192)], [np.uint8]) is None  # other dtype
            assert leased_views(cls_fallback, [(1, 3, 48, 192)], [np.float32]) is None
            x = concat_into_views(runner, parts)
            ex = _executor(fake, 0)
            assert np.shares_memory(x[0], ex.buffers[0])
            (out,) = runner.infer(x)
            assert _same_buffer(ex.last_inputs[0], x[0]) and ex.zero_copy_inputs == 1
            unused = leased_views(runner, [(1, 3, 48, 320)], [np.float32])
            assert unused is not None and runner.input_views([(1, 3, 48, 320)]) is None
        assert runner.input_views([(1, 3, 48, 320)]) is not None  # the scope released it
        assert leased_views(runner, [(3, 3, 48, 192)], [np.float32]) is None  # no scope
        plain = concat_into_views(runner, parts)
        assert not np.shares_memory(plain[0], ex.buffers[0])
    np.testing.assert_array_equal(x[0], np.concatenate([p[0] for p in parts]))
    np.testing.assert_allclose(out, cls_fallback.infer(plain)[0], rtol=0, atol=1e-6)
