"""Issue 19: a hostile-but-realistic user against the cache's file-system paths.

Real files, real symbolic and hard links, a real second uid (``setpriv``), real signals and
``umask 000`` for every command. Every case checks that nothing outside what the cache made is
deleted, truncated or written through, and that no command prints a traceback. The cases that
failed on the main of issue 19 are marked ``main: failed`` in their docstrings.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.cache import make_key, world_traversable_tmpdir
from fixtures.hostile import snapshot

import paddleocr_trt
from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.failures import FailureMemo
from paddleocr_trt.errors import CacheError, ConversionError, ValidationFailedError

#: the checkout whose package is under test (children run the same code)
REPO = Path(paddleocr_trt.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SECOND_UID = 12345
TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a second uid")
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")


def _second_uid_reaches_the_checkout() -> bool:
    """Whether ``SECOND_UID`` can run this interpreter and import the package and the test
    fixtures (not in a checkout under a 0700 dir such as ``mktemp -d``'s)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = "import fixtures.cache, paddleocr_trt"
    proc = run_py(probe, user=SECOND_UID)
    return proc.returncode == 0


# -- helpers -----------------------------------------------------------------------------------


def _create(tmp_dir: Path) -> Path:
    path = tmp_dir / "a.bin"
    path.write_bytes(os.urandom(2048))
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, user: int | None = None) -> Any:
    """``paddleocr-trt ARGS`` in a fresh interpreter under umask 000; never a traceback."""
    cmd = [sys.executable, "-m", "paddleocr_trt.cli", *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, umask=0, timeout=300, cwd="/"
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_py(code: str, *args: str, env: dict[str, str] | None = None, user: int | None = None):
    """A snippet in a fresh interpreter under umask 000 (optionally as another uid)."""
    cmd = [sys.executable, "-c", code, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    full_env = {**os.environ, "PYTHONPATH": f"{REPO}:{TESTS}", **(env or {})}
    return subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, umask=0, timeout=300, cwd="/"
    )


def everything(root: Path, key: Any, model_dir: Path | None = None) -> None:
    """Every cache operation a user can reach; a CacheError (a refusal) is fine, nothing else."""
    from paddleocr_trt.pipeline import ArtifactPipeline

    ops: list[Callable[[], Any]] = [
        lambda: EngineCache(root).get(key),
        lambda: EngineCache(root).get_or_create(key, _create, artifact_name="model.bin"),
        lambda: EngineCache(root).entries(),
        lambda: EngineCache(root).info(key.digest),
        lambda: ArtifactPipeline(EngineCache(root)).validation_images(),
        lambda: ArtifactPipeline(EngineCache(root)).timing_cache_dir(),
        lambda: FailureMemo(root).record(key, ValidationFailedError("agreement 0.5")),
        lambda: FailureMemo(root).list(),
        lambda: FailureMemo(root).get(key),
        lambda: EngineCache(root).prune(0),
        lambda: EngineCache(root).remove(key.digest),
        lambda: EngineCache(root).clear(),
        lambda: FailureMemo(root).clear(),
    ]
    if model_dir is not None:
        ops.insert(0, lambda: EngineCache(root).fingerprint(model_dir))
    for op in ops:
        with contextlib.suppress(CacheError):
            op()


def victim_cache(base: Path, key: Any) -> Path:
    """The user's own, valid cache elsewhere: the best-proven target a planted link can reach."""
    other = base / "victim-cache"
    EngineCache(other).get_or_create(key, _create, artifact_name="model.bin")
    FailureMemo(other).record(make_key(precision="int8"), ValidationFailedError("x"))
    return other


def model_dir(base: Path) -> Path:
    path = base / "model"
    path.mkdir()
    for name in ("inference.pdmodel", "inference.pdiparams"):
        (path / name).write_bytes(os.urandom(64))
        os.utime(path / name, (time.time() - 3600,) * 2)
    return path


# -- 1. planted symbolic links, at every level -------------------------------------------------

#: where a link is planted in a cache root, and what the link points at in the victim's cache
LINK_PLANTS = {
    "kind dir onnx/": ("onnx", "onnx"),
    "kind dir onnxruntime/": ("onnxruntime", "onnxruntime"),
    "kind dir engine/": ("engine", "engine"),
    "entry dir": ("onnx/{digest}", "onnx/{digest}"),
    "artifact": ("onnx/{digest}/model.bin", "onnx/{digest}/model.bin"),
    "manifest": ("onnx/{digest}/manifest.json", "onnx/{digest}/manifest.json"),
    "locks/": ("locks", "locks"),
    "lock file": ("locks/onnx-{digest}.lock", "onnx/{digest}/model.bin"),
    "tmp/": ("tmp", "onnx"),
    "failures/": ("failures", "failures"),
    "memo file": ("failures/onnx-{digest}.json", "onnx/{digest}/manifest.json"),
    "hash-index.json": ("hash-index.json", "hash-index.json"),
    "validation-images/": ("validation-images", "onnx"),
    "timing/": ("timing", "onnx"),
    "CACHEDIR.TAG": ("CACHEDIR.TAG", "CACHEDIR.TAG"),
}


def _kind_key(where: str) -> Any:
    for kind in ("onnxruntime", "engine"):
        if f"kind dir {kind}/" == where:
            return make_key(kind=kind)
    return make_key()


@pytest.mark.parametrize("where", sorted(LINK_PLANTS))
def test_symlink_planted_at_any_level_is_never_followed(where: str, tmp_path: Path) -> None:
    """main: failed for kind dirs (deleted the victim's entries through the link), failures/
    (memo written through it and deleted from there) and the memo file."""
    key = _kind_key(where)
    other = victim_cache(tmp_path, key)
    root = tmp_path / "cache"
    EngineCache(root).get_or_create(make_key(precision="bf16"), _create, artifact_name="m.bin")
    plant, target = (s.format(digest=key.digest) for s in LINK_PLANTS[where])
    planted = root / plant
    planted.parent.mkdir(parents=True, exist_ok=True)
    if planted.is_dir() and not planted.is_symlink():
        shutil.rmtree(planted)
    elif planted.exists():
        planted.unlink()
    planted.symlink_to(other / target)
    before = snapshot(other)
    everything(root, key, model_dir(tmp_path))
    assert snapshot(other) == before


@needs_root
def test_cache_dir_that_is_a_link_of_another_user_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "cache"
    link.symlink_to(tmp_path)
    os.chown(link, SECOND_UID, SECOND_UID, follow_symlinks=False)
    proc = run_cli("cache", "clear", "--all", "--cache-dir", str(link))
    assert proc.returncode == 1 and "symbolic link of another user" in proc.stderr


# -- 1b. a shared 1777 root and a second, real uid --------------------------------------------


@needs_root
@needs_setpriv
def test_shared_1777_root_a_second_user_cannot_make_us_delete_our_files() -> None:
    """main: failed (the victim's get() deleted its own entries through the attacker's link)."""
    if not _second_uid_reaches_the_checkout():
        pytest.skip(f"uid {SECOND_UID} cannot reach this checkout (it lies under a private dir)")
    base = world_traversable_tmpdir()
    try:
        key = make_key()
        other = victim_cache(base, key)
        shared = base / "shared"
        shared.mkdir()
        shared.chmod(0o1777)
        attacker = ["setpriv", f"--reuid={SECOND_UID}", f"--regid={SECOND_UID}", "--clear-groups"]
        subprocess.run(
            [*attacker, "ln", "-s", str(other / "onnx"), str(shared / "onnx")], check=True
        )
        before = snapshot(other)
        everything(shared, key)
        assert snapshot(other) == before
        # the victim's own cache in the shared dir is a private per-user subdirectory
        mine = shared / f"paddleocr_trt_cache-{os.geteuid()}"
        assert (
            EngineCache(shared)
            .get_or_create(key, _create, artifact_name="m.bin")
            .path.is_relative_to(mine)
        )
        assert stat.S_IMODE(mine.stat().st_mode) == 0o700
        # the attacker's own run and `cache clear --all` stay in the attacker's subdirectory
        env = {"HOME": str(base), "PADDLEOCR_TRT_CACHE_DIR": str(shared)}
        code = (
            "import sys; from fixtures.cache import make_key; "
            "from paddleocr_trt.cache import EngineCache; c = EngineCache(sys.argv[1]); "
            "w = lambda d: (d / 'a.bin').write_bytes(b'x') and d / 'a.bin'; "
            "print(c.get_or_create(make_key(), w, artifact_name='m.bin').path)"
        )
        made = run_py(code, str(shared), env=env, user=SECOND_UID)
        assert made.returncode == 0, made.stderr
        assert f"paddleocr_trt_cache-{SECOND_UID}" in made.stdout
        mine_before = snapshot(mine)
        proc = run_cli("cache", "clear", "--all", env=env, user=SECOND_UID)
        assert proc.returncode == 0, proc.stderr
        assert snapshot(mine) == mine_before and snapshot(other) == before
        # a subdirectory the attacker planted in our name is refused, never followed
        shutil.rmtree(mine)
        subprocess.run([*attacker, "ln", "-s", str(other), str(mine)], check=True)
        proc = run_cli("cache", "clear", "--all", "--cache-dir", str(shared))
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "refuses to use it" in proc.stderr or "give the cache" in proc.stderr
        everything(shared, key)
        assert snapshot(other) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- 2. $HOME (or any populated foreign dir) as the cache dir ----------------------------------


def _populated_home(home: Path) -> None:
    """A home as the issue found it: user files at every name the cache uses."""
    (home / "Documents").mkdir(parents=True)
    (home / "Documents" / "thesis.txt").write_text("years of work")
    (home / ".bashrc").write_text("export PS1='$ '\n")
    (home / "locks").mkdir()
    (home / "locks" / "door.lock").write_text("front door code")
    (home / "hash-index.json").write_text(json.dumps({"version": 1, "files": {}}))
    (home / "failures").mkdir()
    (home / "failures" / "2024.json").write_text(json.dumps({"schema_version": 1, "why": "x"}))
    entry = home / "onnx" / ("a" * 24)
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text('{"mine": true}')
    (home / "validation-images").mkdir()
    (home / "validation-images" / "english_document.png").write_bytes(b"my own picture")
    for path in [home, *home.rglob("*")]:
        os.utime(path, (time.time() - 86400 * 30,) * 2, follow_symlinks=False)


@pytest.mark.parametrize("how", ["--cache-dir ~", "PADDLEOCR_TRT_CACHE_DIR=$HOME"])
def test_home_as_cache_dir_uses_a_subdirectory_and_loses_nothing(how: str, tmp_path: Path) -> None:
    """main: failed (`cache clear --all` deleted ~/locks/*.lock, ~/hash-index.json,
    ~/failures/*.json and ~/onnx/<24 hex>/; a run overwrote ~/validation-images/)."""
    home = tmp_path / "home"
    _populated_home(home)
    before = snapshot(home)
    env = {"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache-unused")}
    flag: list[str] = []
    if how.startswith("--"):
        flag = ["--cache-dir", "~"]
    else:
        env["PADDLEOCR_TRT_CACHE_DIR"] = str(home)
    code = (
        "import os, sys; from pathlib import Path; from fixtures.cache import make_key; "
        "from paddleocr_trt.cache import EngineCache; "
        "from paddleocr_trt.pipeline import ArtifactPipeline; "
        "c = EngineCache(Path(sys.argv[1]).expanduser()); "
        "w = lambda d: (d / 'a.bin').write_bytes(b'x') and d / 'a.bin'; "
        "c.get_or_create(make_key(), w, artifact_name='m.bin'); "
        "c.fingerprint(sys.argv[2]); ArtifactPipeline(c).validation_images(); print(c.root)"
    )
    made = run_py(code, "~" if flag else str(home), str(model_dir(tmp_path)), env=env)
    assert made.returncode == 0, made.stderr
    sub = home / "paddleocr_trt_cache"
    assert made.stdout.strip() == str(sub)
    assert (sub / "CACHEDIR.TAG").read_bytes().startswith(TAG_SIGNATURE)
    for args in (["list"], ["prune", "--older-than", "0"], ["clear", "--all"], ["list", "--json"]):
        proc = run_cli("cache", *args, *flag, env=env)
        assert proc.returncode == 0, proc.stderr
    after = {k: v for k, v in snapshot(home).items() if not k.startswith("paddleocr_trt_cache")}
    assert after == before


