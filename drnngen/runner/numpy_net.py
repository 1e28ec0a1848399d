"""A deploy net's forward pass in NumPy, from the prototxt and the trained .caffemodel.

`drnngen serve` scores in its own process with this, not in a Caffe child: a request
then costs no pipe, no JSON round trip and no second process competing for the two
cores (the load test's p99, README "Serving"). Caffe stays the reference: the service's
scores are checked against Caffe's own deploy forward (tests/test_serve_numpy.py), and
`serve --engine caffe` keeps the Caffe child (GPU mode needs it).

Only the layer types drnngen's generator writes into a deploy net are interpreted, each
with Caffe's semantics (caffe/src/caffe/layers/*.cpp at the version `make caffe`
builds); any other type, or a setting these do not follow (a Convolution other than
1×1), is refused with one line when the net is loaded, never mis-scored. The net is
compiled once into a list of small closures over the weights, so a forward pass is a
few NumPy calls a layer.

The weights come from the .caffemodel's blobs, read with the private protobuf schema of
`drnngen.codegen.schema` (no pycaffe here). A shared param (`param { name }`) is read
once, from the first layer that holds it: a trained model stores the fixed maps once per
layer that holds them, and converting every copy would multiply load time and memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from drnngen.codegen.schema import message_class, parse
from drnngen.errors import UserError

Array = npt.NDArray[np.float32]
Blobs = dict[str, Array]
Step = Callable[[Blobs], None]
_IDENTITY = ("Dropout",)  # Caffe's test phase passes the bottom through (the scaling is the train phase's)


class NumpyNet:
    """The deploy net `deploy` with the weights of `caffemodel`, scored in NumPy.

    Called like `ForwardServer`: `net(rows)` with rows name → array (a batch axis first)
    answers the `blob` rows, float32."""

    inline = True  # cheap and in-process: the service calls it on its event loop

    def __init__(self, deploy: Path, caffemodel: Path, blob: str = "prob") -> None:
        self.deploy, self.weights, self.blob = Path(deploy), Path(caffemodel), blob
        net = _read_deploy(self.deploy)
        stored = _read_weights(self.weights)
        self.inputs: tuple[str, ...] = ()
        self._steps: list[Step] = []
        shared: dict[str, Array] = {}
        produced: set[str] = set()
        for layer in net.layer:
            if layer.type == "Input":
                self.inputs += tuple(layer.top)
                produced.update(layer.top)
                continue
            missing = [b for b in layer.bottom if b not in produced]
            if missing:
                raise UserError(f"{self.deploy}: layer {layer.name!r} reads {missing[0]!r}, "
                                "which no layer before it writes")
            params = _layer_params(layer, stored, shared, self.weights)
            self._steps.append(_compile(layer, params, self.deploy))
            produced.update(layer.top)
        if blob not in produced:
            raise UserError(f"{self.deploy}: the deploy net has no blob {blob!r}")
        self._shapes = _input_shapes(net)
        self._first_pass()

    def _first_pass(self) -> None:
        """One pass over zero rows of the deploy net's own input shapes (id 0 is a valid
        page, item and padding id): weights that do not fit the net fail here, in one
        line, not at the first request, and that request does not pay NumPy's first calls."""
        try:
            self.forward({name: np.zeros(shape, np.float32) for name, shape in self._shapes.items()})
        except (ValueError, IndexError) as exc:
            raise UserError(f"{self.weights}: these weights do not fit {self.deploy} ({exc})") from None

    def forward(self, rows: Mapping[str, npt.ArrayLike]) -> Blobs:
        """Every blob of one forward pass over `rows`."""
        blobs: Blobs = {}
        for name in self.inputs:
            if name not in rows:
                raise UserError(f"{self.deploy}: no input {name!r} given (the net reads {', '.join(self.inputs)})")
            blobs[name] = np.asarray(rows[name], np.float32)
        for step in self._steps:
            step(blobs)
        return blobs

    def scores(self, rows: Mapping[str, npt.ArrayLike]) -> Array:
        """The `blob` rows of a forward pass over `rows`."""
        return self.forward(rows)[self.blob]

    __call__ = scores

    def close(self) -> None:
        """Nothing to stop (the ForwardServer's interface: a reload closes the old scorer)."""


# --- reading the files -------------------------------------------------------------

def _read_deploy(path: Path) -> Any:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the deploy net ({exc})") from None
    return parse(text, "NetParameter", str(path))


