"""Run inside a subprocess whose ``tensorrt`` is the real bindings of one version (stub libs),
or, with ``TRT_API_PROBE_FLAVOR=tensorrt-rtx``, the real TensorRT-RTX bindings and libraries.

Checks the adapter's TRT_API manifest against that module and exercises the adapter's
non-constructing code paths with it; prints one JSON document on stdout.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FLAVOR = os.environ.get("TRT_API_PROBE_FLAVOR", "tensorrt")
trt = importlib.import_module({"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}[FLAVOR])

from paddleocr_trt.engines.tensorrt import adapter  # noqa: E402
from paddleocr_trt.engines.tensorrt.config import BuildSettings  # noqa: E402
from paddleocr_trt.errors import EngineBuildError  # noqa: E402

adapter.select_flavor(FLAVOR)


def _split_params(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def pybind_overloads(func: Any, name: str) -> list[list[tuple[str, str, bool]]]:
    """[(param, annotation, has_default), ...] per overload, from a pybind11 docstring."""
    doc = getattr(func, "__doc__", None) or ""
    pat = re.compile(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->", re.M)
    out = []
    for match in pat.finditer(doc):
        params = []
        for raw in _split_params(match.group(1)):
            if raw.startswith("*"):
                params = None
                break
            head, _, default = raw.partition("=")
            pname, _, ann = head.partition(":")
            params.append((pname.strip(), ann.strip(), bool(default.strip())))
        if params is not None:
            out.append(params)
    return out


def kind_matches(kind: str, ann: str) -> bool:
    if not ann:
        return True  # unannotated Python parameter: arity only
    if kind == "str":
        return ann == "str"
    if kind == "int":
        return ann == "int" or ann.endswith("SupportsInt")
    if kind == "bool":
        return ann == "bool"
    if kind == "buffer":
        return ann.endswith("Buffer") or ann in ("bytes", "buffer")
    if kind == "shape":
        return ann in ("tuple", "list") or ann.endswith("Dims") or "Sequence" in ann
    if kind == "dims":
        return ann.endswith(".Dims") or ann == "Dims"
    return ann == kind or ann.endswith("." + kind) or ann.endswith("::" + kind)


def accepts(overloads: list[list[tuple[str, str, bool]]], kinds: tuple[str, ...]) -> bool:
    for params in overloads:
        if len(kinds) > len(params):
            continue
        if any(not has_default for _, _, has_default in params[len(kinds) :]):
            continue
        if all(kind_matches(k, ann) for k, (_, ann, _) in zip(kinds, params, strict=False)):
            return True
    return False


def strip_self(overloads: list[list[tuple[str, str, bool]]]) -> list[list[tuple[str, str, bool]]]:
    return [p[1:] if p and p[0][0] == "self" else p for p in overloads]


def resolve(name: str) -> Any:
    obj: Any = trt
    for part in name.partition("#")[0].split("."):
        obj = getattr(obj, part)
    return obj


def check_entry(name: str, entry: adapter.Api, major: int, overrides: dict[str, Any]) -> str | None:
    """None when the entry conforms, else the problem."""
    try:
        obj = resolve(name)
    except AttributeError:
        return None if entry.optional else f"{name}: missing"
    parent_name, _, attr = name.partition("#")[0].rpartition(".")
    parent = resolve(parent_name) if parent_name else trt
    if entry.kind == "module_attr":
        return None
    if entry.kind == "class":
        if not isinstance(obj, type):
            return f"{name}: not a class"
        ovl = strip_self(pybind_overloads(obj.__init__, "__init__"))
        return None if accepts(ovl, entry.args) else f"{name}: no constructor takes {entry.args}"
    if entry.kind == "function":
        if inspect.isfunction(obj):
            try:
                inspect.signature(obj).bind(*entry.args)
            except TypeError as exc:
                return f"{name}: {exc}"
            return None
        ovl = pybind_overloads(obj, attr)
        return None if accepts(ovl, entry.args) else f"{name}: no overload takes {entry.args}"
    if entry.kind == "enum_member":
        return None if isinstance(obj, parent) else f"{name}: not a member of {parent_name}"
    if entry.kind == "property":
        static = inspect.getattr_static(parent, attr)
        if not isinstance(static, property):
            return f"{name}: not a property"
        if entry.settable and static.fset is None:
            return f"{name}: read-only"
        return None
    if entry.kind in ("method", "override"):
        if not callable(obj):
            return f"{name}: not callable"
        ovl = strip_self(pybind_overloads(obj, attr))
        if not ovl:
            return f"{name}: no parseable signature in __doc__"
        if not accepts(ovl, entry.args):
            return f"{name}: no overload takes {entry.args}; has {ovl}"
        if entry.kind == "override":
            impl = overrides.get(name)
            if impl is None:
                return f"{name}: declared override not implemented by the adapter"
            n_impl = len(inspect.signature(impl).parameters) - 1
            if n_impl != len(entry.args):
                return f"{name}: adapter override takes {n_impl} args, base {len(entry.args)}"
        return None
    return f"{name}: unknown kind {entry.kind}"


def public_names() -> list[str]:
    """Every public attribute name of the module, its classes and their nested classes."""
    names: set[str] = set()

    def walk(obj: Any, depth: int) -> None:
        for n in dir(obj):
            if n.startswith("_"):
                continue
            names.add(n)
            child = inspect.getattr_static(obj, n, None)
            if depth < 2 and isinstance(child, type) and child.__module__.startswith("tensorrt"):
                walk(child, depth + 1)

    walk(trt, 0)
    return sorted(names)


def dispatch_checks(major: int) -> dict[str, Any]:
    """Run the adapter's decision functions and non-constructing paths on the real module."""
    fp16_pinned = BuildSettings(precision="fp16", fp32_layers=("conv*",), workspace_bytes=1 << 20)
    fp32 = BuildSettings(precision="fp32", workspace_bytes=1 << 20)
    flags16 = adapter.decide_builder_flags(trt, fp16_pinned, pinned=True)
    for flag in flags16:
        adapter._api(flag, trt)  # each decided flag must resolve on this version

    log = adapter.recording_logger(trt)
    log.reset_errors()
    log.log(trt.ILogger.Severity.ERROR, "Requested amount of GPU memory could not be allocated")
    log.log(trt.ILogger.Severity.WARNING, "not an error")
    recorded = log.recorded_errors()
    monitor = adapter.progress_monitor(trt)
    monitor.phase_start("Building", None, 3)
    keep_going = monitor.step_complete("Building", 0)
    monitor.phase_finish("Building")

    flag_path = None
    if major == 10:

        class As1011:
            """The real 10.x module reporting 10.11 (the last release with the flag path)."""

            __version__ = "10.11.0.0"

            def __getattr__(self, name: str) -> Any:
                return getattr(trt, name)

        old = As1011()
        old_flags = adapter.decide_builder_flags(old, fp16_pinned, pinned=True)
        for flag in old_flags:
            adapter._api(flag, old)
        eb = trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
        flag_path = {
            "flags": old_flags,
            "layer_pinning": adapter.decide_layer_pinning(old, fp16_pinned),
            "network_flags_is_explicit_batch": adapter.decide_network_flags(old) == 1 << int(eb),
        }
    try:
        adapter.build_serialized_engine(b"not onnx", fp32, [])
        build_error = "no error"
    except EngineBuildError as exc:
        build_error = f"{type(exc).__name__}: {exc}"
    return {
        "strongly_typed": adapter.decide_strongly_typed(trt),
        "strongly_typed_by_version": {
            f"{v[0]}.{v[1]}": adapter.strongly_typed_for_version(v)
            for v in ((10, 11), (10, 12), (11, 0))
        },
        "flag_path_below_10_12": flag_path,
        "profile_memory_method": adapter.decide_profile_memory_method(trt),
        "network_flags": adapter.decide_network_flags(trt),
        "strongly_typed_bit": 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
        "explicit_batch_bit": (
            1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
            if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
            else None
        ),
        "flags_fp16_pinned": flags16,
        "flags_fp32": adapter.decide_builder_flags(trt, fp32, pinned=False),
        "layer_pinning_fp16": adapter.decide_layer_pinning(trt, fp16_pinned),
        "fp16_needs_onnx": adapter.fp16_needs_fp16_onnx(trt),
        "device_memory_property": adapter.decide_device_memory_property(trt),
        "logger_errors": recorded,
        "logger_oom": any(adapter.is_oom_message(e) for e in recorded),
        "monitor_continues": keep_going,
        "nptype_float32": str(np.dtype(adapter._api("nptype", trt)(adapter._api("float32", trt)))),
        "dims": list(adapter._new("Dims", (2, 3, 48, 320))),
        "build_with_stub_libs": build_error,
        "deserialize_garbage": repr(adapter.deserialize_engine(b"\x00garbage-plan")),
        "rtx": rtx_checks() if FLAVOR == "tensorrt-rtx" else None,
    }