def test_populated_dir_with_a_foreign_subdirectory_is_refused_in_one_line(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "paddleocr_trt_cache").mkdir(parents=True)
    (project / "paddleocr_trt_cache" / "notes.txt").write_text("mine")
    (project / "src.py").write_text("print(1)")
    before = snapshot(project)
    for args in (["list"], ["clear", "--all"], ["prune", "--older-than", "0"]):
        proc = run_cli("cache", *args, "--cache-dir", str(project))
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
        assert "give the cache a directory of its own" in proc.stderr
    with pytest.raises(CacheError):
        EngineCache(project).get_or_create(make_key(), _create, artifact_name="m.bin")
    assert snapshot(project) == before


def test_nothing_is_deleted_under_a_root_the_cache_did_not_mark(tmp_path: Path) -> None:
    """A cache dir whose CACHEDIR.TAG was removed: entries are listed but never deleted."""
    root = tmp_path / "cache"
    EngineCache(root).get_or_create(make_key(), _create, artifact_name="m.bin")
    (root / "CACHEDIR.TAG").unlink()
    (root / "notes.txt").write_text("mine")  # populated and unmarked: not the cache's any more
    before = snapshot(root)
    everything(root, make_key())
    snap = {k: v for k, v in snapshot(root).items() if not k.startswith("paddleocr_trt_cache")}
    assert snap == before