def _read_weights(path: Path) -> dict[str, Sequence[Any]]:
    """Layer name → its BlobProtos (the V1 `layers` field too, as Caffe reads it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the weights ({exc.strerror or exc})") from None
    if path.suffix == ".h5":
        raise UserError(f"{path}: HDF5 weights are read by Caffe only; serve with --engine caffe")
    model: Any = message_class("NetParameter")()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, or upb's RuntimeError on some builds
        raise UserError(f"{path}: not a caffemodel ({exc})") from None
    stored: dict[str, Sequence[Any]] = {}
    for layer in [*model.layer, *model.layers]:
        if layer.blobs:
            stored.setdefault(layer.name, layer.blobs)
    return stored


def _input_shapes(net: Any) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in net.layer:
        if layer.type == "Input":
            for top, shape in zip(layer.top, layer.input_param.shape, strict=False):
                shapes[top] = tuple(int(d) for d in shape.dim)
    return shapes


def _blob_array(blob: Any) -> Array:
    values = blob.data if len(blob.data) else blob.double_data
    array = np.array(values, dtype=np.float32)
    legacy = ("num", "channels", "height", "width")
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif any(blob.HasField(name) for name in legacy):  # the 4-D fields of old files
        shape = tuple(int(getattr(blob, name)) for name in legacy)
    else:  # a scalar (a Scale's one factor: Caffe writes an empty shape, which reads as none)
        shape = () if array.size == 1 else (array.size,)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"a weight blob holds {array.size} values for the shape {list(shape)}")
    return array.reshape(shape)


def _layer_params(layer: Any, stored: Mapping[str, Sequence[Any]], shared: dict[str, Array],
                  weights: Path) -> list[Array]:
    """The layer's learned blobs, in Caffe's order; a shared one read once."""
    count = _blob_count(layer)
    if count == 0:
        return []
    names = [layer.param[i].name if i < len(layer.param) else "" for i in range(count)]
    if all(name and name in shared for name in names):
        return [shared[name] for name in names]
    blobs = stored.get(layer.name)
    if blobs is None or len(blobs) < count:
        constant = _constant_fill(layer, count)
        if constant is None:
            raise UserError(f"{weights}: holds no weights for the layer {layer.name!r} of this net "
                            "(not a caffemodel trained for it?)")
        return constant
    params = []
    for i, name in enumerate(names):
        if name and name in shared:
            params.append(shared[name])
            continue
        try:
            array = _blob_array(blobs[i])
        except ValueError as exc:
            raise UserError(f"{weights}: layer {layer.name!r}: {exc}") from None
        if name:
            shared[name] = array
        params.append(array)
    return params


def _blob_count(layer: Any) -> int:
    """How many learned blobs Caffe gives the layer (its LayerSetUp)."""
    kind, two = layer.type, len(layer.bottom) > 1
    if kind == "InnerProduct":
        return 1 + int(layer.inner_product_param.bias_term)
    if kind == "Embed":
        return 1 + int(layer.embed_param.bias_term)
    if kind == "Convolution":
        return 1 + int(layer.convolution_param.bias_term)
    if kind == "Scale":
        return (0 if two else 1) + int(layer.scale_param.bias_term)
    if kind == "Bias":
        return 0 if two else 1
    if kind == "PReLU":
        return 1
    return 0


def _constant_fill(layer: Any, count: int) -> list[Array] | None:
    """A never-learned 1×1 Convolution's filter from its constant filler (an empty list:
    the shape is known at the first forward pass), or None. A model trained before the
    sparse sum was a Convolution has no blob for it, and Caffe then keeps the filler's."""
    p = layer.convolution_param
    fixed = all(param.lr_mult == 0 for param in layer.param) and len(layer.param) >= count
    if layer.type == "Convolution" and count == 1 and fixed and p.weight_filler.type == "constant":
        return []
    return None


# --- the layers --------------------------------------------------------------------

def _compile(layer: Any, params: list[Array], deploy: Path) -> Step:
    build = _LAYERS.get(layer.type)
    if build is None and layer.type in _IDENTITY:
        build = _identity
    if build is None:
        raise UserError(f"{deploy}: layer {layer.name!r} is a {layer.type}, which the NumPy engine does not score; "
                        "serve with --engine caffe")
    return build(layer, params, deploy)


def _axis(axis: int, ndim: int) -> int:
    return axis + ndim if axis < 0 else axis


def _identity(layer: Any, params: list[Array], deploy: Path) -> Step:
    bottom, top = layer.bottom[0], layer.top[0]

    def step(blobs: Blobs) -> None:
        blobs[top] = blobs[bottom]
    return step


def _unary(fn: Callable[[Array], Array]) -> Callable[[Any, list[Array], Path], Step]:
    """A layer of one bottom and one top that maps values (the activations, Power, Threshold)."""
    def build(layer: Any, params: list[Array], deploy: Path) -> Step:
        bottom, top = layer.bottom[0], layer.top[0]

        def step(blobs: Blobs) -> None:
            blobs[top] = fn(blobs[bottom])
        return step
    return build


