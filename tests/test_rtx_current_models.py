"""Real TensorRT-RTX builds of PaddleOCR 3.x's current models (issue 20.1), built, never run.

The fused fp16 det and rec graphs of PP-OCRv5 mobile (Paddle PIR, converted here) and PP-OCRv6
small (ONNX model dirs, their source graph checked, not converted) go through the same attempt
code as the PP-OCRv4 builds of ``test_rtx_builds.py`` (``build_plan``: the fp16 conversion, then
fusion, then ``builder.build_engine``), with the shipped default profiles bounded by each
model's own inference.yml (``ResolvedModel.profile_limits``, as ``artifact.profiles_for`` does).
fp16 only, to keep CI short. Seconds and plan bytes land in ``.cache/test/rtx-builds.json``.
Nothing here has a GPU TensorRT-RTX runs on: these plans are built, not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
from test_rtx_builds import build_graph, check_engine_io, record_builds

from paddleocr_trt.backend.onnx.convert import convert_to_onnx
from paddleocr_trt.backend.onnx.source_onnx import check_source_onnx
from paddleocr_trt.engines.tensorrt import adapter
from paddleocr_trt.engines.tensorrt.config import BuildSettings
from paddleocr_trt.engines.tensorrt.flavors import DEFAULT_RTX_TARGETS, RTX
from paddleocr_trt.fusion.artifacts import fused_input_name, with_side_inputs
from paddleocr_trt.model_resolve import resolve_model
from paddleocr_trt.model_types import ModelType
from paddleocr_trt.profiles import default_profiles

MODEL_TYPES = (ModelType.DETECTION, ModelType.RECOGNITION)


@pytest.fixture(scope="session")
def rtx_current_builds(
    ppocrv5, ppocrv6, test_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """{"PP-OCRv5_mobile_det-fp16": build record, ...}: the 4 fused fp16 graphs, built once."""
    if not adapter.flavor_installed(RTX):
        pytest.fail("tensorrt-rtx is not installed: run scripts/dev.sh setup", pytrace=False)
    root = tmp_path_factory.mktemp("rtx-current")
    records: dict[str, Any] = {}
    for pair in (ppocrv5, ppocrv6):
        for mtype in MODEL_TYPES:
            model = resolve_model(pair.dir_for(mtype), mtype)
            work = root / f"{model.name}-fp16"
            work.mkdir()
            make = check_source_onnx if model.is_onnx else convert_to_onnx
            conv = make(model.files, work / "model.onnx", mtype)  # what ArtifactPipeline.onnx does
            name = fused_input_name(mtype, conv.input_names[0])
            profiles = with_side_inputs(
                mtype, default_profiles(mtype, name, **model.profile_limits()), name
            )
            settings = BuildSettings("fp16", targets=DEFAULT_RTX_TARGETS, progress=False)
            rec = build_graph(mtype, conv.onnx_path, model.model_dir, profiles, settings, work)
            rec["limits"] = model.profile_limits()
            records[f"{model.name}-fp16"] = rec
    record_builds(test_cache_dir, records)
    return records


def test_current_models_build_fused_fp16_plans(rtx_current_builds: dict[str, Any]) -> None:
    names = (
        "PP-OCRv5_mobile_det",
        "PP-OCRv5_mobile_rec",
        "PP-OCRv6_small_det",
        "PP-OCRv6_small_rec",
    )
    assert sorted(rtx_current_builds) == [f"{n}-fp16" for n in names]
    for gid, rec in rtx_current_builds.items():
        result = rec["result"]
        plan = Path(result.plan_path)
        assert plan.is_file() and plan.stat().st_size == result.plan_bytes > 100_000, gid
        assert result.seconds > 0 and result.targets == DEFAULT_RTX_TARGETS, gid
        assert result.precision == "fp16-onnx", gid
        built = Path(result.onnx_path)
        assert built.name.startswith("model.fp16-") and built.name.endswith(".fused.onnx"), gid
        graph = onnx.load(str(built), load_external_data=False).graph
        kinds = {i.data_type for i in graph.initializer}
        assert onnx.TensorProto.FLOAT16 in kinds, gid


def test_current_models_engine_io_is_what_the_runner_binds(
    rtx_current_builds: dict[str, Any],
) -> None:
    for gid, rec in rtx_current_builds.items():
        check_engine_io(gid, rec)


def test_current_models_profiles_follow_their_inference_yml(
    rtx_current_builds: dict[str, Any],
) -> None:
    """inference.yml's Hpi ranges (det to 4000x4000, rec width 3200) bound the built profiles."""
    for gid, rec in rtx_current_builds.items():
        profiles = rec["result"].profiles
        mtype = rec["model_type"]
        image = next(n for n in profiles[0] if n != "db_thresh")
        maxima = [p[image].max for p in profiles]
        if mtype is ModelType.DETECTION:  # the uint8 NHWC image input
            want = rec["limits"].get("det_max_side", 4000)
            assert max(max(m[1], m[2]) for m in maxima) == want, (gid, maxima)
        else:
            edges = rec["limits"].get("rec_width_edges", (960, 3200))
            assert max(m[3] for m in maxima) == edges[-1], (gid, maxima)
