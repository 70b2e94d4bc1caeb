"""``paddleocr-trt doctor``: would ``PaddleOCR(use_tensorrt=True)`` use TensorRT engines here?

Prints the versions that matter, the GPUs, the answer and its reason, whether the start-up hook
is installed and enabled, and the engine cache. Nothing is built and Paddle is not imported, so
it is quick enough to paste into a bug report.

Exit codes: 0 an engine (TensorRT, or ONNX Runtime where $PADDLEOCR_TRT_ENGINE names it) would
be used; 1 PaddleOCR would fall back to native Paddle (the reason is printed); 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import site
import sys
from pathlib import Path
from typing import Any

from ..versions import installed

EXIT_OK, EXIT_FALLBACK, EXIT_USAGE = 0, 1, 2

HOOK_FILE = "paddleocr_trt_startup.pth"

#: label -> distribution names that provide it (first installed one wins)
PACKAGES: dict[str, tuple[str, ...]] = {
    "paddleocr_trt": ("paddleocr-trt",),
    "paddle": ("paddlepaddle-gpu", "paddlepaddle"),
    "paddleocr": ("paddleocr",),
    "paddlex": ("paddlex",),
    "paddle2onnx": ("paddle2onnx",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    "cuda-python": ("cuda-python", "cuda-bindings"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check whether PaddleOCR(use_tensorrt=True) would use TensorRT here, and why not",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default: $PADDLEOCR_TRT_CACHE_DIR, else ~/.cache/paddleocr_trt)",
    )
    parser.add_argument(
        "--precision", default="fp16", choices=["fp16", "fp32"], help="precision to ask for"
    )
    parser.add_argument(
        "--selftest",
        action="store_true",
        help="build and run a one-op engine and the det model here (child processes), with "
        "timings and reproduction commands; exit 1 if TensorRT is absent or a build fails",
    )
    parser.add_argument("--det-model", type=Path, default=None, help="det model dir for --selftest")
    parser.add_argument(
        "--build-timeout", type=float, default=900.0, help="seconds per --selftest build"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.selftest:
        from .selftest import run_selftest

        if not args.build_timeout > 0:
            print("error: --build-timeout must be positive", file=sys.stderr)
            return EXIT_USAGE
        return run_selftest(
            cache_dir=args.cache_dir, det_model=args.det_model, timeout_s=args.build_timeout
        )
    report = collect(cache_dir=args.cache_dir, precision=args.precision)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_human(report)
    return EXIT_OK if report["decision"]["ok"] else EXIT_FALLBACK


def collect(*, cache_dir: Path | None = None, precision: str = "fp16") -> dict[str, Any]:
    """Everything ``doctor`` reports, as a JSON-ready dict."""
    from .doctor_flavor import flavor_advice

    tensorrt, cuda = _tensorrt(), _cuda()
    activation = _activation()
    builds = _cuda_builds()
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "platform": platform.platform(),
        "packages": {label: _version(dists) for label, dists in PACKAGES.items()},
        "tensorrt": tensorrt,
        "cuda": cuda,
        "cuda_builds": builds,
        "flavor": flavor_advice(cuda, builds),
        "activation": activation,
        "engines": _engines(precision),
        "decision": _decision(precision, activation),
        "cache": _cache(cache_dir),
    }


def _version(dists: tuple[str, ...]) -> dict[str, str] | None:
    found = installed(*dists)
    return {"distribution": found[0], "version": found[1]} if found else None


def _availability(status: Any) -> dict[str, Any]:
    return {
        "ok": status.ok,
        "code": status.code,
        "reason": status.reason,
        "remedy": status.remedy,
        "message": status.message(),
    }


def _tensorrt() -> dict[str, Any]:
    from ..integration.decision import tensorrt_status

    return _availability(tensorrt_status())


def _cuda() -> dict[str, Any]:
    from ..backend.cuda import runtime

    ok, reason = runtime.cuda_available()
    devices: list[dict[str, Any]] = []
    error = None
    if ok:
        try:
            for device_id in range(runtime.device_count()):
                info = runtime.device_info(device_id)
                devices.append(
                    {
                        "id": info.device_id,
                        "name": info.name,
                        "compute_capability": ".".join(map(str, info.compute_capability)),
                        "arch": info.arch,
                        "total_memory_bytes": info.total_memory,
                        "uuid": info.uuid,
                    }
                )
        except Exception as exc:  # a half-broken driver is itself a finding
            error = f"{type(exc).__name__}: {exc}"
    return {
        "available": ok,
        "reason": reason,
        "device_count": len(devices),
        "devices": devices,
        "error": error,
    }


def _cuda_builds() -> dict[str, Any]:
    """Driver CUDA version vs the CUDA major of the installed TensorRT and cuda-python."""
    from .cuda_check import check_installation

    try:
        return check_installation().to_dict()
    except Exception as exc:  # never let the check itself break doctor
        return {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"], "install": None}


def _hook_paths() -> list[Path]:
    dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if user:
        dirs.append(user)
    return [Path(d) / HOOK_FILE for d in dict.fromkeys(dirs) if (Path(d) / HOOK_FILE).is_file()]


def _activation() -> dict[str, Any]:
    from .. import _startup
    from ..settings import ENV_DISABLE, is_disabled

    hooks = _hook_paths()
    return {
        "hook_installed": bool(hooks),
        "hook_paths": [str(p) for p in hooks],
        "disabled": is_disabled(),
        "disable_env": ENV_DISABLE,
        "disable_env_value": os.environ.get(ENV_DISABLE),
        "active_in_this_process": any(
            isinstance(f, _startup._ImportWatcher) for f in sys.meta_path
        ),
    }


def _engines(precision: str) -> dict[str, Any]:
    """Each engine backend's answer for a GPU request, and the order the user configured."""
    from ..integration.decision import decide_engine, onnxruntime_provider, target_of
    from ..integration.request import TensorRTRequest, env_engines
    from ..settings import ENGINE_NAMES

    request = TensorRTRequest(precision=precision, device="gpu", engines=env_engines())
    out: dict[str, Any] = {"requested": list(request.engines)}
    for engine in ENGINE_NAMES:
        status = decide_engine(engine, request, {"device_type": "gpu"})
        out[engine] = _availability(status)
        if engine == "onnxruntime" and status.ok:
            out[engine]["provider"] = onnxruntime_provider(target_of(request, {}))
    return out


