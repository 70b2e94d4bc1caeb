"""Engine-independent graph transforms that move host work into the model (issue 11).

Why: end to end, PaddleOCR spends more host time around the models than in them. Two pieces
move into the graph, for any engine that runs ONNX (TensorRT, ONNX Runtime):

* rec: the (N, T, 6625) fp32 softmax is 85-155 MB per page; copying it back and taking
  argmax/max on the host costs 17-38 ms. :func:`append_ctc_argmax` ends the graph with
  ArgMax + ReduceMax over the class axis, so the engine returns (N, T) indices and (N, T) max
  probabilities, 3312x fewer bytes; :mod:`paddleocr_trt.postprocess.ctc` decodes them.
* det / text-line orientation: PaddleX normalises on the host (float32 HWC -> CHW), 8-10 ms per
  page and 4x the bytes. :func:`prepend_uint8_normalize` makes the graph take the uint8 NHWC
  images PaddleX holds after resizing and do Cast, Mul, Add, Transpose itself, with the exact
  float32 constants PaddleX multiplies and adds (``alpha = scale / std``,
  ``beta = -mean / std``), so the result matches PaddleX's own preprocessing bit for bit.

Both return a new ``ModelProto``; the input model is left untouched. Apply them last, after any
fp16 conversion (``keep_io_types``): the argmax then reads the fp32 output and the prologue feeds
the fp32 input, as tested; fused first, an fp16 pass could put the max probability in fp16.
ONNX Runtime's ArgMax picks the first index on ties (tested); TensorRT's (a TopK) is not
documented to, so an engine's validation must compare indices, not trust them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ...log import get_logger

log = get_logger("onnx.fuse")

#: Output names of a graph fused by :func:`append_ctc_argmax`, in output order.
CTC_INDEX_OUTPUT = "ctc_index"
CTC_PROB_OUTPUT = "ctc_max_prob"
#: Input name of a graph fused by :func:`prepend_uint8_normalize`.
UINT8_INPUT = "image_uint8"

_INDEX_DTYPES = {"int32": TensorProto.INT32, "int64": TensorProto.INT64}


def _opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ValueError("model declares no ai.onnx opset")


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str | None]:
    out: list[int | str | None] = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            out.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            out.append(dim.dim_param)
        else:
            out.append(None)
    return out


def _unused_name(graph: onnx.GraphProto, base: str) -> str:
    taken = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    taken |= {i.name for i in graph.initializer}
    for node in graph.node:
        taken.update(node.output)
        taken.update(node.input)
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def single_output(
    model: onnx.ModelProto, transform: str, what: str
) -> tuple[onnx.ValueInfoProto, list[int | str | None]]:
    """The graph's one output and its dims; a transform that extends it refuses any other."""
    outputs = model.graph.output
    if len(outputs) != 1:
        raise ValueError(
            f"{transform} expects one output ({what}), got {[o.name for o in outputs]}"
        )
    return outputs[0], _dims(outputs[0])


