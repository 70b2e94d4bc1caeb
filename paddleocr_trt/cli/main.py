"""``paddleocr-trt``: a thin CLI over the library; each command lives in its own module.

Rules every command follows (README "Command line"): exit 0 ok, 1 the machine could not do it,
2 bad arguments; with ``--json`` exactly one JSON document on stdout, usage errors included;
output piped into a reader that closes early (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__

#: modules under paddleocr_trt.cli that expose ``register(subparsers)``
COMMAND_MODULES = (
    "demo_cmd",
    "doctor_cmd",
    "optimize_cmd",
    "benchmark_cmd",
    "cache_cmd",
    "batch_cmd",
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CliParser(argparse.ArgumentParser):
    """argparse, but a usage error under ``--json`` is one JSON document on stdout too.

    Sub-parsers inherit the class (argparse's default ``parser_class``)."""

    json_requested = False

    def error(self, message: str) -> NoReturn:
        if CliParser.json_requested:
            print(json.dumps({"ok": False, "error": message, "usage": self.format_usage().strip()}))
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(
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
    argv = list(sys.argv[1:] if argv is None else argv)
    CliParser.json_requested = "--json" in argv
    try:
        return _main(argv)
    except BrokenPipeError:
        return _closed_reader()


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if CliParser.json_requested:
            print(json.dumps({"ok": False, "error": "a command is required"}))
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from .settings_check import check_settings

    # every setting, once, before any command runs (and before logging reads the log level: a
    # bad one is this one error line, not also a warning)
    refused = check_settings(args)
    if refused is not None:
        return refused
    _configure_logging(args.verbose)
    _terminate_cleanly()
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed reader shows up here, inside the BrokenPipe guard
        return code
    except KeyboardInterrupt:
        return 130


def _configure_logging(verbose: int) -> None:
    """The package logger speaks through its own handler (``log.py``), whatever Paddle or
    PaddleX later do to the root logger, so the format does not change mid-run. The CLI does
    not configure the root logger: Paddle's import would otherwise raise it to INFO."""
    from ..log import LOGGER_NAME, configure_from_env
    from ..settings import ENV_LOG_LEVEL

    configure_from_env()
    if os.environ.get(ENV_LOG_LEVEL, "").strip() and not verbose:
        return
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    logging.getLogger(LOGGER_NAME).setLevel(level)


def _closed_reader() -> int:
    """The reader went away (``| head``): stop writing, say nothing, exit 1 (not all of the
    output was delivered). stdout is pointed at /dev/null so the interpreter's final flush
    cannot raise a second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_FAILED


def _terminate_cleanly() -> None:
    """SIGTERM unwinds like Ctrl-C: the conversion child is killed and the cache's temp build
    dir removed by their ``finally`` blocks, instead of both being left behind."""

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)


if __name__ == "__main__":
    sys.exit(main())