# -- 3. hard links ---------------------------------------------------------------------------

HARD_LINK_PLANTS = {
    "lock file": "locks/onnx-{digest}.lock",
    "manifest": "onnx/{digest}/manifest.json",
    "artifact": "onnx/{digest}/model.bin",
    "memo file": "failures/onnx-{digest}.json",
    "hash-index.json": "hash-index.json",
    "CACHEDIR.TAG": "CACHEDIR.TAG",
    "validation image": "validation-images/english_document.png",
}


@pytest.mark.parametrize("where", sorted(HARD_LINK_PLANTS))
def test_hard_link_planted_at_a_file_is_never_written_through(where: str, tmp_path: Path) -> None:
    """main: failed for the lock file (its target truncated and overwritten with the lock's
    JSON)."""
    key = make_key()
    root = tmp_path / "cache"
    EngineCache(root).get_or_create(make_key(precision="bf16"), _create, artifact_name="m.bin")
    for sub in ("locks", "failures", "validation-images", "onnx"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)
    victim = tmp_path / "victim.txt"
    victim.write_text('{"precious": "years of work"}')
    planted = root / HARD_LINK_PLANTS[where].format(digest=key.digest)
    planted.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if planted.exists():
        planted.unlink()
    os.link(victim, planted)
    everything(root, key, model_dir(tmp_path))
    assert victim.read_text() == '{"precious": "years of work"}'