def _relu(layer: Any, params: list[Array], deploy: Path) -> Step:
    slope = np.float32(layer.relu_param.negative_slope)
    if slope == 0:
        return _unary(lambda x: np.maximum(x, np.float32(0)))(layer, params, deploy)
    return _unary(lambda x: np.maximum(x, np.float32(0)) + slope * np.minimum(x, np.float32(0)))(layer, params, deploy)


def _sigmoid(x: Array) -> Array:
    half = np.float32(0.5)
    # Caffe computes 1 / (1 + exp(-x)), the same function; this form cannot overflow in
    # exp (a warning per large negative input otherwise) and agrees to float precision
    y: Array = half * np.tanh(half * x) + half
    return y


def _elu(layer: Any, params: list[Array], deploy: Path) -> Step:
    alpha = np.float32(layer.elu_param.alpha)
    return _unary(lambda x: np.maximum(x, np.float32(0)) + alpha * (np.exp(np.minimum(x, np.float32(0))) - 1))(
        layer, params, deploy)


def _prelu(layer: Any, params: list[Array], deploy: Path) -> Step:
    slopes = params[0].reshape(-1)

    def fn(x: Array) -> Array:
        a = slopes if x.ndim < 2 else slopes.reshape((1, -1) + (1,) * (x.ndim - 2))
        return np.maximum(x, np.float32(0)) + a * np.minimum(x, np.float32(0))
    return _unary(fn)(layer, params, deploy)


def _power(layer: Any, params: list[Array], deploy: Path) -> Step:
    p = layer.power_param
    power, scale, shift = np.float32(p.power), np.float32(p.scale), np.float32(p.shift)
    if power == 1:
        return _unary(lambda x: scale * x + shift)(layer, params, deploy)
    return _unary(lambda x: (scale * x + shift) ** power)(layer, params, deploy)


def _threshold(layer: Any, params: list[Array], deploy: Path) -> Step:
    threshold = np.float32(layer.threshold_param.threshold)
    return _unary(lambda x: (x > threshold).astype(np.float32))(layer, params, deploy)


def _softmax(layer: Any, params: list[Array], deploy: Path) -> Step:
    axis = layer.softmax_param.axis

    def fn(x: Array) -> Array:
        ax = _axis(axis, x.ndim)
        e = np.exp(x - x.max(axis=ax, keepdims=True))
        y: Array = e / e.sum(axis=ax, keepdims=True)
        return y
    return _unary(fn)(layer, params, deploy)


def _inner_product(layer: Any, params: list[Array], deploy: Path) -> Step:
    p = layer.inner_product_param
    weight = params[0].reshape(params[0].shape[0], -1)
    by = np.ascontiguousarray(weight if p.transpose else weight.T)  # [K, num_output]
    bias = params[1].reshape(-1) if p.bias_term else None
    axis, bottom, top = p.axis, layer.bottom[0], layer.top[0]

    def step(blobs: Blobs) -> None:
        x = blobs[bottom]
        lead = x.shape[:_axis(axis, x.ndim)]
        y = x.reshape(int(np.prod(lead)), -1) @ by
        if bias is not None:
            y += bias
        blobs[top] = y.reshape((*lead, by.shape[1]))
    return step


def _embed(layer: Any, params: list[Array], deploy: Path) -> Step:
    table = params[0]
    bias = params[1].reshape(-1) if layer.embed_param.bias_term else None
    bottom, top, rows = layer.bottom[0], layer.top[0], table.shape[0]

    def step(blobs: Blobs) -> None:
        ids = blobs[bottom].astype(np.int64)  # Caffe's static_cast<int>
        if ids.size and (ids.min() < 0 or ids.max() >= rows):
            raise ValueError(f"{layer.name}: an index outside 0..{rows - 1}")
        y = table[ids]
        blobs[top] = y if bias is None else y + bias
    return step


def _eltwise(layer: Any, params: list[Array], deploy: Path) -> Step:
    p = layer.eltwise_param
    bottoms, top = tuple(layer.bottom), layer.top[0]
    coeffs = tuple(np.float32(c) for c in p.coeff) or (np.float32(1),) * len(bottoms)
    op = p.operation
    if op == p.SUM and any(c != 1 for c in coeffs):
        def step(blobs: Blobs) -> None:
            y = coeffs[0] * blobs[bottoms[0]]
            for c, name in zip(coeffs[1:], bottoms[1:], strict=True):
                y = y + c * blobs[name]
            blobs[top] = y
        return step
    combine: Callable[[Array, Array], Array] = {p.SUM: np.add, p.PROD: np.multiply, p.MAX: np.maximum}[op]

    def plain(blobs: Blobs) -> None:
        y = blobs[bottoms[0]]
        for name in bottoms[1:]:
            y = combine(y, blobs[name])
        blobs[top] = y
    return plain