def append_ctc_argmax(model: onnx.ModelProto, *, index_dtype: str = "int32") -> onnx.ModelProto:
    """A copy of a rec graph whose outputs are (argmax index, max probability) over classes.

    The graph must have one output of rank 3 (N, T, classes), the softmax PaddleX decodes.
    ArgMax keeps ONNX's default ``select_last_index=0``: on ties the first index wins, which is
    numpy's ``argmax`` rule that ``CTCLabelDecode`` uses. ``index_dtype`` int32 (the default)
    halves the index bytes and is what TensorRT computes natively; int64 is ArgMax's own type.
    """
    if index_dtype not in _INDEX_DTYPES:
        raise ValueError(f"index_dtype must be one of {sorted(_INDEX_DTYPES)}, got {index_dtype!r}")
    graph = model.graph
    source, dims = single_output(model, "append_ctc_argmax", "the CTC softmax")
    if len(dims) != 3:
        raise ValueError(f"rec output {source.name!r} must be rank 3 (N, T, classes), got {dims}")
    if source.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"rec output {source.name!r} must be float32 (the softmax)")
    if CTC_INDEX_OUTPUT in {o.name for o in graph.output} or any(
        CTC_INDEX_OUTPUT in n.output for n in graph.node
    ):
        raise ValueError("graph already ends in the CTC argmax (fused twice?)")

    fused = copy.deepcopy(model)
    g = fused.graph
    softmax = source.name
    nodes: list[onnx.NodeProto] = []
    raw_index = CTC_INDEX_OUTPUT if index_dtype == "int64" else _unused_name(g, "ctc_index_i64")
    nodes.append(
        helper.make_node(
            "ArgMax",
            [softmax],
            [raw_index],
            name="ctc_argmax",
            axis=-1,
            keepdims=0,
            select_last_index=0,
        )
    )
    if index_dtype != "int64":
        nodes.append(
            helper.make_node(
                "Cast",
                [raw_index],
                [CTC_INDEX_OUTPUT],
                name="ctc_index_cast",
                to=_INDEX_DTYPES[index_dtype],
            )
        )
    if _opset(fused) >= 18:
        axes = _unused_name(g, "ctc_class_axis")
        g.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), axes))
        nodes.append(
            helper.make_node(
                "ReduceMax", [softmax, axes], [CTC_PROB_OUTPUT], name="ctc_max", keepdims=0
            )
        )
    else:
        nodes.append(
            helper.make_node(
                "ReduceMax", [softmax], [CTC_PROB_OUTPUT], name="ctc_max", axes=[-1], keepdims=0
            )
        )
    g.node.extend(nodes)
    del g.output[:]
    g.output.extend(
        [
            helper.make_tensor_value_info(CTC_INDEX_OUTPUT, _INDEX_DTYPES[index_dtype], dims[:2]),
            helper.make_tensor_value_info(CTC_PROB_OUTPUT, TensorProto.FLOAT, dims[:2]),
        ]
    )
    onnx.checker.check_model(fused)
    log.debug("appended CTC argmax/max (%s indices) after %r", index_dtype, softmax)
    return fused


