"""Every Python block and shell command of the README runs as written (offline, on this CPU
machine, with the bundled models), so the first hour of a new user cannot rot.

A block may be exempted only by an HTML comment right after it,
``<!-- readme-test: skip (reason) -->``; the exemptions are few and each gives its reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.firsthour_env import REPO_ROOT, subprocess_env

BLOCK = re.compile(
    r"```(?P<lang>[a-z]*)\n(?P<body>.*?)```\n(?:<!-- readme-test: skip \((?P<skip>[^)]+)\) -->)?",
    re.S,
)
MAX_SKIPS = 3


def readme_blocks() -> list[tuple[str, str, str | None]]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    return [(m["lang"], m["body"], m["skip"]) for m in BLOCK.finditer(text)]


BLOCKS = [(lang, body, skip) for lang, body, skip in readme_blocks() if lang in ("python", "bash")]


def test_every_block_is_runnable_or_says_why_not() -> None:
    langs = {lang for lang, _, _ in readme_blocks()}
    assert langs <= {"python", "bash", "text"}, langs  # nothing runnable hides as another lang
    skipped = [skip for _, _, skip in BLOCKS if skip]
    assert len(skipped) <= MAX_SKIPS, skipped
    assert sum(1 for _, _, skip in BLOCKS if not skip) >= 3


def _ids() -> list[str]:
    return [f"{lang}{i}" for i, (lang, _, _) in enumerate(BLOCKS)]


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "body", "skip"), BLOCKS, ids=_ids())
def test_readme_block_runs(lang: str, body: str, skip: str | None, tmp_path: Path) -> None:
    if skip:
        pytest.skip(f"README says: {skip}")
    command = [sys.executable, "-c", body] if lang == "python" else ["bash", "-euo", "pipefail"]
    proc = subprocess.run(
        command,
        input=None if lang == "python" else body,
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (
        f"{body}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert proc.stdout.strip(), "a README example that prints nothing shows nothing"
