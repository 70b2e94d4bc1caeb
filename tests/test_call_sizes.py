"""The engine-call planner of the pipelined path (pure arithmetic: every row once, in order,
within the device's caps)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from paddleocr_trt.pipelined.call_sizes import CPU_CALLS, GPU_CALLS, CallSizes, plan_row_calls

rows_lists = st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=12)
widths = st.integers(min_value=1, max_value=4000)


def _covered(plan) -> list[tuple[int, int]]:
    return [(i, start + k) for call in plan for i, start, n in call for k in range(n)]


@given(rows_lists, widths, st.sampled_from([CPU_CALLS, GPU_CALLS, CallSizes(1, 6, 100)]))
def test_every_row_once_in_order(rows: list[int], width: int, sizes: CallSizes) -> None:
    plan = plan_row_calls(rows, width, sizes)
    assert _covered(plan) == [(i, r) for i, n in enumerate(rows) for r in range(n)]
    assert all(call for call in plan)


@given(rows_lists, widths)
def test_cpu_calls_fit_the_column_budget(rows: list[int], width: int) -> None:
    cap = max(1, min(CPU_CALLS.rec_rows, CPU_CALLS.rec_columns // width))
    plan = plan_row_calls(rows, width, CPU_CALLS)
    sizes = [sum(n for *_, n in call) for call in plan]
    assert all(size <= cap for size in sizes)
    assert all(size == cap for size in sizes[:-1]), "a call left room another row could take"


@given(rows_lists, widths)
def test_gpu_calls_merge_whole_chunks(rows: list[int], width: int) -> None:
    plan = plan_row_calls(rows, width, GPU_CALLS)
    for call in plan:
        assert all(start == 0 and n == rows[i] for i, start, n in call), "a chunk was cut"
        assert len(call) == 1 or sum(n for *_, n in call) <= GPU_CALLS.rec_rows


def test_examples() -> None:
    """The measured cases: W=320 takes 4 rows a call, W=560 2, W=1920 1."""
    assert plan_row_calls([6, 6], 320, CPU_CALLS) == [
        [(0, 0, 4)],
        [(0, 4, 2), (1, 0, 2)],
        [(1, 2, 4)],
    ]
    assert [sum(n for *_, n in c) for c in plan_row_calls([6], 560, CPU_CALLS)] == [2, 2, 2]
    assert len(plan_row_calls([6], 1920, CPU_CALLS)) == 6
    assert plan_row_calls([6, 6, 50], 320, GPU_CALLS) == [[(0, 0, 6), (1, 0, 6)], [(2, 0, 50)]]
