"""``paddleocr-trt doctor --selftest``: build and run real engines here, or say why not.

Two builds, each in a child process (a TensorRT crash cannot take ``doctor`` down): a one-op
ONNX model made with ``onnx.helper`` (does TensorRT work at all?) and the detection model
through the full pipeline (conversion, FP16/FP32 attempts, validation against Paddle). Each
prints its timings and a command that reproduces the build outside paddleocr-trt (Polygraphy,
comparing TensorRT with ONNX Runtime, and trtexec).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ..isolation import ChildProcessFailure, call_in_child

TINY_SHAPE = (1, 3, 32, 32)


def tensorrt_absent_reason() -> str | None:
    from ..integration.decision import cuda_status, tensorrt_status

    for status in (tensorrt_status(), cuda_status()):
        if not status.ok:
            return status.message()
    return None


def _rtx_installed() -> bool:
    from ..engines.tensorrt import adapter
    from ..engines.tensorrt.flavors import RTX

    return adapter.flavor_installed(RTX)


def make_tiny_onnx(path: Path) -> Path:
    """``y = Relu(x)`` with a dynamic batch: the smallest graph TensorRT must build."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *TINY_SHAPE[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", *TINY_SHAPE[1:]])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "tiny", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _shape_arg(shape: tuple[int, ...] | list[int], sep: str) -> str:
    return sep.join(str(d) for d in shape)


def reproduce_commands(
    onnx_path: Path, profile: dict[str, dict[str, list[int]]], precision: str
) -> list[str]:
    """Polygraphy (TensorRT vs ONNX Runtime) and trtexec lines for one build."""
    poly = [f"polygraphy run {onnx_path} --trt --onnxrt"]
    trtexec = [f"trtexec --onnx={onnx_path}"]
    if precision == "fp16":
        poly.append("--fp16")
        trtexec.append("--fp16")
    for flag, key in (("min", "min"), ("opt", "opt"), ("max", "max")):
        poly.append(
            f"--trt-{flag}-shapes "
            + " ".join(f"{n}:[{_shape_arg(s[key], ',')}]" for n, s in profile.items())
        )
        trtexec.append(
            f"--{flag}Shapes="
            + ",".join(f"{n}:{_shape_arg(s[key], 'x')}" for n, s in profile.items())
        )
    return [" ".join(poly), " ".join(trtexec)]


def tiny_engine(payload: dict[str, Any]) -> dict[str, Any]:
    """Child side: build the one-op engine, run it, compare with ONNX Runtime."""
    import numpy as np

    from ..engines.onnxruntime.runner import OnnxRuntimeRunner
    from ..engines.tensorrt.builder import build_engine
    from ..engines.tensorrt.config import BuildSettings
    from ..engines.tensorrt.runner import TensorRTRunner
    from ..profiles import ShapeProfile

    onnx_path, plan = Path(payload["onnx"]), Path(payload["plan"])
    profile = {"x": ShapeProfile((1, *TINY_SHAPE[1:]), TINY_SHAPE, (4, *TINY_SHAPE[1:]))}
    result = build_engine(onnx_path, plan, BuildSettings("fp32", 256 << 20), [profile])
    x = np.random.default_rng(0).standard_normal((2, *TINY_SHAPE[1:])).astype(np.float32)
    started = time.perf_counter()
    with TensorRTRunner(plan, name="selftest") as trt:
        (got,) = trt.infer([x])
    run_ms = (time.perf_counter() - started) * 1000
    with OnnxRuntimeRunner(onnx_path) as ort:
        (want,) = ort.infer([x])
    diff = float(np.max(np.abs(got - want)))
    return {
        "build_seconds": result.seconds,
        "first_run_ms": run_ms,
        "max_abs_diff": diff,
        "passed": diff <= 1e-5,
        "tensorrt_version": result.tensorrt_version,
    }


def find_det_model(explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit
    root = Path.home() / ".paddlex" / "official_models"
    found = sorted(p for p in root.glob("*_det") if p.is_dir()) if root.is_dir() else []
    return found[0] if found else None


def run_selftest(
    *, cache_dir: Path | None, det_model: Path | None, timeout_s: float, out: Any = None
) -> int:
    """Print what was built and how long it took; 0 when everything passed, 1 otherwise."""
    out = out or sys.stdout
    reason = tensorrt_absent_reason()
    if reason is not None and _rtx_installed():
        from .selftest_rtx import rtx_selftest

        print(f"TensorRT      not used: {reason}", file=out)
        return rtx_selftest(cache_dir, find_det_model(det_model), timeout_s, out)
    if reason is not None:
        print(
            f"selftest: TensorRT is absent or unusable here, nothing was built: {reason}", file=out
        )
        return 1
    from ..cache.store import EngineCache

    # created 0700 through the cache root the cache resolved and marked (never ``~/selftest``)
    with EngineCache(cache_dir).fsroot.open("selftest", create=True) as selftest:
        work = selftest.path
    ok = True
    onnx_path = make_tiny_onnx(work / "tiny.onnx")
    tiny_profile = {"x": {"min": [1, 3, 32, 32], "opt": list(TINY_SHAPE), "max": [4, 3, 32, 32]}}
    try:
        res = call_in_child(
            "paddleocr_trt.cli.selftest:tiny_engine",
            {"onnx": str(onnx_path), "plan": str(work / "tiny.plan")},
            timeout_s=timeout_s,
            what="one-op engine build",
            workdir=work / "tiny-child",
        )
        ok &= bool(res["passed"])
        print(
            f"tiny engine   {'passed' if res['passed'] else 'FAILED'}: TensorRT "
            f"{res['tensorrt_version']}, build {res['build_seconds']:.2f} s, first run "
            f"{res['first_run_ms']:.1f} ms, max |diff| vs ONNX Runtime {res['max_abs_diff']:.2g}",
            file=out,
        )
    except ChildProcessFailure as exc:
        ok = False
        print(f"tiny engine   FAILED ({exc.kind}): {exc}", file=out)
    for line in reproduce_commands(onnx_path, tiny_profile, "fp32"):
        print(f"  reproduce:  {line}", file=out)
    ok &= _det_selftest(cache_dir, find_det_model(det_model), timeout_s, out)
    return 0 if ok else 1


def _det_selftest(cache_dir: Path | None, det: Path | None, timeout_s: float, out: Any) -> bool:
    if det is None:
        print("det model     skipped: no *_det model in ~/.paddlex; pass --det-model", file=out)
        return False
    from ..optimizer import TensorRTOptimizer
    from ..profiles import profiles_to_dict

    optimizer = TensorRTOptimizer(cache_dir=cache_dir, build_timeout_s=timeout_s)
    started = time.perf_counter()
    result = optimizer.optimize_model(det, model_type="detection")
    if result is None:
        print(f"det model     FAILED: {optimizer.last_failure}", file=out)
        return False
    print(
        f"det model     passed: {result.precision} engine, agreement "
        f"{result.optimized_accuracy:.4f}, build {result.build_seconds:.1f} s, total "
        f"{time.perf_counter() - started:.1f} s"
        + (f", {result.speedup_factor:.2f}x native" if result.speedup_factor else ""),
        file=out,
    )
    profiles = result.profiles or profiles_to_dict([])
    if result.onnx_path is not None and profiles:
        for line in reproduce_commands(result.onnx_path, profiles[0], result.precision):
            print(f"  reproduce:  {line}", file=out)
    return True