def _decision(precision: str, activation: dict[str, Any]) -> dict[str, Any]:
    """What ``PaddleOCR(use_tensorrt=True, device="gpu")`` would do, in the hook's own terms."""
    from ..integration.decision import decide_engine
    from ..integration.request import TensorRTRequest, env_engines
    from ..settings import ENV_DISABLE

    if activation["disabled"]:
        reason = f"paddleocr_trt is disabled by {ENV_DISABLE}"
        code, remedy = "disabled", f"unset {ENV_DISABLE}"
    elif not activation["hook_installed"]:
        reason = f"the start-up hook {HOOK_FILE} is not in site-packages"
        code, remedy = "hook-missing", "reinstall paddleocr-trt, or call paddleocr_trt.activate()"
    else:
        request = TensorRTRequest(precision=precision, device="gpu", engines=env_engines())
        status, backend = None, "paddle"
        for engine in request.engines:  # the hook's order: first usable engine wins
            status = decide_engine(engine, request, {"device_type": "gpu"})
            if status.ok:
                backend = engine
                break
        assert status is not None
        return {
            "use_tensorrt": backend in ("tensorrt", "tensorrt-rtx"),
            "backend": backend,
            "device": "gpu",
            "precision": precision,
            **_availability(status),
        }
    return {
        "use_tensorrt": False,
        "backend": "paddle",
        "device": "gpu",
        "precision": precision,
        "ok": False,
        "code": code,
        "reason": reason,
        "remedy": remedy,
    }