def rtx_checks() -> dict[str, Any]:
    """TensorRT-RTX's real builder and runtime: an ahead-of-time build for two targets, its
    validity on this machine (no GPU: never VALID), a wrong target refused."""
    from paddleocr_trt.cli.selftest import make_tiny_onnx
    from paddleocr_trt.profiles import ShapeProfile

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = make_tiny_onnx(Path(tmp) / "tiny.onnx")
        prof = {"x": ShapeProfile((1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32))}
        settings = BuildSettings("fp32", 1 << 28, targets=("sm86", "sm89"), progress=False)
        out = adapter.build_serialized_engine(onnx_path, settings, [prof])
        runtime = adapter._new("Runtime", adapter.recording_logger(trt))
        validity = adapter.engine_validity(runtime, out.plan)
        try:
            adapter.build_serialized_engine(
                onnx_path, BuildSettings("fp32", 1 << 28, targets=("sm90",)), [prof]
            )
            bad_target = "built"
        except ValueError as exc:
            bad_target = f"{type(exc).__name__}: {exc}"
    return {
        "plan_bytes": len(out.plan),
        "network_io": out.network_io,
        "validity_status": validity.status,
        "label": adapter.engine_label(trt),
        "supports_targets": adapter.supports_targets(trt),
        "bad_target": bad_target,
    }


def main() -> int:
    major = adapter.major_version(trt)
    overrides = {
        f"ILogger.{n}": getattr(type(adapter.recording_logger(trt)), n) for n in ("log",)
    } | {
        f"IProgressMonitor.{n}": getattr(adapter._progress_class(trt), n)
        for n in ("phase_start", "step_complete", "phase_finish")
    }
    problems, checked, skipped_optional, absent_ok = [], [], [], []
    for name, entry in sorted(adapter.TRT_API.items()):
        if major in entry.absent_in:
            try:
                resolve(name)
                problems.append(f"{name}: expected removed in {trt.__version__}, still present")
            except AttributeError:
                absent_ok.append(name)
        if major not in entry.versions or adapter.flavor_of(trt) not in entry.flavors:
            continue
        problem = check_entry(name, entry, major, overrides)
        if problem:
            problems.append(problem)
        elif entry.optional and not hasattr_path(name):
            skipped_optional.append(name)
        else:
            checked.append(name)
    # Self-test: wrong declarations must be reported, or this checker proves nothing.
    bogus = {
        "Builder.create_network": adapter.Api("method", args=("int", "int")),
        "IExecutionContext.execute_async_v2": adapter.Api("method", args=("int",)),
        "IExecutionContext.set_tensor_address": adapter.Api("method", args=("int", "int")),
        "BuilderFlag.NOT_A_FLAG": adapter.Api("enum_member"),
        "IBuilderConfig.num_optimization_profiles": adapter.Api("property", settable=True),
    }
    caught = sorted(n for n, e in bogus.items() if check_entry(n, e, major, overrides))
    result = {
        "selftest_caught": caught,
        "selftest_total": len(bogus),
        "version": trt.__version__,
        "major": major,
        "flavor": adapter.flavor_of(trt),
        "checked": checked,
        "optional_missing": skipped_optional,
        "absent_confirmed": absent_ok,
        "problems": problems,
        "public_names": public_names(),
        "dispatch": dispatch_checks(major),
    }
    json.dump(result, sys.stdout)
    return 0


def hasattr_path(name: str) -> bool:
    try:
        resolve(name)
    except AttributeError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