def test_lock_files_are_never_truncated(tmp_path: Path) -> None:
    """A lock of ours that holds more than a holder record keeps its bytes past the record."""
    root = tmp_path / "cache"
    key = make_key()
    EngineCache(root).get_or_create(make_key(precision="bf16"), _create, artifact_name="m.bin")
    (root / "locks").mkdir(mode=0o700, exist_ok=True)
    lock = root / "locks" / f"onnx-{key.digest}.lock"
    lock.write_bytes(b"x" * 4096)
    lock.chmod(0o600)
    EngineCache(root).get_or_create(key, _create, artifact_name="m.bin")
    assert lock.stat().st_size == 4096


# -- 4. failures/: private, the user's, never honoured otherwise -----------------------------


@needs_root
def test_memo_of_another_user_or_writable_by_others_is_not_honoured(tmp_path: Path) -> None:
    """main: failed (a 0666 memo of another uid pinned the model to native Paddle)."""
    root = tmp_path / "cache"
    key = make_key()
    EngineCache(root).get_or_create(make_key(precision="bf16"), _create, artifact_name="m.bin")
    memo = FailureMemo(root)
    assert memo.record(key, ValidationFailedError("agreement 0.2")) is not None
    path = root / "failures" / f"onnx-{key.digest}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    os.chown(path, SECOND_UID, SECOND_UID)
    path.chmod(0o666)
    assert FailureMemo(root).get(key) is None
    assert FailureMemo(root).list() == []
    FailureMemo(root).clear()
    assert path.exists()  # not ours: never deleted either


# -- 5. recovery: signals are retried, corrupt records never crash a command -------------------


def test_sigkill_of_the_conversion_child_is_not_remembered(ocr_models, tmp_path: Path) -> None:
    """main: failed (a SIGKILL of the paddle2onnx child, what the OOM killer does, was
    remembered as a permanent failure)."""
    from paddleocr_trt.pipeline import ArtifactPipeline

    pipeline = ArtifactPipeline(EngineCache(tmp_path / "cache"))
    me = os.getpid()
    killed: list[int] = []

    def kill_first_child() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and _ppid(int(pid)) == me:
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_first_child)
    watcher.start()
    with pytest.raises(ConversionError, match="killed"):
        pipeline.onnx(ocr_models.cls, "cls")
    watcher.join()
    assert killed
    assert FailureMemo(pipeline.cache.root).list() == []


def _ppid(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rfind(")") + 2 :].split()[1])


def _entry(root: Path) -> Path:
    return EngineCache(root).get_or_create(make_key(), _create, artifact_name="m.bin").path


