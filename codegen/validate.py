"""Checks on the emitted text: Caffe's schema, then what Net::Init would abort on.

Each file is parsed back with protobuf `text_format` into Caffe's real
NetParameter / SolverParameter, and the parsed net is checked per phase:
every bottom produced before use, no top produced by two layers (in place
excepted), layer names unique, include/exclude rules sane, and every shared
parameter (`param { name }`) of equal shape and equal lr/decay multipliers —
which needs the blob shapes, so they are inferred here for the layer types
drnngen emits. Problems are collected, not raised one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drnngen.codegen import schema

Shape = tuple[int, ...]
PHASES = ("TRAIN", "TEST")
# Shape-preserving one-bottom types; `Power` is the GRU cell's 1 − z (MODEL.md section 18).
# `Threshold` marks the sparse user items' padding (section 6.1).
ELEMENTWISE = {"ReLU", "Sigmoid", "TanH", "ELU", "Softmax", "PReLU", "Dropout", "Power", "Threshold"}


@dataclass
class _Phase:
    """What is known while walking one phase's layers in order."""

    name: str
    shapes: dict[str, Shape]
    producer: dict[str, str]
    errors: list[str]

    def fail(self, layer: Any, message: str) -> None:
        self.errors.append(f"{self.name}: layer '{layer.name}': {message}")


@dataclass(frozen=True)
class _Shared:
    layer: str
    shape: Shape
    lr_mult: float
    decay_mult: float


def check_net(text: str, filename: str, data_shapes: Mapping[str, Shape]) -> list[str]:
    """Problems of a net file; `data_shapes` gives the HDF5Data tops' shapes."""
    net = schema.parse(text, "NetParameter", filename)
    phased = any(len(layer.include) or len(layer.exclude) for layer in net.layer)
    errors: list[str] = []
    for phase in PHASES if phased else ("TEST",):
        state = _Phase(phase if phased else "deploy", {}, {}, [])
        shared: dict[str, _Shared] = {}
        seen: set[str] = set()
        for layer in net.layer:
            if not _included(layer, phase, state):
                continue
            if layer.name in seen:
                state.fail(layer, "layer name used twice")
            seen.add(layer.name)
            _check_layer(layer, state, data_shapes, shared)
        errors += state.errors
    return [f"{filename}: {e}" for e in dict.fromkeys(errors)]  # TRAIN/TEST repeats once


def check_solver(text: str, filename: str) -> list[str]:
    """Problems of a solver file (schema, plus the fields Caffe requires)."""
    solver = schema.parse(text, "SolverParameter", filename)
    errors = []
    if not solver.net:
        errors.append(f"{filename}: no `net` given")
    if solver.test_interval and not len(solver.test_iter):
        errors.append(f"{filename}: test_interval without test_iter")
    return errors


def _included(layer: Any, phase: str, state: _Phase) -> bool:
    """Caffe's StateMeetsRule for the phase part of include/exclude rules."""
    if len(layer.include) and len(layer.exclude):
        state.fail(layer, "has both include and exclude rules (Caffe refuses this)")
    if len(layer.include):
        return any(_phase_name(rule) in (None, phase) for rule in layer.include)
    return not any(_phase_name(rule) in (None, phase) for rule in layer.exclude)


def _phase_name(rule: Any) -> str | None:
    if not rule.HasField("phase"):
        return None
    return str(rule.DESCRIPTOR.fields_by_name["phase"].enum_type.values_by_number[rule.phase].name)


