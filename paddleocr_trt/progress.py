"""Progress bars for long CLI steps (conversions, benchmark sweeps), on stderr only.

Scripts read stdout (often ``--json``) and logs; a bar must never end up in either. So bars go to
stderr and are silent when stderr is not a terminal or when the caller asks for quiet output.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

from .log import register_bar as _register
from .log import unregister_bar as _unregister

T = TypeVar("T")

#: how often an open-ended step (one long conversion) redraws its elapsed time
SPINNER_REFRESH_S = 0.5


def bars_enabled(quiet: bool = False, stream: IO[str] | None = None) -> bool:
    """True when a bar would be seen by a person: not quiet and stderr is a TTY."""
    if quiet:
        return False
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # closed or detached stream
        return False


def track(
    items: Iterable[T], desc: str, *, total: int | None = None, quiet: bool = False
) -> Iterator[T]:
    """Iterate ``items`` with a bar (one tick per item) when :func:`bars_enabled`."""
    if not bars_enabled(quiet):
        yield from items
        return
    from tqdm import tqdm

    bar: Any = tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)
    _register(bar)
    try:
        yield from bar
    finally:
        _unregister(bar)
        bar.close()


@contextlib.contextmanager
def step(desc: str, *, quiet: bool = False) -> Iterator[None]:
    """An open-ended step (no known total): shows ``desc`` and the elapsed time while it runs."""
    if not bars_enabled(quiet):
        yield
        return
    from tqdm import tqdm

    bar = tqdm(
        total=None,
        desc=desc,
        file=sys.stderr,
        leave=False,
        bar_format="{desc}: {elapsed}",
        dynamic_ncols=True,
    )
    done = threading.Event()

    def tick() -> None:
        while not done.wait(SPINNER_REFRESH_S):
            bar.refresh()

    ticker = threading.Thread(target=tick, name="paddleocr-trt-progress", daemon=True)
    _register(bar)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join()
        _unregister(bar)
        bar.close()


@contextlib.contextmanager
def stage(desc: str, *, quiet: bool = False) -> Iterator[None]:
    """A long pipeline stage: a line on stderr when it starts and ends, with the elapsed time.

    The lines go through the ``paddleocr_trt.progress`` logger (shown on stderr by default, see
    ``log.py``; ``PADDLEOCR_TRT_LOG_LEVEL=WARNING`` hides them); on a terminal a ticking bar
    replaces the start line.
    """
    from .log import progress_logger

    plog = progress_logger()
    started = time.perf_counter()
    bar = bars_enabled(quiet)
    if not bar:
        plog.info("%s ...", desc)
    try:
        with step(desc, quiet=quiet):
            yield
    except BaseException:
        plog.info("%s: failed after %.1f s", desc, time.perf_counter() - started)
        raise
    plog.info("%s: done in %.1f s", desc, time.perf_counter() - started)
