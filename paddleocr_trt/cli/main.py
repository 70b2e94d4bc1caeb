"""``paddleocr-trt``: a thin CLI over the library; each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from .._version import __version__

#: modules under paddleocr_trt.cli that expose ``register(subparsers)``
COMMAND_MODULES = ("demo_cmd", "doctor_cmd", "optimize_cmd", "cache_cmd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paddleocr-trt",
        description="TensorRT engines for PaddleOCR: build, validate, cache, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .settings_check import check_settings

    refused = check_settings(args)  # every setting, once, before any command runs
    if refused is not None:
        return refused
    _terminate_cleanly()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def _terminate_cleanly() -> None:
    """SIGTERM unwinds like Ctrl-C: the conversion child is killed and the cache's temp build
    dir removed by their ``finally`` blocks, instead of both being left behind."""

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)


if __name__ == "__main__":
    sys.exit(main())