def _check_layer(layer: Any, state: _Phase, data_shapes: Mapping[str, Shape], shared: dict[str, _Shared]) -> None:
    missing = [b for b in layer.bottom if b not in state.shapes]
    for bottom in missing:
        state.fail(layer, f"bottom '{bottom}' is not produced by an earlier layer")
    for top in layer.top:
        if top in state.producer and top not in layer.bottom:
            state.fail(layer, f"top '{top}' is already produced by layer '{state.producer[top]}'")
    if missing:
        return
    infer = _INFER.get(layer.type)
    if infer is None:
        state.fail(layer, f"type '{layer.type}' is outside the layer subset drnngen emits")
        return
    bottoms = [state.shapes[b] for b in layer.bottom]
    try:
        tops, blobs = infer(layer, bottoms, data_shapes)
    except ValueError as exc:
        state.fail(layer, str(exc))
        return
    for name, shape in zip(layer.top, tops, strict=False):
        state.shapes[name] = shape
        state.producer.setdefault(name, layer.name)
    _check_params(layer, blobs, state, shared)


def _check_params(layer: Any, blobs: Sequence[Shape], state: _Phase, shared: dict[str, _Shared]) -> None:
    if len(layer.param) > len(blobs):
        state.fail(layer, f"{len(layer.param)} param blocks for {len(blobs)} parameter blobs")
    for param, shape in zip(layer.param, blobs, strict=False):
        if not param.name:
            continue
        mine = _Shared(layer.name, shape, param.lr_mult, param.decay_mult)
        first = shared.setdefault(param.name, mine)
        if first.shape != shape:
            state.fail(layer, f"shared param '{param.name}' has shape {list(shape)}, "
                       f"but {list(first.shape)} in layer '{first.layer}'")
        if (first.lr_mult, first.decay_mult) != (mine.lr_mult, mine.decay_mult):
            state.fail(layer, f"shared param '{param.name}' has lr/decay mult "
                       f"{mine.lr_mult}/{mine.decay_mult}, but {first.lr_mult}/{first.decay_mult} "
                       f"in layer '{first.layer}'")


# --- shape inference: (layer, bottom shapes, data shapes) -> (top shapes, param blob shapes)

Inferred = tuple[list[Shape], list[Shape]]


