"""Step 2 of the recipe: the engine graph, a cached stage made from step 1's validated ONNX.

One input (the validated unfused ONNX of a resolved model, step 1's cache entry), one output
(:class:`EngineGraph`, holding this stage's own cache entry): the fused graph every engine
builds or runs (``fusion``: uint8 NHWC in for det/cls, CTC argmax out for rec, det's packed DB
bitmap). An engine's step (step 3) takes the value as its one input and never calls the recipe
back.

The fused fp32 graph is cached on its own (:func:`make_engine_graph`, kind ``graph``), keyed by the
validated ONNX's key and the fused graph's version (:func:`graph_key`); engines read its checked
bytes (:meth:`EngineGraph.read`) and put its key into theirs, so a second engine or a second
start reuses it instead of fusing again, and a change of the graph recipe re-keys every engine
built from it. Its validation is structural (``onnx.checker``, the inputs and outputs fusion
made); each engine validates what it builds from it numerically, under its own runtime.

TensorRT's fp16 variants (fp16, fp16 with chosen nodes kept fp32) are made from the unfused
ONNX converted to fp16, then fused, so the uint8 prologue and the argmax epilogue stay fp32: each
is a ``graph`` entry of its own (:func:`make_fp16_variant`, precision fp16, keyed with the nodes
kept fp32), made where the TensorRT that builds needs a strongly typed fp16 graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .artifact import Artifact, check_remembered, remember
from .cache.failures import FailureMemo
from .cache.key import CacheKey
from .cache.store import EngineCache
from .errors import ValidationFailedError
from .fusion.artifacts import FUSED_GRAPH, engine_onnx, fused_input_name, write_fused_onnx
from .log import get_logger
from .model_resolve import ResolvedModel
from .model_types import ModelType

log = get_logger("pipeline")

#: the artifact file of a ``graph`` cache entry
GRAPH_ARTIFACT = "model.fused.onnx"
#: what a ``graph`` entry's metadata says about the graph (also what ``EngineGraph.write`` returns)
GRAPH_FIELDS = ("graph", "input_names", "output_names")


def graph_key(onnx_key: CacheKey, version: str | None = None) -> CacheKey:
    """The cache key of the engine graph made from the validated ONNX keyed ``onnx_key``:
    that key (whose digest stands for the model, its source and the converter versions) and
    the fused graph's version (``fusion.artifacts.FUSED_GRAPH``)."""
    return CacheKey(
        model_fingerprint=onnx_key.model_fingerprint,
        model_type=onnx_key.model_type,
        kind="graph",
        precision="fp32",
        builder_settings={"onnx_key": onnx_key.digest, "graph": version or FUSED_GRAPH},
        converter_versions=onnx_key.converter_versions,
    )


def fp16_variant_key(graph: CacheKey, keep_fp32_nodes: tuple[str, ...] = ()) -> CacheKey:
    """The key of the fp16 variant of the engine graph keyed ``graph`` (same ONNX and graph
    version), with ``keep_fp32_nodes`` (nodes of the unfused graph) kept fp32."""
    return CacheKey(
        model_fingerprint=graph.model_fingerprint,
        model_type=graph.model_type,
        kind="graph",
        precision="fp16",
        builder_settings={**graph.builder_settings, "keep_fp32_nodes": list(keep_fp32_nodes)},
        converter_versions=graph.converter_versions,
    )


