"""``paddleocr-trt cache``: see, check and clean the ONNX/engine cache.

Exit codes: 0 done; 1 entry not found or the cache could not be read/written; 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $PADDLEOCR_TRT_CACHE_DIR, else ~/.cache/paddleocr_trt)",
    )
    parser = subparsers.add_parser(
        "cache", help="list, inspect and clean cached ONNX files and engines", description=__doc__
    )
    parser.set_defaults(func=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="cache_command", metavar="SUBCOMMAND")

    p = sub.add_parser("list", parents=[common], help="list entries")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", parents=[common], help="show one entry and check its files")
    p.add_argument("key", metavar="KEY", help="entry digest (a unique prefix is enough)")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "clear",
        parents=[common],
        help="remove one entry or remembered failure, or all with --all",
    )
    p.add_argument("key", metavar="KEY", nargs="?", help="entry digest (or unique prefix)")
    p.add_argument("--all", action="store_true", help="remove every entry")
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser("prune", parents=[common], help="remove entries not used for DAYS days")
    p.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    p.set_defaults(func=cmd_prune)

    from .bundle_cmd import register_bundle

    register_bundle(sub, common, _guarded, _emit, _fail)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _cache(args: argparse.Namespace) -> Any:
    from ..cache.store import EngineCache

    return EngineCache(args.cache_dir)


def _failures(cache: Any) -> Any:
    from ..cache.failures import FailureMemo

    return FailureMemo(cache)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _fail(args: argparse.Namespace, message: str, code: int = EXIT_FAILED) -> int:
    if args.json:
        print(json.dumps({"error": message}))
    print(f"error: {message}", file=sys.stderr)
    return code


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _when(epoch: float | None) -> str:
    try:
        return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
    except (OverflowError, OSError, ValueError):
        return "?"


def _guarded(func: Any) -> Any:
    """Cache problems become one clear line and exit 1, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        from ..errors import CacheError
        from ..settings import SettingsError, validate_settings

        try:
            validate_settings()
            return func(args)
        except BrokenPipeError:
            raise  # the reader went away: main() ends quietly
        except SettingsError as exc:
            return _fail(args, str(exc), EXIT_USAGE)
        except (CacheError, OSError) as exc:
            return _fail(args, str(exc))
        except (ValueError, TypeError, LookupError, AttributeError, OverflowError) as exc:
            # every record is schema-checked when read; this is the last line of that promise
            return _fail(args, f"a cache record is corrupt ({type(exc).__name__}: {exc})")

    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


