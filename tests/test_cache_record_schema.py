"""Issue 19: every record the cache reads from disk (entry manifests, failure memos, the hash
index) is schema-checked; property-based fuzzing (Hypothesis) of each field with arbitrary JSON.

Whatever a record holds, no cache operation and no ``cache`` command raises or prints a
traceback; a record that is off is treated as corruption (not served / not honoured, listed as
broken or dropped with a warning), never trusted. Real files in a real cache root.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.cache import make_key
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paddleocr_trt.cache import EngineCache
from paddleocr_trt.cache.failures import FailureMemo
from paddleocr_trt.cache.manifest import schema_problem
from paddleocr_trt.cli import main as cli
from paddleocr_trt.errors import ValidationFailedError

FUZZ = settings(
    max_examples=int(os.environ.get("PADDLEOCR_TRT_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
KEY = make_key()
MEMO_KEY = make_key(precision="fp16")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e300, -1.0, 0, "", "0.99", "yesterday", "a" * 24])
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _create(tmp_dir: Path) -> Path:
    path = tmp_dir / "a.bin"
    path.write_bytes(os.urandom(512))
    return path


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real cache root with one entry, one remembered failure and a hash index."""
    base = tmp_path_factory.mktemp("pristine")
    root = base / "cache"
    cache = EngineCache(root)
    entry = cache.get_or_create(
        KEY, _create, artifact_name="m.bin", validate_fn=lambda _p: {"passed": True, "agreement": 1}
    )
    FailureMemo(root).record(MEMO_KEY, ValidationFailedError("agreement 0.2"))
    model = base / "model"
    model.mkdir()
    for name in ("inference.pdmodel", "inference.pdiparams"):
        (model / name).write_bytes(os.urandom(64))
        os.utime(model / name, (time.time() - 3600,) * 2)
    time.sleep(2.1)  # past the hash index's racy window (ctime is now): the index records them
    fingerprint = cache.fingerprint(model).digest
    assert (root / "hash-index.json").is_file()
    return {"root": root, "entry": entry.path.relative_to(root), "model": model, "fp": fingerprint}


@contextlib.contextmanager
def copy_of(pristine: dict[str, Any]) -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="paddleocr_trt_fuzz_"))
    try:
        root = base / "cache"
        shutil.copytree(pristine["root"], root, symlinks=True)
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


def mutate(data: dict[str, Any], path: str, value: Any, delete: bool) -> dict[str, Any]:
    """``data`` with the field at dotted ``path`` set to ``value`` (or deleted)."""
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if delete:
        node.pop(last, None)
    else:
        node[last] = value
    return data


def run(*args: str) -> tuple[int, str, str]:
    """A CLI command in this process; a raised exception fails the test (a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


MANIFEST_FIELDS = [
    "schema_version",
    "digest",
    "kind",
    "key",
    "key.precision",
    "key.key_version",
    "artifact",
    "files",
    "files.m.bin",
    "created",
    "last_used",
    "build_seconds",
    "validation",
    "validation.agreement",
    "validation.passed",
    "validation.tensor_stats",
    "metadata",
    "metadata.input_names",
    "metadata.precision",
    "created_by",
    "package_version",
]


@FUZZ
@given(field=st.sampled_from(MANIFEST_FIELDS), value=json_values, delete=st.booleans())
# found by CI's fuzzing: a null agreement was served and broke `float(agreement)` callers
@example(field="validation.agreement", value=None, delete=False)
def test_any_manifest_is_served_only_when_valid(pristine, field, value, delete) -> None:
    with copy_of(pristine) as root:
        path = root / pristine["entry"] / "manifest.json"
        manifest = json.loads(path.read_text())
        if field == "files.m.bin":  # dotted name: the file record itself
            manifest["files"]["m.bin"] = value
            changed = manifest
        else:
            changed = mutate(manifest, field, value, delete)
        path.write_text(json.dumps(changed))
        code, out, _ = run("cache", "list", "--json", "--cache-dir", str(root))
        assert code == 0 and json.loads(out)["cache_dir"] == str(root)
        assert run("cache", "info", KEY.digest, "--cache-dir", str(root))[0] in (0, 1)
        served = EngineCache(root).get(KEY)
        if served is not None:
            assert schema_problem(served.manifest, KEY.digest, KEY.kind) is None
            agreement = (served.validation or {}).get("agreement", 0.0)
            assert f"{agreement:.4f}"  # what the drop-in formats from it
        EngineCache(root).get_or_create(KEY, _create, artifact_name="m.bin")
        assert run("cache", "prune", "--older-than", "0", "--cache-dir", str(root))[0] == 0
        assert run("cache", "clear", "--all", "--cache-dir", str(root))[0] == 0


MEMO_FIELDS = [
    "schema_version",
    "digest",
    "kind",
    "key",
    "key.precision",
    "reason",
    "error_type",
    "created",
    "attempts",
    "context",
    "context.timeout_s",
    "context.timed_out",
    "package_version",
]


@FUZZ
@given(field=st.sampled_from(MEMO_FIELDS), value=json_values, delete=st.booleans())
def test_any_memo_is_honoured_only_when_valid(pristine, field, value, delete) -> None:
    with copy_of(pristine) as root:
        path = root / "failures" / f"onnx-{MEMO_KEY.digest}.json"
        path.write_text(json.dumps(mutate(json.loads(path.read_text()), field, value, delete)))
        for record in FailureMemo(root).list():
            assert record.describe()  # formats its time and reason
            assert isinstance(record.created, float) and isinstance(record.context, dict)
        found = FailureMemo(root).get(MEMO_KEY)
        assert found is None or found.key == MEMO_KEY.to_dict()
        code, out, _ = run("cache", "list", "--json", "--cache-dir", str(root))
        assert code == 0 and json.loads(out)
        assert run("cache", "clear", "--all", "--cache-dir", str(root))[0] == 0


@FUZZ
@given(
    field=st.sampled_from(["version", "files", "files.*", "files.*.stat", "files.*.sha256"]),
    value=json_values,
    delete=st.booleans(),
)
def test_any_hash_index_never_breaks_a_fingerprint(pristine, field, value, delete) -> None:
    with copy_of(pristine) as root:
        path = root / "hash-index.json"
        data = json.loads(path.read_text())
        target = next(iter(data["files"]))
        if field.startswith("files.*"):
            record = data["files"][target]
            sub = field[len("files.*.") :]
            data["files"][target] = value if not sub else mutate(record, sub, value, delete)
        else:
            data = mutate(data, field, value, delete)
        path.write_text(json.dumps(data))
        digest = EngineCache(root).fingerprint(pristine["model"]).digest
        kept = json.loads(path.read_text())["files"].get(target)
        if field != "files.*.sha256" or not isinstance(value, str) or len(value) != 64:
            assert digest == pristine["fp"]  # a record the schema drops is never trusted
        assert kept is None or isinstance(kept, dict)
        assert run("cache", "list", "--cache-dir", str(root))[0] == 0
        assert run("cache", "clear", "--all", "--cache-dir", str(root))[0] == 0