@dataclass(frozen=True)
class EngineGraph:
    """The fused engine graph of ``model``, made from the validated ONNX at ``onnx_path``."""

    model: ResolvedModel
    onnx_path: Path
    #: the unfused graph's inputs (the first is the image tensor, float NCHW)
    base_inputs: tuple[str, ...] = ("x",)
    #: ``fusion.artifacts.FUSED_GRAPH``: the fused graph's version
    version: str = FUSED_GRAPH
    #: step 1's artifact it was made from (None in a child process, which gets only the path)
    onnx: Artifact | None = field(default=None, compare=False)
    #: this stage's cache key (None in a child process): part of every engine key built on it
    key: CacheKey | None = field(default=None, compare=False)
    #: this stage's cached entry (None where the graph was not made as a stage: a child)
    fused: Artifact | None = field(default=None, compare=False)
    #: a file holding the fused fp32 graph (a child gets the stage's bytes there), else None
    fused_path: Path | None = None
    #: a file holding the fp16 variant a child's attempt asks for (the stage's bytes), else None
    fused16_path: Path | None = None

    @classmethod
    def from_onnx(cls, onnx: Artifact, model: ResolvedModel) -> EngineGraph:
        """The engine graph of step 1's output, keyed, not made (see :func:`make_engine_graph`)."""
        names = onnx.entry.metadata.get("input_names") or ["x"]
        key = onnx.entry.key
        graph = graph_key(key) if key is not None else None
        version = graph.builder_settings["graph"] if graph is not None else FUSED_GRAPH
        return cls(model, onnx.path, tuple(names), version, onnx, graph)

    @property
    def model_type(self) -> ModelType:
        return self.model.model_type

    @property
    def base_input(self) -> str:
        return self.base_inputs[0]

    @property
    def input_name(self) -> str:
        """The fused graph's image input: det/cls take uint8 images, rec keeps its input."""
        return fused_input_name(self.model_type, self.base_input)

    @property
    def digest(self) -> str | None:
        """This stage's key digest (what engine keys carry as ``graph_key``)."""
        return self.key.digest if self.key is not None else None

    def read(self) -> bytes:
        """The cached fused fp32 graph's bytes, checked against its manifest (a file swapped
        in since the lookup raises ``ArtifactChangedError``, a ``CacheError``)."""
        if self.fused is None:
            raise ValueError("this engine graph was not made as a cached stage")
        return self.fused.entry.read_artifact()

    def write(self, target: Path) -> dict[str, Any]:
        """The fused fp32 graph at ``target`` (the cached stage's bytes; fused here only for
        a graph not made as a stage); returns its manifest metadata."""
        if self.fused is None:
            return write_fused_onnx(self.model_type, self.onnx_path, self.model, target)
        target.write_bytes(self.read())
        meta = self.fused.entry.metadata
        return {name: meta[name] for name in GRAPH_FIELDS if name in meta}

    def variants(
        self, workdir: Path, *, fp16: bool, keep_fp32_nodes: tuple[str, ...] = ()
    ) -> tuple[Path, Path | None]:
        """(fused fp32 graph, fused fp16 graph or None) in ``workdir`` (the fp32 one is
        ``fused_path`` where given, else made once per dir). The fp16 conversion comes before
        fusion, so the uint8 prologue and the argmax epilogue stay fp32 and ``keep_fp32_nodes``
        name nodes of the unfused graph. ``fused16_path`` (made by the recipe's stage for these
        ``keep_fp32_nodes``) is the fp16 one where given."""
        if fp16 and self.fused16_path is not None:
            fused32, _ = self.variants(workdir, fp16=False)
            return fused32, self.fused16_path
        return engine_onnx(
            self.model_type,
            self.model,
            self.onnx_path,
            workdir,
            fp16_onnx=fp16,
            keep_fp32_nodes=keep_fp32_nodes,
            fused32=self.fused_path,
        )