def _rewrite(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "changes",
    [
        {"created": 1e300},
        {"last_used": -5},
        {"created": "yesterday"},
        {"validation": {"agreement": "0.99", "passed": True}},
        {"validation": {"agreement": 0.99, "passed": "yes"}},
        {"metadata": {"input_names": 3}},
    ],
    ids=lambda c: json.dumps(c)[:40],
)
def test_corrupt_manifest_is_broken_everywhere_and_never_a_traceback(
    changes: dict, tmp_path: Path
) -> None:
    """main: failed (1e300 crashed `cache list/info`; a string agreement said `ok` while the
    model stayed native forever)."""
    root = tmp_path / "cache"
    entry = _entry(root)
    _rewrite(entry / "manifest.json", **changes)
    listed = run_cli("cache", "list", "--json", "--cache-dir", str(root))
    assert listed.returncode == 0
    (row,) = json.loads(listed.stdout)["entries"]
    assert row["ok"] is False and row["problem"]
    info = run_cli("cache", "info", entry.name, "--cache-dir", str(root))
    assert info.returncode == 1 and "BROKEN" in info.stdout
    assert EngineCache(root).get(make_key()) is None  # not served: rebuilt
    again = EngineCache(root).get_or_create(make_key(), _create, artifact_name="m.bin")
    assert again.problem is None
    for args in (["prune", "--older-than", "0"], ["clear", "--all"]):
        assert run_cli("cache", *args, "--cache-dir", str(root)).returncode == 0


@pytest.mark.parametrize(
    "changes",
    [{"created": "x"}, {"created": 1e300}, {"context": []}, {"attempts": "x"}, {"key": "k"}],
    ids=lambda c: json.dumps(c)[:30],
)
def test_corrupt_memo_is_dropped_with_one_warning(changes: dict, tmp_path: Path) -> None:
    """main: failed (a wrong-typed memo made `cache list` and `cache clear --all` exit with a
    traceback and kept the drop-in native on every run)."""
    root = tmp_path / "cache"
    _entry(root)
    key = make_key(precision="fp16")
    FailureMemo(root).record(key, ValidationFailedError("agreement 0.2"))
    path = root / "failures" / f"onnx-{key.digest}.json"
    _rewrite(path, **changes)
    assert FailureMemo(root).get(key) is None  # the model is tried again, not pinned native
    listed = run_cli("cache", "list", "--cache-dir", str(root))
    assert listed.returncode == 0 and "FAILED" not in listed.stdout
    assert listed.stderr.count("ignoring remembered failure") <= 1
    cleared = run_cli("cache", "clear", "--all", "--cache-dir", str(root))
    assert cleared.returncode == 0
    assert path.exists() == ("key" in changes)  # removed when its key still proves it ours


# -- umask 000 for every command -----------------------------------------------------------------


@pytest.mark.slow
def test_every_command_under_umask_000_creates_only_private_paths(tmp_path: Path) -> None:
    """main: failed (failures/ 0777, demo/models/... 0777/0666, the cache root 0777)."""
    root = tmp_path / "a" / "cache"
    env = {
        "PADDLEOCR_TRT_CACHE_DIR": str(root),
        "HOME": str(tmp_path),
        "PADDLEOCR_TRT_MODELS_DIR": "",
    }
    code = (
        "import sys; from fixtures.cache import make_key; "
        "from paddleocr_trt.cache import EngineCache; "
        "from paddleocr_trt.cache.failures import FailureMemo; "
        "from paddleocr_trt.errors import ValidationFailedError; "
        "from paddleocr_trt.pipeline import ArtifactPipeline; c = EngineCache(sys.argv[1]); "
        "w = lambda d: (d / 'a.bin').write_bytes(b'x') and d / 'a.bin'; "
        "c.get_or_create(make_key(), w, artifact_name='m.bin'); c.fingerprint(sys.argv[2]); "
        "p = ArtifactPipeline(c); p.validation_images(); p.timing_cache_dir(); "
        "FailureMemo(c.root).record(make_key(precision='fp16'), ValidationFailedError('x')); "
        "from paddleocr_trt.testing.models import prepare_models; prepare_models()"
    )
    made = run_py(code, str(root), str(model_dir(tmp_path)), env=env)
    assert made.returncode == 0, made.stderr
    for args in (
        ["cache", "list"],
        ["cache", "info", make_key().digest],
        ["cache", "prune", "--older-than", "9999"],
        ["demo", str(tmp_path / "missing.png")],  # a usage error (exit 2), no traceback
    ):
        proc = run_cli(*args, env=env)
        assert proc.returncode in (0, 2), proc.stderr
    made_paths = [root, *root.rglob("*")]
    names = {p.name for p in made_paths}
    assert {"failures", "models", "locks", "validation-images", "timing"} <= names
    assert any(p.name == "inference.pdiparams" for p in made_paths)  # the demo's model copies
    for path in [tmp_path / "a", *made_paths]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"