@_guarded
def cmd_list(args: argparse.Namespace) -> int:
    cache = _cache(args)
    entries = cache.entries()
    rows = [e.to_dict() for e in entries]
    header = ("DIGEST", "KIND", "MODEL", "PRECISION", "SIZE", "CREATED", "LAST USED", "STATUS")
    table = [header]
    for entry in entries:
        key = entry.key_fields
        table.append(
            (
                entry.digest,
                entry.kind,
                str(key.get("model_type", "?")),
                str(key.get("precision", "?")),
                _size(entry.size_bytes),
                _when(entry.created),
                _when(entry.last_used),
                _status(entry),
            )
        )
    failures = _failures(cache).list()
    for failure in failures:  # remembered failures: not retried until cleared
        key = failure.key
        table.append(
            (
                failure.digest,
                failure.kind,
                str(key.get("model_type", "?")),
                str(key.get("precision", "?")),
                "-",
                _when(failure.created),
                "-",
                f"FAILED (not retried; `cache clear {failure.digest[:12]}`): "
                f"{failure.error_type}: {(failure.reason.splitlines() or [''])[0][:160]}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in table]
    lines = [f"{line}  {row[-1]}" for line, row in zip(lines, table, strict=True)]
    total = cache.size_bytes()
    summary = f"{len(entries)} entries, {_size(total)} in {cache.root}"
    if failures:
        summary += f"; {len(failures)} remembered failures"
    text = "\n".join([*lines, summary]) if entries or failures else f"no entries in {cache.root}"
    data: dict[str, Any] = {"cache_dir": str(cache.root), "size_bytes": total, "entries": rows}
    if failures:
        data["failures"] = [f.to_dict() for f in failures]
    _emit(args, data, text)
    return EXIT_OK


def _status(entry: Any) -> str:
    """ "ok" (with, for TensorRT-RTX engines, whether and where the plan was validated)."""
    if entry.problem is not None:
        return f"BROKEN: {entry.problem}"
    from ..engines import registry

    rtx = registry.engine("tensorrt").entry_status(entry)
    return f"ok; {rtx}" if rtx else "ok"


@_guarded
def cmd_info(args: argparse.Namespace) -> int:
    cache = _cache(args)
    entry = cache.info(args.key)
    if entry is None:
        return _fail(args, f"no cache entry {args.key!r} in {cache.root}")
    m = entry.manifest
    key = entry.key_fields
    rows = [
        ("digest", entry.digest),
        ("status", "ok" if entry.problem is None else f"BROKEN: {entry.problem}"),
        ("path", str(entry.path)),
        ("artifact", f"{m.get('artifact')} ({_size(entry.size_bytes)})"),
        ("created", f"{_when(entry.created)} by paddleocr_trt {m.get('package_version')}"),
        ("build time", f"{entry.build_seconds or 0:.1f} s"),
        ("last used", _when(entry.last_used)),
        *((k, json.dumps(v)) for k, v in sorted(key.items())),
    ]
    lines = [f"{label + ':':<20}{value}" for label, value in rows]
    if entry.validation is not None:
        lines.append("validation:")
        lines.extend(validation_lines(entry.validation))
    _emit(args, entry.to_dict(), "\n".join(lines))
    return EXIT_OK if entry.problem is None else EXIT_FAILED


def validation_lines(validation: Any, indent: str = "  ", width: int = 100) -> list[str]:
    """A validation record as short indented ``key: value`` lines (nested dicts and lists of
    dicts indented further; long lists of numbers cut), instead of one multi-KB JSON line."""
    lines: list[str] = []
    if isinstance(validation, dict):
        for key, value in validation.items():
            if isinstance(value, dict | list) and value and _nested(value):
                lines.append(f"{indent}{key}:")
                lines.extend(validation_lines(value, indent + "  ", width))
            else:
                lines.append(_clip(f"{indent}{key}: {_scalar(value)}", width))
    elif isinstance(validation, list):
        for i, item in enumerate(validation):
            if isinstance(item, dict | list) and _nested(item):
                lines.append(f"{indent}[{i}]")
                lines.extend(validation_lines(item, indent + "  ", width))
            else:
                lines.append(_clip(f"{indent}- {_scalar(item)}", width))
    else:
        lines.append(_clip(f"{indent}{_scalar(validation)}", width))
    return lines


def _nested(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return isinstance(value, dict) or any(isinstance(v, dict | list) for v in items)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        shown = ", ".join(_scalar(v) for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}] ({len(value)} values)"
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


@_guarded
def cmd_clear(args: argparse.Namespace) -> int:
    if not args.all and not args.key:
        return _fail(
            args,
            "say what to remove: `cache clear KEY` (one entry; see `cache list`) "
            "or `cache clear --all`",
            EXIT_USAGE,
        )
    if args.all and args.key:
        return _fail(args, "give KEY or --all, not both", EXIT_USAGE)
    cache = _cache(args)
    if args.all:
        count = cache.clear()
        forgotten = _failures(cache).clear()
        text = f"removed {count} entries from {cache.root}"
        data: dict[str, Any] = {"removed": count}
        if forgotten:
            text += f" and forgot {forgotten} remembered failures"
            data["failures_removed"] = forgotten
        _emit(args, data, text)
        return EXIT_OK
    forgotten = [f.digest for f in _failures(cache).remove(args.key)]
    entry = cache.info(args.key)
    if entry is None or not cache.remove(entry.digest):
        if forgotten:
            text = "\n".join(f"forgot the remembered failure {d}" for d in forgotten)
            _emit(args, {"removed": [], "failures_removed": forgotten}, text)
            return EXIT_OK
        return _fail(args, f"no cache entry {args.key!r} in {cache.root}")
    text = f"removed {entry.digest}" + "".join(f"\nforgot the failure {d}" for d in forgotten)
    result: dict[str, Any] = {"removed": [entry.digest]}
    if forgotten:
        result["failures_removed"] = forgotten
    _emit(args, result, text)
    return EXIT_OK


@_guarded
def cmd_prune(args: argparse.Namespace) -> int:
    if args.older_than < 0:
        return _fail(args, "--older-than must be >= 0 days", EXIT_USAGE)
    cache = _cache(args)
    removed = cache.prune(args.older_than)
    text = f"removed {len(removed)} entries unused for {args.older_than:g} days" + "".join(
        f"\n  {d}" for d in removed
    )
    _emit(args, {"removed": removed}, text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cache`` alone (``python -m paddleocr_trt.cli.cache_cmd list``)."""
    parser = argparse.ArgumentParser(prog="paddleocr-trt")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cache", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