def make_engine_graph(
    cache: EngineCache,
    onnx: Artifact,
    model: ResolvedModel,
    failures: FailureMemo | None = None,
) -> EngineGraph:
    """Step 2: the engine graph of step 1's output, from the cache (kind ``graph``) or fused
    now from the validated ONNX's checked bytes and published with its manifest. A corrupt or
    foreign entry is logged, dropped and made again (the cache's own checks). A graph fusion
    refuses (``ValueError``) or that fails its check is remembered in ``failures`` under the
    graph's key and not tried again until the key changes or ``cache clear`` forgets it."""
    graph = EngineGraph.from_onnx(onnx, model)
    if graph.key is None:
        raise ValueError(f"the ONNX entry {onnx.entry.path} carries no cache key")
    mtype = model.model_type
    made: dict[str, Any] = {}

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        # the validated ONNX once, as the cache checked it (issue 19); dropped before sealing
        source = tmp / "source.onnx"
        source.write_bytes(onnx.entry.read_artifact())
        target = tmp / GRAPH_ARTIFACT
        made["meta"] = write_fused_onnx(mtype, source, model, target)
        log.info("fused the %s engine graph of %s", mtype.value, model.model_dir.name)
        return target, {
            **made["meta"],
            "onnx_entry": onnx.entry.digest,
            **model.source_metadata(),
        }

    def validate(path: Path) -> dict[str, Any]:
        return check_graph(path, made["meta"])

    entry = cache.get(graph.key)
    if entry is None:
        if failures is not None:
            check_remembered(failures, graph.key, 0.0)
        try:
            entry = cache.get_or_create(
                graph.key, create, artifact_name=GRAPH_ARTIFACT, validate_fn=validate
            )
        except (ValueError, ValidationFailedError) as exc:  # the same graph fails the same way
            if failures is not None:
                remember(failures, graph.key, exc, 0.0)
            raise
    return replace(graph, fused=Artifact(entry, from_cache="meta" not in made))


def make_fp16_variant(
    cache: EngineCache, graph: EngineGraph, keep_fp32_nodes: tuple[str, ...] = ()
) -> Artifact:
    """The fp16 variant of ``graph`` (a graph of the recipe, with its validated ONNX), from the
    cache or made now: the validated ONNX's checked bytes converted to fp16 with
    ``keep_fp32_nodes`` kept fp32 (``backend/onnx/fp16.py``), then fused; published as a
    ``graph`` entry of precision fp16."""
    if graph.onnx is None or graph.key is None:
        raise ValueError("an fp16 variant is made from a graph of the recipe (with its ONNX)")
    onnx = graph.onnx
    key = fp16_variant_key(graph.key, keep_fp32_nodes)
    made: dict[str, Any] = {}

    def create(tmp: Path) -> tuple[Path, dict[str, Any]]:
        from .backend.onnx.fp16 import convert_to_fp16

        source = tmp / "source.onnx"  # dropped before sealing, as the fp16 base graph
        source.write_bytes(onnx.entry.read_artifact())
        base16 = convert_to_fp16(source, tmp / "model.fp16.onnx", keep_fp32_nodes=keep_fp32_nodes)
        target = tmp / GRAPH_ARTIFACT
        made["meta"] = write_fused_onnx(graph.model_type, base16, graph.model, target)
        log.info(
            "made the fp16 %s engine graph of %s (%d nodes kept fp32)",
            graph.model_type.value,
            graph.model.model_dir.name,
            len(keep_fp32_nodes),
        )
        return target, {
            **made["meta"],
            "keep_fp32_nodes": list(keep_fp32_nodes),
            "onnx_entry": onnx.entry.digest,
            **graph.model.source_metadata(),
        }

    entry = cache.get_or_create(
        key,
        create,
        artifact_name=GRAPH_ARTIFACT,
        validate_fn=lambda p: check_graph(p, made["meta"]),
    )
    return Artifact(entry, from_cache="meta" not in made)


def check_graph(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """A graph entry's validation: the ONNX checker passes and the inputs and outputs are
    the ones fusion made. Numbers are each engine's to check, under its runtime."""
    import onnx

    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    outputs = [o.name for o in model.graph.output]
    report: dict[str, Any] = {
        "check": "onnx.checker; the inputs and outputs fusion made",
        "input_names": inputs,
        "output_names": outputs,
    }
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        return {**report, "passed": False, "reason": f"onnx.checker: {exc}"[:2000]}
    if inputs != list(meta["input_names"]) or outputs != list(meta["output_names"]):
        return {**report, "passed": False, "reason": "inputs/outputs differ from the fused ones"}
    return {**report, "passed": True}
