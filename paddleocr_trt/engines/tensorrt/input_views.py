"""Zero-copy inputs for :class:`~.runner.TensorRTRunner`: leases on an executor's pinned buffers.

Why: a producer that stacks its batch with ``np.stack`` and hands the array to ``infer`` pays a
second host copy (the executor stages it into pinned memory) that costs as much as the transfer
itself. With a lease the producer writes the batch straight into the pinned input buffers of the
execution context ``infer`` will pick for those shapes, and the executor transfers them as they
are (``CudaExecutor.input_view``).

Why a lease: an executor has one pinned buffer per input, rewritten by every call, and the
runner is shared by threads (the pipelined path, users' threads). A lease reserves one
profile's buffers from :meth:`TensorRTRunner.input_views` until the call that consumes the views
returns (or the lease is released); meanwhile a second request for that profile gets ``None``
(the producer then builds plain arrays) and a plain ``infer`` on that profile waits, so nobody
sees a buffer overwritten. Shapes the runner would split or cannot run on TensorRT, a disabled
or closed runner, a busy profile: ``None``, plain arrays, today's behaviour.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ...log import get_logger, warn_once
from ...profiles import select_profile

logger = get_logger("trt.input_views")

#: How long a plain call waits for a leased profile before warning (it then keeps waiting).
WAIT_WARN_S = 10.0


def _same_memory(a: Any, view: np.ndarray) -> bool:
    return (
        isinstance(a, np.ndarray)
        and a.dtype == view.dtype
        and a.shape == view.shape
        and a.__array_interface__["data"][0] == view.__array_interface__["data"][0]
    )


class InputLease:
    """Views over one profile's pinned input buffers, reserved until consumed or released.

    Fill ``views`` and pass them (as they are) to ``infer``; the runner releases the lease when
    that call returns. Use it as a context manager (or call :meth:`release`) so that a lease
    whose call never happens, or raised, is given back.
    """

    def __init__(self, slots: LeaseSlots, index: int) -> None:
        self._slots = slots
        self.index = index
        self.views: list[np.ndarray] = []
        self.owner = threading.get_ident()
        self.consumed = False
        self.released = False

    def matches(self, inputs: Sequence[Any]) -> bool:
        """Whether a call's inputs include one of these views (same memory, shape, dtype)."""
        return any(_same_memory(a, v) for a in inputs for v in self.views)

    def release(self) -> None:
        """Give the buffers back (idempotent)."""
        self._slots.release(self)

    def __enter__(self) -> InputLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class LeaseSlots:
    """Which profile's input buffers are reserved, and by whom (one lock for all of them)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        #: profile index -> the lease holding its buffers, or a plain call running on it
        self._held: dict[int, InputLease | object] = {}
        #: leases handed out and not yet claimed by a call
        self._open: list[InputLease] = []

    def try_lease(self, index: int) -> InputLease | None:
        """A lease on ``index`` if nobody holds it now (never waits)."""
        with self._cond:
            if index in self._held:
                return None
            lease = InputLease(self, index)
            self._held[index] = lease
            self._open.append(lease)
            return lease

    def claim(self, inputs: Sequence[Any]) -> InputLease | None:
        """The open lease whose views these inputs are; it is now this call's."""
        with self._cond:
            for lease in self._open:
                if lease.matches(inputs):
                    self._open.remove(lease)
                    lease.consumed = True
                    return lease
        return None

    def reopen(self, lease: InputLease) -> None:
        """A claimed lease whose call failed: unused again, still its holder's."""
        with self._cond:
            if not lease.released and lease not in self._open:
                lease.consumed = False
                self._open.append(lease)

    def release(self, lease: InputLease) -> None:
        with self._cond:
            if lease.released:
                return
            lease.released = True
            if lease in self._open:
                self._open.remove(lease)
            if self._held.get(lease.index) is lease:
                del self._held[lease.index]
                self._cond.notify_all()

    @contextlib.contextmanager
    def using(self, index: int, lease: InputLease | None) -> Iterator[None]:
        """Hold profile ``index``'s buffers for one executor call.

        The call of the lease holding them goes straight on. Any other call waits until they
        are free, except in the thread that holds an unclaimed lease on them (it would wait for
        itself): there the lease's views are saved and restored around the call.
        """
        token = object()
        saved: tuple[InputLease, list[np.ndarray]] | None = None
        with self._cond:
            holder = self._held.get(index)
            if holder is not None and holder is lease:
                token = None
            elif (
                isinstance(holder, InputLease)
                and not holder.consumed
                and holder.owner == threading.get_ident()
            ):
                saved = (holder, [v.copy() for v in holder.views])
                token = None
            else:
                while index in self._held:
                    if not self._cond.wait(WAIT_WARN_S):
                        warn_once(
                            ("input-lease-wait", self.name),
                            "%s: a call has waited %.0f s for profile %d's input buffers, "
                            "leased and not yet used (a lease must be used or released)",
                            self.name,
                            WAIT_WARN_S,
                            index,
                        )
                self._held[index] = token
        try:
            yield
        finally:
            if saved is not None:
                for view, data in zip(saved[0].views, saved[1], strict=True):
                    np.copyto(view, data)
            if token is not None:
                with self._cond:
                    if self._held.get(index) is token:
                        del self._held[index]
                        self._cond.notify_all()


def lease_input_views(runner: Any, shapes: Sequence[Sequence[int]]) -> InputLease | None:
    """Views for ``runner``'s inputs at ``shapes`` on the profile ``infer`` would pick, or None.

    None whenever the call would not run whole on one TensorRT context (a disabled or closed
    runner, shapes outside every usable profile or above its max batch) or that profile's
    buffers are leased to someone else, or its context cannot be made now.
    """
    names = runner.input_names
    if len(shapes) != len(names):
        raise ValueError(f"{runner.name}: {len(names)} input shape(s) for {names}, got {shapes}")
    if runner._closed or runner.disabled_reason is not None:
        return None
    by_name = {n: tuple(int(d) for d in s) for n, s in zip(names, shapes, strict=True)}
    index = select_profile(runner._usable(), by_name)
    if index is None:
        return None
    lease = runner._leases.try_lease(index)
    if lease is None:
        return None
    try:
        executor = runner._executor(index)
        lease.views = [
            executor.input_view(i, by_name[n]) for i, n in enumerate(names)
        ]  # fmt: skip
    except Exception as exc:  # infer meets the same failure and applies its policy
        logger.debug("%s: no input views for profile %d: %s", runner.name, index, exc)
        lease.release()
        return None
    return lease