def _broadcast(values: Array, ndim: int, axis: int) -> Array:
    """`values` (shaped as dims axis.. of the bottom) laid over a bottom of `ndim` axes."""
    return values.reshape(values.shape + (1,) * (ndim - axis - values.ndim))


def _scale(layer: Any, params: list[Array], deploy: Path) -> Step:
    p = layer.scale_param
    bottom, top, axis = layer.bottom[0], layer.top[0], p.axis
    by = layer.bottom[1] if len(layer.bottom) > 1 else None
    learned = list(params)
    scale = None if by is not None else learned.pop(0)
    bias = learned.pop(0) if p.bias_term else None

    def step(blobs: Blobs) -> None:
        x = blobs[bottom]
        ax = _axis(axis, x.ndim)
        s = blobs[by] if by is not None else scale
        assert s is not None
        y = x * _broadcast(s, x.ndim, ax)
        blobs[top] = y if bias is None else y + _broadcast(bias, x.ndim, ax)
    return step


def _bias(layer: Any, params: list[Array], deploy: Path) -> Step:
    bottom, top, axis = layer.bottom[0], layer.top[0], layer.bias_param.axis
    by = layer.bottom[1] if len(layer.bottom) > 1 else None
    fixed = params[0] if by is None else None

    def step(blobs: Blobs) -> None:
        x = blobs[bottom]
        b = blobs[by] if by is not None else fixed
        assert b is not None
        blobs[top] = x + _broadcast(b, x.ndim, _axis(axis, x.ndim))
    return step


def _reshape(layer: Any, params: list[Array], deploy: Path) -> Step:
    p = layer.reshape_param
    dims, axis, num_axes = tuple(int(d) for d in p.shape.dim), p.axis, p.num_axes
    bottom, top = layer.bottom[0], layer.top[0]

    def step(blobs: Blobs) -> None:
        x = blobs[bottom]
        start = axis + x.ndim + 1 if axis < 0 else axis  # Caffe: -1 is past the last axis
        end = x.ndim if num_axes == -1 else start + num_axes
        new = tuple(x.shape[start + i] if d == 0 else d for i, d in enumerate(dims))
        blobs[top] = x.reshape(x.shape[:start] + new + x.shape[end:])
    return step


def _convolution(layer: Any, params: list[Array], deploy: Path) -> Step:
    """A 1×1 Convolution (the sparse sums' channel mean): a matrix product per sample."""
    p = layer.convolution_param
    one = (list(p.kernel_size) or [p.kernel_h, p.kernel_w]) in ([1], [1, 1])
    plain = all(s == 1 for s in p.stride) and all(v == 0 for v in p.pad) and all(d == 1 for d in p.dilation)
    if not (one and plain and p.group == 1 and p.axis == 1 and not p.pad_h and not p.pad_w
            and p.stride_h in (0, 1) and p.stride_w in (0, 1)):
        raise UserError(f"{deploy}: layer {layer.name!r}: the NumPy engine scores 1×1 Convolutions only; "
                        "serve with --engine caffe")
    outputs, value = int(p.num_output), np.float32(p.weight_filler.value)
    weight = params[0].reshape(outputs, -1) if params else None
    bias = params[1].reshape(-1, 1) if p.bias_term and len(params) > 1 else None
    bottom, top = layer.bottom[0], layer.top[0]

    def step(blobs: Blobs) -> None:
        x = blobs[bottom]
        w = weight if weight is not None else np.full((outputs, x.shape[1]), value, np.float32)
        y = np.matmul(w, x.reshape(x.shape[0], x.shape[1], -1))  # [n, outputs, H·W]
        if bias is not None:
            y = y + bias
        blobs[top] = y.reshape((x.shape[0], outputs, *x.shape[2:]))
    return step


_LAYERS: dict[str, Callable[[Any, list[Array], Path], Step]] = {
    "InnerProduct": _inner_product,
    "Embed": _embed,
    "Eltwise": _eltwise,
    "Scale": _scale,
    "Bias": _bias,
    "Reshape": _reshape,
    "Convolution": _convolution,
    "ReLU": _relu,
    "PReLU": _prelu,
    "ELU": _elu,
    "Sigmoid": _unary(_sigmoid),
    "TanH": _unary(np.tanh),
    "Power": _power,
    "Threshold": _threshold,
    "Softmax": _softmax,
}
