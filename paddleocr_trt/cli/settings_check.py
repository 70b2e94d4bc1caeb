"""Every command checks the settings once, before it does anything: the environment
(``settings.validate_settings``) and the options that mirror a setting (``--cache-dir``,
``--workspace-gb``, ``--build-timeout``), with the library's own checks, so the CLI, the
optimizer and the drop-in refuse the same values with the same message.

A bad value is one ``error:`` line on stderr (and, under ``--json``, one JSON document on
stdout) and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_USAGE = 2


def settings_error(args: argparse.Namespace) -> str | None:
    """The first bad setting or mirrored option, as a message; None when all are good."""
    from ..settings import (
        SettingsError,
        check_build_timeout_s,
        check_directory,
        check_workspace_gb,
        validate_settings,
    )

    try:
        validate_settings()
        for option in ("cache_dir", "work_dir"):
            if getattr(args, option, None) is not None:
                check_directory(getattr(args, option), "--" + option.replace("_", "-"))
        if getattr(args, "workspace_gb", None) is not None:
            check_workspace_gb(args.workspace_gb, "--workspace-gb")
        if getattr(args, "build_timeout", None) is not None:
            check_build_timeout_s(args.build_timeout, "--build-timeout")
    except SettingsError as exc:
        return str(exc)
    return None


def check_settings(args: argparse.Namespace) -> int | None:
    """None when the command may run; else the exit code, the error already printed."""
    message = settings_error(args)
    if message is None:
        return None
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": message}))
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE
