"""The adapter's TensorRT uses, checked against the real TensorRT 10.x and 11.x Python bindings
and the real TensorRT-RTX bindings *and libraries* (``tensorrt-rtx``, installed by dev.sh).

Fetches the bindings wheels (cached in .cache/trt-bindings/), compiles stub libnvinfer & co, and
imports the real ``tensorrt`` of each version in a subprocess (tests/trt_api/probe.py); the
TensorRT-RTX probe imports the installed ``tensorrt_rtx`` and also builds a real plan. Never
skips: without PyPI access it fails and says so. A static scan of adapter.py proves every
TensorRT access in the adapter package goes through the TRT_API manifest that the subprocess
checks.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bindings_env import BINDINGS, BindingsUnavailable, cache_root, prepare

from paddleocr_trt.engines.tensorrt import adapter

pytestmark = pytest.mark.trt_api

ADAPTER_DIR = Path(adapter.__file__).parent
ADAPTER_MODULES = sorted(ADAPTER_DIR.glob("*.py"))
PROBE = Path(__file__).with_name("probe.py")
ACCESSOR_CALLS = {"_api": 0, "_has": 0, "_new": 0, "_call": 1, "_get": 1, "_set": 1}
REFLECTION = {"getattr", "setattr", "hasattr", "delattr", "__import__", "eval", "exec"}
#: Accessor calls whose name is computed, each proven elsewhere: the BuilderFlag names come
#: from decide_builder_flags (resolved on both versions by the probe); the device-memory
#: property from decide_device_memory_property (same).
DYNAMIC_NAME_SITES = {
    ("build_serialized_engine", "_api"),
    ("device_memory_size", "_get"),
    # TensorRT-RTX: the target and diagnostic names come from rtx.TARGET_ENTRIES/DIAGNOSTICS,
    # every one of them resolved on the real module by test_rtx_tables_are_declared
    ("apply_targets", "_api"),
    ("engine_validity", "_api"),
    ("_network_io", "_call"),
    ("_network_io", "_get"),
}
RTX = "tensorrt-rtx"
#: Names the adapter must declare: the fixes of issue 9 depend on them (context memory per
#: profile, strict timing caches merged across processes).
REQUIRED_NAMES = (
    "ExecutionContextAllocationStrategy.ON_PROFILE_CHANGE",
    "ICudaEngine.create_execution_context",
    "ICudaEngine.get_device_memory_size_for_profile_v2",
    "IExecutionContext.set_optimization_profile_async",
    "IBuilderConfig.set_timing_cache",
    "ITimingCache.combine",
)


def _probe_rtx() -> dict[str, Any]:
    """The real tensorrt_rtx (bindings + libraries from PyPI): no stubs, nothing to fetch."""
    import os

    env = dict(os.environ)
    env["TRT_API_PROBE_FLAVOR"] = RTX
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(
        [sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"TensorRT-RTX probe failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


@pytest.fixture(
    scope="module", params=[*sorted(BINDINGS), RTX], ids=lambda m: f"trt{m}" if m != RTX else m
)
def probe(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == RTX:
        if not adapter.flavor_installed(RTX):
            pytest.fail("tensorrt-rtx is not installed (scripts/dev.sh setup)", pytrace=False)
        return _probe_rtx()
    try:
        env = prepare(request.param)
    except BindingsUnavailable as exc:
        pytest.fail(f"TensorRT {request.param}.x bindings unavailable: {exc}", pytrace=False)
    proc = subprocess.run(
        [sys.executable, str(PROBE)],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"probe failed for {env.version}:\n{proc.stderr[-4000:]}"
    result = json.loads(proc.stdout)
    assert result["version"] == env.version
    return result


def test_every_manifest_entry_exists_with_the_used_signature(probe: dict[str, Any]) -> None:
    assert probe["problems"] == []
    for name in REQUIRED_NAMES:
        assert name in probe["checked"], name
    declared = [
        n
        for n, e in adapter.TRT_API.items()
        if probe["major"] in e.versions and probe["flavor"] in e.flavors
    ]
    assert sorted(probe["checked"] + probe["optional_missing"]) == sorted(declared)
    line = f"checked TensorRT {probe['version']} ({len(probe['checked'])} names)"
    sys.stdout.write(line + "\n")
    record = cache_root() / f"conformance-{probe['version']}.json"
    record.write_text(json.dumps({"summary": line, "checked": probe["checked"]}, indent=1))


def test_checker_rejects_wrong_declarations(probe: dict[str, Any]) -> None:
    assert len(probe["selftest_caught"]) == probe["selftest_total"], probe["selftest_caught"]


def test_removed_names_are_absent_and_only_declared_for_older_majors(
    probe: dict[str, Any],
) -> None:
    major = probe["major"]
    expected_absent = sorted(n for n, e in adapter.TRT_API.items() if major in e.absent_in)
    assert probe["absent_confirmed"] == expected_absent
    for name in expected_absent:
        assert major not in adapter.TRT_API[name].versions, name
    if major == 11:  # also TensorRT-RTX: exactly the 10.x-only names are missing
        assert "BuilderFlag.FP16" in probe["absent_confirmed"]
        assert "NetworkDefinitionCreationFlag.EXPLICIT_BATCH" in probe["absent_confirmed"]


def test_version_dispatch_on_real_module(probe: dict[str, Any]) -> None:
    d = probe["dispatch"]
    # 10.12 deprecated BuilderFlag.FP16 for strong typing; both bound versions (10.16, 11.4)
    # therefore build FP16 from a typed fp16 ONNX. The flag path stays for 10.0-10.11.
    assert d["strongly_typed_by_version"] == {"10.11": False, "10.12": True, "11.0": True}
    assert d["strongly_typed"] is True
    assert d["network_flags"] == d["strongly_typed_bit"]
    assert d["flags_fp16_pinned"] == ["BuilderFlag.TF32"]
    assert d["layer_pinning_fp16"] is False
    assert d["fp16_needs_onnx"] is True
    if probe["major"] == 10:  # the real 10.16 module driven as a 10.11 release
        assert d["flag_path_below_10_12"] == {
            "flags": [
                "BuilderFlag.TF32",
                "BuilderFlag.FP16",
                "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
            ],
            "layer_pinning": True,
            "network_flags_is_explicit_batch": True,
        }
    else:
        assert d["flag_path_below_10_12"] is None
        assert d["explicit_batch_bit"] is None
    assert d["flags_fp32"] == ["BuilderFlag.TF32"]
    assert d["device_memory_property"] == "ICudaEngine.device_memory_size_v2"
    assert d["profile_memory_method"] == "ICudaEngine.get_device_memory_size_for_profile_v2"


def test_adapter_paths_runnable_without_libraries(probe: dict[str, Any]) -> None:
    """The real classes, driven by the adapter, with factories that return nullptr."""
    d = probe["dispatch"]
    assert d["logger_errors"] == ["Requested amount of GPU memory could not be allocated"]
    assert d["logger_oom"] is True
    assert d["monitor_continues"] is True
    assert d["nptype_float32"] == "float32"
    assert d["dims"] == [2, 3, 48, 320]
    assert d["deserialize_garbage"] == "None"  # an unloadable plan is a cache miss
    if probe["flavor"] == RTX:  # a real builder: the garbage ONNX fails to parse
        assert d["build_with_stub_libs"].startswith("EngineBuildError: TensorRT-RTX ")
        assert "ONNX parse failed" in d["build_with_stub_libs"]
        return
    # A failed Builder becomes EngineBuildError.
    assert d["build_with_stub_libs"].startswith("EngineBuildError: TensorRT ")
    assert "cannot create a Builder" in d["build_with_stub_libs"]


def test_rtx_builds_for_targets_and_is_never_valid_here(probe: dict[str, Any]) -> None:
    """TensorRT-RTX's real builder through the adapter: a plan for sm86+sm89 without a GPU; its
    validity checked here (no GPU) is never VALID; a target it lacks is refused up front."""
    rtx = probe["dispatch"]["rtx"]
    if probe["flavor"] != RTX:
        assert rtx is None
        return
    assert probe["version"].startswith("1.")  # driven as the 11.x API
    assert probe["major"] == 11
    assert rtx["label"] == f"TensorRT-RTX {probe['version']}"
    assert rtx["supports_targets"] is True
    assert rtx["plan_bytes"] > 10_000
    assert rtx["network_io"] == {
        "x": {"input": True, "dtype": "float32", "shape": [-1, 3, 32, 32]},
        "y": {"input": False, "dtype": "float32", "shape": [-1, 3, 32, 32]},
    }
    assert rtx["validity_status"] == "invalid"
    assert rtx["bad_target"].startswith("ValueError: unknown compute capability target 'sm90'")


def test_rtx_tables_are_declared() -> None:
    """Every name the TensorRT-RTX tables compute is a declared RTX-only manifest entry."""
    from paddleocr_trt.engines.tensorrt.adapter import rtx
    from paddleocr_trt.engines.tensorrt.flavors import RTX_BUILD_TARGETS

    assert sorted(rtx.TARGET_ENTRIES) == sorted(RTX_BUILD_TARGETS)
    for name in [*rtx.TARGET_ENTRIES.values(), *rtx.DIAGNOSTICS]:
        assert adapter.TRT_API[name].flavors == (RTX,), name


# ---------------------------------------------------------------------------------------------
# Static scan: no TensorRT access outside the manifest
# ---------------------------------------------------------------------------------------------
def _functions(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.name, node))
    return out


def _enclosing(tree: ast.Module) -> dict[int, str]:
    """id(node) -> name of the innermost function containing it."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, fn: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.ClassDef)) else fn
            owner[id(child)] = name if isinstance(child, ast.FunctionDef) else fn
            visit(child, name if isinstance(child, ast.FunctionDef) else fn)

    visit(tree, "<module>")
    return owner


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node


def _safe_names(tree: ast.Module) -> set[str]:
    """Names that never hold TensorRT objects: imports (tensorrt is never imported by name),
    module-level values made by imported callables, classes defined in the adapter."""
    safe: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            safe |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            safe |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.ClassDef):
            safe.add(node.name)
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            root = _root(node.value.func)
            if isinstance(root, ast.Name) and root.id in safe:
                safe |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return safe


def _is_private_self(node: ast.expr) -> bool:
    """``self._x``: an attribute the adapter's classes define (TensorRT names are public)."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    )


BUILTINS = {"list", "dict", "set", "tuple", "str", "int", "bool", "bytes", "float", "sorted"}
LITERALS = (ast.List, ast.Dict, ast.Set, ast.Tuple, ast.ListComp, ast.DictComp, ast.SetComp)


def _safe_locals(fn: ast.FunctionDef, safe: set[str]) -> set[str]:
    """Locals bound to literals, builtins' results or safe callables' results."""
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            ok = isinstance(value, (*LITERALS, ast.Constant, ast.JoinedStr))
            if isinstance(value, ast.Call):
                root = _root(value.func)
                ok = isinstance(root, ast.Name) and (
                    root.id in safe
                    or root.id in BUILTINS
                    # the adapter's own private helpers on self (self._errors())
                    or (_is_private_self(value.func))
                )
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if ok:
                out |= {t.id for t in targets if isinstance(t, ast.Name)}
    return out


def _safe_params(fn: ast.FunctionDef, safe_types: set[str]) -> set[str]:
    """Parameters annotated with a non-TensorRT type (an adapter/package class, str, int...)."""
    out = set()
    for arg in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
        ann = arg.annotation
        names = {n.id for n in ast.walk(ann) if isinstance(n, ast.Name)} if ann else set()
        if names and "Any" not in names and names <= safe_types:
            out.add(arg.arg)
    return out


@pytest.fixture(scope="module")
def trt_names(probe: dict[str, Any]) -> set[str]:
    return set(probe["public_names"])


def scan_adapter_source(source: str, trt_names: set[str]) -> list[str]:
    """Every way ``source`` reaches TensorRT other than through the declared accessors."""
    tree = ast.parse(source)
    owner = _enclosing(tree)
    safe = _safe_names(tree)
    builtin_types = {"str", "int", "bool", "float", "bytes", "None", "Sequence", "Mapping"}
    safe_types = safe | builtin_types | {"Path", "BuildSettings", "Profile"}
    fn_safe = {
        id(fn): _safe_params(fn, safe_types) | _safe_locals(fn, safe) for _, fn in _functions(tree)
    }
    fn_by_name = {name: fn for name, fn in _functions(tree)}
    problems: list[str] = []

    for node in ast.walk(tree):
        fn_name = owner.get(id(node), "<module>")
        if fn_name in adapter.ACCESSORS:
            continue  # the accessors are where TensorRT is reached, by declared name
        # 1. accessor names are declared manifest entries
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            func = node.func.id
            if func in ACCESSOR_CALLS and fn_name not in adapter.ACCESSORS:
                pos = ACCESSOR_CALLS[func]
                arg = node.args[pos] if len(node.args) > pos else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value not in adapter.TRT_API:
                        problems.append(f"line {node.lineno}: {arg.value!r} not in TRT_API")
                elif (fn_name, func) not in DYNAMIC_NAME_SITES:
                    problems.append(f"line {node.lineno}: {func}() with a computed name")
            # 2. reflection only inside the accessors
            if func in REFLECTION and fn_name not in adapter.ACCESSORS:
                problems.append(f"line {node.lineno}: {func}() outside the accessors")
        # 3. no TensorRT attribute on anything that may hold a TensorRT object
        if isinstance(node, ast.Attribute) and not node.attr.startswith("_"):
            if node.attr not in trt_names:
                continue
            root = _root(node.value)
            if isinstance(root, ast.Name):
                fn = fn_by_name.get(fn_name)
                params = fn_safe.get(id(fn), set()) if fn is not None else set()
                if root.id in safe or root.id in params:
                    continue
                if root.id == "self" and isinstance(node.value, ast.Name):
                    continue  # the adapter's own classes' attributes (checked: rule 4)
                if _is_private_self(node.value) or (
                    isinstance(node.value, ast.Call) and _is_private_self(node.value.func)
                ):
                    continue
            problems.append(f"line {node.lineno}: .{node.attr} is a TensorRT name reached directly")
        # 4. the adapter's classes derive from TensorRT only via _api(), and their methods
        #    named like TensorRT members are declared overrides
        if isinstance(node, ast.ClassDef) and node.bases:
            fn = fn_by_name.get(fn_name)
            bases = {}
            for stmt in ast.walk(fn) if fn is not None else []:
                if (
                    isinstance(stmt, ast.Assign)
                    and isinstance(stmt.value, ast.Call)
                    and isinstance(stmt.value.func, ast.Name)
                    and stmt.value.func.id == "_api"
                ):
                    for t in stmt.targets:
                        if isinstance(t, ast.Name):
                            bases[t.id] = stmt.value.args[0].value
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in safe:
                    continue  # an exception or dataclass base from the package
                trt_base = bases.get(base.id) if isinstance(base, ast.Name) else None
                if trt_base is None:
                    problems.append(f"line {node.lineno}: class {node.name} has a foreign base")
                    continue
                for item in node.body:
                    if (
                        isinstance(item, ast.FunctionDef)
                        and not item.name.startswith("_")
                        and item.name in trt_names
                        and adapter.TRT_API.get(f"{trt_base}.{item.name}", None) is None
                    ):
                        problems.append(f"{node.name}.{item.name}: undeclared override")
        # 5. tensorrt is imported by name only in load_tensorrt
        if isinstance(node, ast.Constant) and node.value == "tensorrt":
            problems.append(f"line {node.lineno}: 'tensorrt' outside load_tensorrt")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m.split(".")[0] == "tensorrt" for m in mods):
                problems.append(f"line {node.lineno}: direct tensorrt import")
    return problems


def test_adapter_reaches_tensorrt_only_through_the_manifest(trt_names: set[str]) -> None:
    assert {p.name for p in ADAPTER_MODULES} >= {"api.py", "build.py", "runtime.py"}
    problems = []
    for path in ADAPTER_MODULES:
        found = scan_adapter_source(path.read_text(encoding="utf-8"), trt_names)
        problems += [f"{path.name}: {p}" for p in found]
    assert not problems, "\n".join(problems)


def test_no_adapter_module_passes_400_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in ADAPTER_MODULES}
    assert max(sizes.values()) <= 400, sizes


def test_static_scan_catches_a_direct_access(trt_names: set[str]) -> None:
    """The scan must flag the ways a developer would bypass the manifest."""
    source = (ADAPTER_DIR / "build.py").read_text(encoding="utf-8")
    for snippet in (
        "def f(ctx):\n    ctx.execute_async_v3(0)\n",
        "def f(trt):\n    return trt.BuilderFlag.TF32\n",
        "def f(layer):\n    layer.get_output(0)\n",
        "def f(o):\n    return getattr(o, 'num_layers')\n",
        "def f(o):\n    return _call(o, 'INetworkDefinition.add_convolution_nd', 1)\n",
        "import tensorrt\n",
        "def f(b):\n    class L(b):\n        def log(self, s, m):\n            pass\n",
    ):
        assert scan_adapter_source(source + "\n" + snippet, trt_names), snippet
