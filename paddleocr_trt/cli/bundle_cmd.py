"""``paddleocr-trt cache export|import``: move validated engines between machines as one archive.

Kept apart from ``cache_cmd`` so the cache command stays small; the logic is in
:mod:`paddleocr_trt.cache.bundle`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED = 0, 1


def register_bundle(sub: Any, common: argparse.ArgumentParser, guarded, emit, fail) -> None:
    """Add ``export`` and ``import`` to the ``cache`` subcommands (helpers from cache_cmd)."""

    def cmd_export(args: argparse.Namespace) -> int:
        from ..cache.bundle import export_bundle
        from ..cache.store import EngineCache

        report = export_bundle(EngineCache(args.cache_dir), args.archive, args.keys or None)
        lines = [f"exported {len(report.exported)} entries to {report.path}"]
        lines += [f"  left out {d}: {why}" for d, why in report.skipped.items()]
        lines += [
            f"  engines for TensorRT {t['tensorrt_version']} on {t['gpu_name']} "
            f"(sm {t['compute_capability']})"
            for t in report.targets
        ]
        emit(args, report.to_dict(), "\n".join(lines))
        return EXIT_OK if report.exported else EXIT_FAILED

    def cmd_import(args: argparse.Namespace) -> int:
        from ..cache.bundle import import_bundle
        from ..cache.store import EngineCache

        if not args.archive.is_file():
            return fail(args, f"bundle not found: {args.archive}")
        cache = EngineCache(args.cache_dir)
        report = import_bundle(cache, args.archive)
        lines = [
            f"imported {len(report.imported)} entries into {cache.root}; "
            f"{len(report.present)} already present, {len(report.rejected)} rejected"
        ]
        lines += [f"  rejected {d}: {why}" for d, why in report.rejected.items()]
        emit(args, report.to_dict(), "\n".join(lines))
        return EXIT_FAILED if report.rejected else EXIT_OK

    p = sub.add_parser(
        "export", parents=[common], help="write validated entries into one archive (a bundle)"
    )
    p.add_argument("archive", type=Path, metavar="ARCHIVE", help="bundle to write (.tar.gz)")
    p.add_argument("keys", nargs="*", metavar="KEY", help="only these digests (or prefixes)")
    p.set_defaults(func=guarded(cmd_export))

    p = sub.add_parser(
        "import", parents=[common], help="add a bundle's entries, checked like local builds"
    )
    p.add_argument("archive", type=Path, metavar="ARCHIVE", help="bundle from `cache export`")
    p.set_defaults(func=guarded(cmd_import))