def _data(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    unknown = [t for t in layer.top if t not in data]
    if unknown:
        raise ValueError(f"HDF5 datasets {unknown} are not in the data layout")
    batch = layer.hdf5_data_param.batch_size
    return [(batch, *data[t][1:]) for t in layer.top], []


def _input(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    shapes = [tuple(int(d) for d in s.dim) for s in layer.input_param.shape]
    if len(shapes) != len(layer.top):
        raise ValueError(f"{len(shapes)} input shapes for {len(layer.top)} tops")
    return shapes, []


def _embed(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    p = layer.embed_param
    blobs: list[Shape] = [(p.input_dim, p.num_output)] + ([(p.num_output,)] if p.bias_term else [])
    return [(*bottoms[0], p.num_output)], blobs


def _inner_product(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    p = layer.inner_product_param
    axis = p.axis if p.axis >= 0 else len(bottoms[0]) + p.axis
    if not 0 < axis <= len(bottoms[0]):
        raise ValueError(f"axis {p.axis} out of range for bottom shape {list(bottoms[0])}")
    k = math.prod(bottoms[0][axis:])
    weight: Shape = (k, p.num_output) if p.transpose else (p.num_output, k)
    blobs: list[Shape] = [weight] + ([(p.num_output,)] if p.bias_term else [])
    return [(*bottoms[0][:axis], p.num_output)], blobs


def _eltwise(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    if len(bottoms) < 2:
        raise ValueError("Eltwise needs at least two bottoms")
    if len(set(bottoms)) != 1:
        raise ValueError(f"Eltwise bottoms differ in shape: {[list(b) for b in bottoms]}")
    return [bottoms[0]], []


def _scale(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    """A learned scale over bottom[0]'s axes [axis, axis + num_axes) (num_axes 0: a scalar),
    or bottom[1] as the scale: its shape must be bottom[0]'s from `axis` on (no param)."""
    p, shape = layer.scale_param, bottoms[0]
    if len(bottoms) == 2:
        axis = p.axis % len(shape) if shape else 0
        if shape[axis:axis + len(bottoms[1])] != bottoms[1] or p.bias_term:
            raise ValueError(f"scale bottom {list(bottoms[1])} does not match {list(shape)} from axis {p.axis}")
        return [shape], []
    if len(bottoms) != 1:
        raise ValueError("Scale takes one or two bottoms")
    if not -len(shape) <= p.axis < max(len(shape), 1):
        raise ValueError(f"scale axis {p.axis} out of range for bottom shape {list(shape)}")
    axis = p.axis % len(shape) if shape else 0
    end = len(shape) if p.num_axes == -1 else axis + p.num_axes
    if p.num_axes < -1 or end > len(shape):
        raise ValueError(f"scale num_axes {p.num_axes} from axis {p.axis} exceeds bottom shape {list(shape)}")
    blob: Shape = shape[axis:end]
    return [shape], [blob] + ([blob] if p.bias_term else [])


def _bias(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    """A learned bias over bottom[0]'s axes [axis, axis + num_axes)."""
    p, shape = layer.bias_param, bottoms[0]
    if len(bottoms) != 1 or not 0 <= p.axis < len(shape):
        raise ValueError(f"Bias needs one bottom and an axis within {list(shape)}")
    end = len(shape) if p.num_axes == -1 else p.axis + p.num_axes
    return [shape], [shape[p.axis:end]]


def _convolution(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    """A 1×1 convolution of a 4-D bottom [n, c, h, w], stride 1, no pad, one group."""
    p, shape = layer.convolution_param, bottoms[0]
    if len(shape) != 4 or list(p.kernel_size) != [1] or p.pad or p.stride or p.group != 1 or p.dilation \
            or p.HasField("kernel_h") or p.HasField("kernel_w") or p.axis != 1 or p.num_output < 1:
        raise ValueError("Convolution outside the subset drnngen emits (4-D, 1x1 kernel, stride 1, no pad, 1 group)")
    filters: Shape = (p.num_output, shape[1], 1, 1)
    return [(shape[0], p.num_output, shape[2], shape[3])], [filters] + ([(p.num_output,)] if p.bias_term else [])


def _reshape(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    """Caffe's Reshape: 0 copies a bottom axis, one -1 takes what is left."""
    dims, shape = list(layer.reshape_param.shape.dim), bottoms[0]
    if layer.reshape_param.axis or layer.reshape_param.num_axes != -1 or dims.count(-1) > 1:
        raise ValueError("Reshape outside the subset drnngen emits (whole shape, at most one -1)")
    out = [shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape) // known if known else 0
    if math.prod(out) != math.prod(shape):
        raise ValueError(f"cannot reshape {list(shape)} to {dims}")
    return [tuple(int(d) for d in out)], []


def _elementwise(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    if layer.type != "PReLU":
        return [bottoms[0]], []
    channels = 1 if layer.prelu_param.channel_shared or len(bottoms[0]) < 2 else bottoms[0][1]
    return [bottoms[0]], [(channels,)]


def _scored(layer: Any, bottoms: list[Shape], data: Mapping[str, Shape]) -> Inferred:
    scores, label = bottoms[0], bottoms[1]
    if math.prod(label) != scores[0]:
        raise ValueError(f"label shape {list(label)} does not match scores {list(scores)}")
    if layer.type == "Accuracy" and layer.accuracy_param.top_k > math.prod(scores[1:]):
        raise ValueError(f"top_k {layer.accuracy_param.top_k} exceeds the {scores[1]} classes")
    return [()], []


_INFER: dict[str, Callable[[Any, list[Shape], Mapping[str, Shape]], Inferred]] = {
    "HDF5Data": _data,
    "Input": _input,
    "Embed": _embed,
    "InnerProduct": _inner_product,
    "Eltwise": _eltwise,
    "Scale": _scale,
    "Bias": _bias,
    "Convolution": _convolution,
    "Reshape": _reshape,
    "SoftmaxWithLoss": _scored,
    "Accuracy": _scored,
    **{kind: _elementwise for kind in ELEMENTWISE},
}


def layer_types() -> Iterable[str]:
    """The Caffe layer types drnngen emits and checks (common to BVLC 1.0 and the fork)."""
    return sorted(_INFER)