def normalize_constants(
    scale: float | str, mean: Sequence[float], std: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel float32 (alpha, beta) PaddleX's ``NormalizeImage``/``Normalize`` apply.

    PaddleX computes ``alpha = scale / std`` and ``beta = -mean / std`` in Python floats and then
    does ``x_f32 *= alpha; x_f32 += beta``, i.e. float32 arithmetic with the constants rounded to
    float32. Using the same two float32 constants in a Mul and an Add reproduces it exactly.
    """
    scale_value = _parse_scale(scale)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 channels, got mean={mean!r} std={std!r}")
    if any(float(s) == 0.0 for s in std):
        raise ValueError(f"std must not contain 0, got {std!r}")
    alpha = np.array([scale_value / float(s) for s in std], dtype=np.float32)
    beta = np.array([-float(m) / float(s) for m, s in zip(mean, std, strict=True)], np.float32)
    return alpha, beta


def _parse_scale(scale: float | str) -> float:
    """inference.yml may spell the scale ``1./255.`` (PaddleX ``eval``s it; we parse it)."""
    if isinstance(scale, int | float):
        return float(scale)
    text = str(scale).strip()
    try:
        if "/" in text:
            numerator, denominator = text.split("/", 1)
            return float(numerator) / float(denominator)
        return float(text)
    except ValueError:
        raise ValueError(f"cannot read the normalisation scale {scale!r}") from None


def normalize_args_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``scale``/``mean``/``std`` of the ``NormalizeImage`` op in a parsed inference.yml.

    Defaults are PaddleX's own when the op omits them (ImageNet mean/std, scale 1/255).
    """
    for op in (config.get("PreProcess") or {}).get("transform_ops") or []:
        if isinstance(op, Mapping) and "NormalizeImage" in op:
            args = dict(op["NormalizeImage"] or {})
            return {
                "scale": args.get("scale", 1.0 / 255.0),
                "mean": args.get("mean", [0.485, 0.456, 0.406]),
                "std": args.get("std", [0.229, 0.224, 0.225]),
            }
    raise ValueError("inference.yml has no NormalizeImage preprocessing op")


def load_normalize_args(model: Any) -> dict[str, Any]:
    """:func:`normalize_args_from_config` of a model's inference.yml (``model``: a resolved
    model, read from memory, or a model dir)."""
    from ...model_resolve import model_config

    config = model_config(model)
    if not config:
        where = getattr(model, "model_dir", model)
        raise ValueError(f"{where} has no inference.yml to read the normalisation from")
    return normalize_args_from_config(config)


def prepend_uint8_normalize(
    model: onnx.ModelProto,
    *,
    scale: float | str,
    mean: Sequence[float],
    std: Sequence[float],
    reverse_channels: bool = False,
) -> onnx.ModelProto:
    """A copy of an image graph that takes uint8 NHWC and normalises inside the graph.

    The model's one float32 NCHW input becomes an internal tensor fed by
    ``Cast -> Transpose(0,3,1,2) -> [channel flip] -> Mul(alpha) -> Add(beta)`` from a new input
    :data:`UINT8_INPUT` of shape (N, H, W, 3). ``reverse_channels`` flips BGR<->RGB in the
    graph, for a host that holds BGR while the model was trained on RGB.
    """
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"expects one image input, got {[i.name for i in inputs]}")
    source = inputs[0]
    dims = _dims(source)
    if len(dims) != 4 or source.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"input {source.name!r} must be float32 NCHW, got {dims}")
    if dims[1] not in (3, None) and not isinstance(dims[1], str):
        raise ValueError(f"input {source.name!r} must have 3 channels, got {dims[1]}")
    alpha, beta = normalize_constants(scale, mean, std)

    fused = copy.deepcopy(model)
    g = fused.graph
    if any(i.name == UINT8_INPUT for i in g.input):
        raise ValueError("graph already takes uint8 images (fused twice?)")
    names = {key: _unused_name(g, f"pre_{key}") for key in ("nchw", "f32", "flip", "mul")}
    alpha_name = _unused_name(g, "pre_alpha")
    beta_name = _unused_name(g, "pre_beta")
    # per-channel constants shaped (1, 3, 1, 1): applied after the transpose, each channel is a
    # contiguous H*W run (ONNX Runtime's CPU broadcast of a trailing 3 is several times slower);
    # the same float32 Mul then Add per element, so the values are the same to the last bit
    g.initializer.extend(
        [
            numpy_helper.from_array(alpha.reshape(1, 3, 1, 1), alpha_name),
            numpy_helper.from_array(beta.reshape(1, 3, 1, 1), beta_name),
        ]
    )
    nodes = [  # cast first: TensorRT's Transpose takes no UINT8
        helper.make_node(
            "Cast", [UINT8_INPUT], [names["f32"]], name="pre_cast", to=TensorProto.FLOAT
        ),
        helper.make_node(
            "Transpose", [names["f32"]], [names["nchw"]], name="pre_to_nchw", perm=[0, 3, 1, 2]
        ),
    ]
    scaled_from = names["nchw"]
    if reverse_channels:
        order = _unused_name(g, "pre_channel_order")
        g.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), order))
        nodes.append(
            helper.make_node(
                "Gather", [names["nchw"], order], [names["flip"]], name="pre_flip_channels", axis=1
            )
        )
        scaled_from = names["flip"]
    nodes += [
        helper.make_node("Mul", [scaled_from, alpha_name], [names["mul"]], name="pre_scale"),
        helper.make_node("Add", [names["mul"], beta_name], [source.name], name="pre_shift"),
    ]
    # The old input becomes the Add output; the prologue runs first.
    old_nodes = list(g.node)
    del g.node[:]
    g.node.extend(nodes + old_nodes)
    kept = [i for i in g.input if i.name != source.name]
    del g.input[:]
    nhwc = [dims[0], dims[2], dims[3], 3]
    g.input.extend([helper.make_tensor_value_info(UINT8_INPUT, TensorProto.UINT8, nhwc), *kept])
    onnx.checker.check_model(fused)
    log.debug(
        "prepended uint8 NHWC normalisation before %r (alpha=%s beta=%s)",
        source.name,
        alpha.tolist(),
        beta.tolist(),
    )
    return fused
