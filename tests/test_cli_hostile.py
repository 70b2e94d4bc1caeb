"""Issue 12 from the command line: bad settings and arguments are one line and exit 2, ``-o``
never replaces what is not a regular file or follows a planted link, a wrong model type is
named, a full disk is "cache full". Real CLI, real conversions (one, shared), real uids."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.cache import read_only, tmpfs, world_traversable_tmpdir

from paddleocr_trt.cli import main as cli_main
from paddleocr_trt.settings import ENV_WORKSPACE_GB


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = cli_main.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


CLI = (sys.executable, "-m", "paddleocr_trt.cli.main")


def assert_one_line(code: int, err: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err


@pytest.fixture(scope="module")
def warm_cls(ocr_models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cls model dir, a cache that already holds its validated ONNX): one real conversion."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    proc = subprocess.run(
        [*CLI, "convert", str(ocr_models.cls), "--cache-dir", str(cache)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(ocr_models.cls), cache


# -- 6. settings and arguments: validated up front, one line, exit 2 ---------------------------


@pytest.mark.parametrize("value", ["abc", "-1", "0", "nan", "inf"])
def test_bad_workspace_env_is_one_line_exit_2(
    value: str, ocr_models, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV_WORKSPACE_GB, value)
    code, _, err = run_cli(capsys, "optimize", ocr_models.det, "--cache-dir", tmp_path)
    assert_one_line(code, err, 2, ENV_WORKSPACE_GB)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0"])
def test_bad_workspace_argument_is_one_line_exit_2(
    value: str, ocr_models, capsys, tmp_path: Path
) -> None:
    args = ("optimize", ocr_models.det, f"--workspace-gb={value}", "--cache-dir", tmp_path)
    code, _, err = run_cli(capsys, *args)
    assert_one_line(code, err, 2, "--workspace-gb must be a positive, finite number")


@pytest.mark.parametrize("value", ["4", float("nan"), float("inf"), True, -2])
def test_optimizer_rejects_a_bad_workspace_with_a_clear_error(value: object) -> None:
    from paddleocr_trt.optimizer import TensorRTOptimizer

    with pytest.raises(ValueError, match="workspace_gb must be a"):
        TensorRTOptimizer(workspace_gb=value)  # type: ignore[arg-type]


def test_non_yaml_inference_yml_is_named_before_any_conversion(
    ocr_models, capsys, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(ocr_models.cls, model)
    (model / "inference.yml").write_text("Global: {model_name: [unclosed\n")
    cache = tmp_path / "cache"
    start = time.perf_counter()
    code, _, err = run_cli(capsys, "convert", model, "--type", "cls", "--cache-dir", cache)
    assert_one_line(code, err, 2, "cannot read inference.yml")
    assert time.perf_counter() - start < 5  # no conversion ran
    assert not (cache / "onnx").exists()


def test_validation_images_path_that_is_a_file_is_a_cache_error(tmp_path: Path) -> None:
    from paddleocr_trt.cache import EngineCache
    from paddleocr_trt.errors import CacheError
    from paddleocr_trt.pipeline import ArtifactPipeline

    root = tmp_path / "cache"
    EngineCache(root).fsroot.open(create=True).close()  # a cache root the cache made
    (root / "validation-images").write_text("not a dir")
    with pytest.raises(CacheError, match="validation-images is not a directory"):
        ArtifactPipeline(EngineCache(root)).validation_images()


def test_full_disk_is_reported_as_cache_full(ocr_models, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with tmpfs(disk, "400k") as reason:
        if reason:
            pytest.skip(reason)
        cache = disk / "cache"
        proc = subprocess.run(
            [*CLI, "convert", str(ocr_models.cls), "--cache-dir", str(cache), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert f"cache directory {cache} is full" in proc.stdout, proc.stdout[-2000:]
        assert [p.name for p in (cache / "tmp").iterdir()] == []


# -- 3. -o: never replace what is not a regular file, never follow a planted temp name --------


@pytest.mark.parametrize("node", ["fifo", "char-device"])
def test_output_that_is_not_a_regular_file_is_refused(
    node: str, warm_cls: tuple[Path, Path], capsys, tmp_path: Path
) -> None:
    model, cache = warm_cls
    dest = tmp_path / "out.onnx"
    if node == "fifo":
        os.mkfifo(dest)
    else:
        if os.geteuid() != 0:
            pytest.skip("mknod of a device needs root")
        os.mknod(dest, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null twin
    kind = stat.S_IFMT(dest.lstat().st_mode)
    code, _, err = run_cli(capsys, "convert", model, "-o", dest, "--cache-dir", cache)
    assert_one_line(code, err, 2, "not a regular file")
    assert stat.S_IFMT(dest.lstat().st_mode) == kind


def test_output_temp_name_planted_as_a_link_is_not_followed(
    warm_cls: tuple[Path, Path], capsys, tmp_path: Path
) -> None:
    model, cache = warm_cls
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / ".cls.onnx.tmp").symlink_to(victim)
    dest = out_dir / "cls.onnx"
    code, _, err = run_cli(capsys, "convert", model, "-o", dest, "--cache-dir", cache)
    assert code == 0, err
    assert victim.read_text() == "keep me"
    assert dest.is_file() and not dest.is_symlink()
    assert dest.read_bytes()[:2] == b"\x08\x07" or dest.stat().st_size > 100_000


def test_output_under_a_file_is_a_usage_error(warm_cls, capsys, tmp_path: Path) -> None:
    model, cache = warm_cls
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "convert", model, "-o", blocker / "x.onnx", "--cache-dir", cache)
    assert_one_line(code, err, 2, "is not a directory")


def test_output_into_an_unwritable_dir_is_a_usage_error(ocr_models) -> None:
    base = world_traversable_tmpdir()
    try:
        locked = base / "locked"
        locked.mkdir()
        args = ["-o", str(locked / "cls.onnx"), "--cache-dir", str(base / "cache")]
        with read_only(locked) as (_, user):
            proc = subprocess.run(
                [*CLI, "convert", str(ocr_models.cls), *args],
                capture_output=True,
                text=True,
                timeout=120,
                cwd="/",
                user=user,
            )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert f"directory {locked} is not writable" in proc.stderr
        assert not (base / "cache").exists()  # refused before any work
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- 7. a wrong model type is named ---------------------------------------------------------------


def test_model_type_from_config_reads_the_post_processor(ocr_models) -> None:
    from paddleocr_trt.model_types import ModelType, locate_model_files, model_type_from_config

    for mtype in ModelType:
        files = locate_model_files(ocr_models.dir_for(mtype))
        assert model_type_from_config(files) is mtype


@pytest.mark.parametrize("method", ["optimize_model", "convert_model"])
def test_wrong_model_type_is_named_before_anything_runs(
    method: str, ocr_models, tmp_path: Path
) -> None:
    from paddleocr_trt.optimizer import TensorRTOptimizer

    optimizer = TensorRTOptimizer(cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="describes a recognition model"):
        getattr(optimizer, method)(ocr_models.rec, model_type="detection")
    assert not (tmp_path / "cache" / "onnx").exists()


def test_wrong_model_type_on_the_command_line_exits_2(ocr_models, capsys, tmp_path) -> None:
    code, _, err = run_cli(
        capsys, "convert", ocr_models.rec, "--type", "det", "--cache-dir", tmp_path
    )
    assert_one_line(code, err, 2, "describes a recognition model")
