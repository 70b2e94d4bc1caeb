"""Every ``PADDLEOCR_TRT_*`` setting is validated the same way at every entry (issue 19.6, 21.3).

The table: each setting x junk values x each entry point, run in one real interpreter
(``workers/settings_entries.py``): every CLI command exits 2 with one ``error:`` line naming
the setting and a valid example (one JSON document under ``--json``); ``TensorRTOptimizer()``
raises a ``ValueError`` naming it; the drop-in makes no engine request (PaddleOCR runs natively)
and says so in one warning. Then: explicit arguments, CLI options that mirror a setting, a real
drop-in run under a bad setting (same results as plain PaddleOCR), and one-line CLI failures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paddleocr_trt.settings import (
    ENV_BUILD_TIMEOUT_S,
    ENV_CACHE_DIR,
    ENV_CUDA_GRAPHS,
    ENV_DISABLE,
    ENV_ENGINE,
    ENV_LOG_LEVEL,
    ENV_MODEL_SOURCE,
    ENV_MODELS_DIR,
    ENV_PIPELINE,
    ENV_WORKSPACE_GB,
    SETTINGS,
    SettingsError,
)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "workers" / "settings_entries.py"
CLI = (sys.executable, "-m", "paddleocr_trt.cli.main")
A_FILE = str(Path(__file__).resolve())  # exists and is not a directory

JUNK: dict[str, list[str]] = {
    ENV_DISABLE: ["abc", "2"],
    ENV_CACHE_DIR: ["/proc/paddleocr_trt", A_FILE],
    ENV_ENGINE: ["cuda-magic", " , "],
    ENV_WORKSPACE_GB: ["abc", "1e99", "0", "nan", "-inf"],
    ENV_BUILD_TIMEOUT_S: ["soon", "1e300", "-5", "inf"],
    ENV_PIPELINE: ["abc", "enabled"],
    ENV_CUDA_GRAPHS: ["abc"],
    ENV_LOG_LEVEL: ["loud", "99"],
    ENV_MODELS_DIR: ["/sys/models", A_FILE],
    ENV_MODEL_SOURCE: ["tensorflow"],
}


def _commands(model_dir: str, cache: str) -> list[list[str]]:
    return [
        ["demo", "--json"],
        ["doctor"],
        ["optimize", model_dir],
        ["convert", model_dir, "--json"],
        ["benchmark", "--model-dir", model_dir],
        ["cache", "list", "--cache-dir", cache],
        ["cache", "info", "0123abcd", "--json"],
        ["cache", "clear", "--all", "--cache-dir", cache],
        ["cache", "prune", "--older-than", "1"],
    ]


def test_the_table_covers_every_documented_setting() -> None:
    assert set(JUNK) == set(SETTINGS)
    # README text not yet folded in by the integrator waits in docs/changes/<helper>.md
    docs = [ROOT / "README.md", *sorted((ROOT / "docs" / "changes").glob("*.md"))]
    text = "".join(path.read_text(encoding="utf-8") for path in docs)
    missing = [name for name in SETTINGS if f"| `{name}" not in text]
    assert not missing, f"settings no README table row names: {missing}"


@pytest.fixture(scope="module")
def table(ocr_models, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    cache = tmp_path_factory.mktemp("settings_cache")
    job = {
        "cases": [[name, value] for name, values in JUNK.items() for value in values],
        "commands": _commands(str(ocr_models.cls), str(cache)),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLEOCR_TRT_")}
    env["PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK"] = "True"
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not any(cache.iterdir()), "a command wrote to the cache under a bad setting"
    return rows


def _row_ids() -> list[str]:
    return [f"{name}={value}" for name, values in JUNK.items() for value in values]


@pytest.mark.parametrize("index", range(len(_row_ids())), ids=_row_ids())
def test_every_cli_command_refuses_in_one_line(table, index: int) -> None:
    row = table[index]
    for argv, run in zip(_commands("MODEL", "CACHE"), row["cli"], strict=True):
        where = f"{row['name']}={row['value']!r} {' '.join(argv)}"
        assert run["code"] == 2, where + "\n" + run["stderr"]
        lines = run["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (where, lines)
        assert row["name"] in lines[0] and f"e.g. {row['name']}=" in lines[0], (where, lines)
        if "--json" in argv:
            assert json.loads(run["stdout"])["error"] == lines[0][len("error: ") :], where
        else:
            assert run["stdout"] == "", where


@pytest.mark.parametrize("index", range(len(_row_ids())), ids=_row_ids())
def test_the_optimizer_raises_a_value_error_naming_the_setting(table, index: int) -> None:
    row = table[index]
    got = row["optimizer"]
    assert got["raised"] == "SettingsError" and got["value_error"], got
    assert row["name"] in got["message"] and f"e.g. {row['name']}=" in got["message"], got


@pytest.mark.parametrize("index", range(len(_row_ids())), ids=_row_ids())
def test_the_drop_in_runs_natively_with_one_warning(table, index: int) -> None:
    row = table[index]
    got = row["drop_in"]
    assert got["requests"] == [False] * 6, got
    assert len(got["warnings"]) == 1, got
    assert row["name"] in got["warnings"][0] and "natively" in got["warnings"][0], got


# -- explicit arguments: the caller's mistake, raised where it was made -------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"trt_engine": 123},
        {"trt_engine": [1]},
        {"trt_engine": {}},
        {"trt_engine": "openvino"},
        {"trt_engine": ""},
        {"trt_pipeline": "yes"},
        {"trt_pipeline": 1},
    ],
    ids=repr,
)
def test_bad_drop_in_keywords_are_value_errors(kwargs: dict) -> None:
    from paddleocr._common_args import parse_common_args

    from paddleocr_trt.activation.patches import _wrap_parse_common_args

    parse = _wrap_parse_common_args(parse_common_args)
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name) as caught:
        parse(dict(kwargs), default_enable_hpi=False)
    assert not isinstance(caught.value, TypeError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"workspace_gb": 1e99},
        {"workspace_gb": 0},
        {"workspace_gb": "4"},
        {"build_timeout_s": 1e300},
        {"build_timeout_s": float("nan")},
        {"build_timeout_s": 0},
        {"cache_dir": "/proc/paddleocr_trt"},
        {"cache_dir": A_FILE},
    ],
    ids=repr,
)
def test_bad_optimizer_arguments_are_settings_errors(kwargs: dict) -> None:
    from paddleocr_trt import TensorRTOptimizer

    with pytest.raises(SettingsError, match=next(iter(kwargs))):
        TensorRTOptimizer(**kwargs)


def test_the_optimizer_honours_the_workspace_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from paddleocr_trt import TensorRTOptimizer

    monkeypatch.setenv(ENV_WORKSPACE_GB, "2.5")
    assert TensorRTOptimizer().options.workspace_bytes == int(2.5 * (1 << 30))
    assert TensorRTOptimizer(workspace_gb=1).options.workspace_bytes == 1 << 30


def test_a_workspace_beyond_the_gpu_is_refused() -> None:
    from paddleocr_trt.settings import check_workspace_fits

    check_workspace_fits(4 << 30, 80 << 30, "a GPU")
    with pytest.raises(SettingsError, match=f"{ENV_WORKSPACE_GB}.*80.0 GiB"):
        check_workspace_fits(100 << 30, 80 << 30, "a GPU")


@pytest.mark.parametrize(
    "option",
    [
        "--workspace-gb=1e99",
        "--build-timeout=1e300",
        "--build-timeout=nan",
        "--cache-dir=/proc/paddleocr_trt",
    ],
)
def test_cli_options_that_mirror_a_setting_are_checked_alike(ocr_models, option: str) -> None:
    proc = subprocess.run(
        [*CLI, "optimize", str(ocr_models.cls), option], capture_output=True, text=True, timeout=120
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert option.split("=")[0] in lines[0] and "e.g." in lines[0], lines


def test_a_cache_dir_the_kernel_refuses_is_an_error_not_a_recursion() -> None:
    """Under /proc mkdir answers ENOENT even after its parents "exist": creating the cache root
    there must fail once (an OSError or CacheError), not retry itself into a RecursionError."""
    from paddleocr_trt.cache.root import CacheRoot
    from paddleocr_trt.errors import CacheError

    with pytest.raises((CacheError, OSError)):
        CacheRoot(Path("/proc/paddleocr_trt/cache")).open(create=True)


# -- a real drop-in run under a bad setting: same results as plain, one warning -------------------


@pytest.mark.slow
def test_a_bad_setting_leaves_paddleocr_running_natively(ocr_models, sample_images) -> None:
    from fixtures.engines import PLAIN, run_worker

    image = next(s for s in sample_images if s.kind == "document")
    job = {
        "models": ocr_models.paddleocr_kwargs(textline_orientation=True),
        "images": [str(image.path)],
        "image_dir": str(image.path.parent),
        "pipelines": {"plain": PLAIN, "drop_in": {**PLAIN, "trt_engine": "onnxruntime"}},
        "cases": ["single"],
    }
    env = {**os.environ, ENV_DISABLE: "abc", "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK": "True"}
    out = run_worker(job, env)
    plain, drop_in = out["results"]["plain"]["single"], out["results"]["drop_in"]["single"]
    assert plain[0]["rec_texts"] and drop_in == plain
    assert all(d["backend"] == "paddle" for d in out["report"]) or not out["report"]
    said = [line for line in out["log"] if ENV_DISABLE in line]
    assert len(said) == 1 and "natively" in said[0], out["log"]


# -- one-line CLI failures, the child's output with --verbose -------------------------------------


@pytest.mark.slow
def test_a_failed_conversion_is_one_line_unless_verbose(ocr_models, tmp_path: Path) -> None:
    model = tmp_path / "truncated"
    shutil.copytree(ocr_models.cls, model)
    weights = model / "inference.pdiparams"
    weights.write_bytes(weights.read_bytes()[:20_000])

    def convert(*extra: str) -> subprocess.CompletedProcess[str]:
        cache = tmp_path / f"cache{len(extra)}"  # a fresh cache: no remembered failure
        argv = [*CLI, *extra, "convert", str(model), "--type", "cls", "--cache-dir", str(cache)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)

    quiet = convert()
    assert quiet.returncode == 1, quiet.stderr
    said = quiet.stdout + quiet.stderr
    assert "Traceback" not in said and 'File "' not in said, said
    failures = [line for line in said.splitlines() if "to ONNX failed at step" in line]
    assert failures, said
    for line in failures:  # the child's own error, at the end of the one line
        assert "Error: " in line.rsplit("): ", 1)[-1], line
    verbose = convert("--verbose")
    assert verbose.returncode == 1
    assert 'File "' in verbose.stderr, "the child's traceback is not shown with --verbose"