def _cache(cache_dir: Path | None) -> dict[str, Any]:
    from ..cache.failures import FailureMemo
    from ..cache.store import EngineCache

    cache = EngineCache(cache_dir)
    info: dict[str, Any] = {"path": str(cache.root), "exists": cache.root.is_dir()}
    try:
        info["entries"] = len(cache.entries()) if info["exists"] else 0
        info["size_bytes"] = cache.size_bytes() if info["exists"] else 0
        failures = [
            f"{f.digest[:12]} {f.kind} {f.key.get('model_type', '?')}: {f.describe()}"
            for f in FailureMemo(cache).list()
        ]
        if failures:  # only then: the report's shape stays as it was for a clean cache
            info["failures"] = failures
        info["error"] = None
    except Exception as exc:  # unreadable cache: report it, the rest is still useful
        info.update(entries=None, size_bytes=None, error=f"{type(exc).__name__}: {exc}")
    return info


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _print_human(report: dict[str, Any]) -> None:
    print(f"python        {report['python']['version']} ({report['python']['executable']})")
    for label, dist in report["packages"].items():
        text = f"{dist['version']} ({dist['distribution']})" if dist else "not installed"
        print(f"{label:13s} {text}")
    trt = report["tensorrt"]
    print(f"TensorRT      {'usable: ' + trt['reason'] if trt['ok'] else trt['reason']}")
    cuda = report["cuda"]
    print(f"CUDA          {cuda['reason']}")
    for dev in cuda["devices"]:
        print(
            f"  GPU {dev['id']}: {dev['name']} ({dev['arch']}, {_size(dev['total_memory_bytes'])})"
        )
    if cuda["error"]:
        print(f"  error: {cuda['error']}")
    builds = report["cuda_builds"]
    driver = builds.get("driver_cuda")
    where = f" (via {builds.get('driver_source')})" if driver else ""
    print(f"driver CUDA   {driver or 'unknown'}{where}")
    for label in ("tensorrt", "cuda_python"):
        build = builds.get(label)
        if build:
            print(
                f"  {label:11s} {build['distribution']} {build['version']} "
                f"(built for CUDA {build['cuda_major'] or '?'})"
            )
    for problem in builds.get("problems") or []:
        print(f"  problem:    {problem}")
    if builds.get("install"):
        print(f"  install:    {builds['install']}")
    from .doctor_flavor import advice_lines

    print("\n".join(advice_lines(report["flavor"])))
    act = report["activation"]
    hook = ", ".join(act["hook_paths"]) if act["hook_installed"] else "NOT installed"
    print(f"hook          {hook}")
    disabled = f"yes ({act['disable_env']}={act['disable_env_value']})" if act["disabled"] else "no"
    print(f"disabled      {disabled}")
    cache = report["cache"]
    where = cache["path"] + ("" if cache["exists"] else " (not created yet)")
    print(f"cache         {where}: {cache['entries']} entries, {_size(cache['size_bytes'])}")
    for failure in cache.get("failures") or []:
        print(f"  remembered failure (not retried; `paddleocr-trt cache clear`): {failure}")
    if cache["error"]:
        print(f"  error: {cache['error']}")
    engines = report["engines"]
    print(f"engines       tried in order: {', '.join(engines['requested'])} (PADDLEOCR_TRT_ENGINE)")
    for name in ("tensorrt", "tensorrt-rtx", "onnxruntime"):
        answer = engines[name]
        text = f"usable: {answer['reason']}" if answer["ok"] else answer["message"]
        if answer.get("provider"):
            text += f" on {answer['provider']}"
        print(f"  {name:12s} {text}")
    decision = report["decision"]
    print()
    if decision["ok"]:
        label = {
            "tensorrt": "TensorRT engines",
            "tensorrt-rtx": "TensorRT-RTX engines",
            "onnxruntime": "ONNX Runtime engines",
        }
        print(
            f"PaddleOCR(use_tensorrt=True, device='gpu') will use {label[decision['backend']]} "
            f"({decision['precision']})."
        )
    else:
        print("PaddleOCR(use_tensorrt=True, device='gpu') would fall back to native Paddle:")
        print(f"  reason: {decision['reason']}")
        if decision["remedy"]:
            print(f"  fix:    {decision['remedy']}")
