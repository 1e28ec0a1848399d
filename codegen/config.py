"""The YAML config schema: frozen dataclasses, parsed and validated in one place.

Each field's `metadata` carries its documentation and bounds, so the README's
key table (`codegen.config.key_table`) and the validation never drift apart.
Every problem is reported as `section.key: what is wrong`, collected, and
raised together as one `UserError` line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Union

import yaml

from drnngen.errors import UserError
from drnngen.safe_yaml import load_yaml, short_repr

# Activation layers common to BVLC Caffe 1.0 and the fork drnngen builds, and
# applied in place (MODEL.md). Only types whose backward pass is right in place
# are offered: AbsVal refuses in-place tops, and BNLL's gradient reads its
# bottom, which in place would already be overwritten. Keys are lower-case
# aliases users may write.
ACTIVATIONS = {
    "relu": "ReLU",
    "prelu": "PReLU",
    "elu": "ELU",
    "sigmoid": "Sigmoid",
    "tanh": "TanH",
}
LOSSES = {"softmax": "SoftmaxWithLoss"}
FILLERS = ("xavier", "msra", "gaussian", "uniform", "constant")
SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
LR_POLICIES = ("fixed", "step", "exp", "inv", "poly", "sigmoid")
SOLVER_MODES = ("CPU", "GPU")
# The hidden layer's update: the paper's (`drnn`, MODEL.md section 3) or GRU4Rec's
# gated one (`gru`, section 18); the first is the default.
CELLS = ("drnn", "gru")
# `repeat` and `tied` read a fixed [M+1, N] float32 map R from a weights file;
# past this size a config is refused rather than left to exhaust memory.
FIXED_MAP_LIMIT = 512 * 2**20


def _doc(text: str, **bounds: float) -> dict[str, Any]:
    return {"doc": text, **bounds}


@dataclass(frozen=True)
class FNNConfig:
    """The optional feed-forward CF net over the user's past purchases."""

    layers: int = field(default=3, metadata=_doc("hidden layers l_f of the FNN", min=1))
    widths: tuple[int, ...] = field(
        default=(1000,), metadata=_doc("width E_f: one value or a list of `layers`", min=1)
    )
    activations: tuple[str, ...] = field(
        default=("ReLU",), metadata=_doc("activation: one name or a list of `layers`")
    )


@dataclass(frozen=True)
class ModelConfig:
    """The DRNN itself (Algorithm 1's w, l, h and per-layer settings)."""

    states: int = field(default=4, metadata=_doc("w, number of states (window length)", min=1))
    layers: int = field(default=3, metadata=_doc("l, hidden layers per state", min=1))
    shortcut: int = field(
        default=1, metadata=_doc("h, shortcut depth: layers 0..h-1 also feed the loss; 0 <= h < l", min=0)
    )
    widths: tuple[int, ...] | None = field(
        default=None,
        metadata=_doc(
            "hidden widths E_i: one value or a list of `layers`; widths[0] is the embedding width; "
            "null = Table I's 1000 then 100 for the other layers",
            min=1,
        ),
    )
    activations: tuple[str, ...] = field(
        default=("ReLU",),
        metadata=_doc("activation f_i: one name or a list of `layers` (" + ", ".join(ACTIVATIONS.values()) + ")"),
    )
    cell: str = field(
        default="drnn",
        metadata=_doc("hidden-layer update: drnn (the paper's, f_i(Z x + W h + b)) or gru (GRU4Rec's gated update; "
                      "f_i is then the candidate's activation, TanH in GRU4Rec)"),
    )
    history: bool = field(default=True, metadata=_doc("add the history state fed by older pages"))
    loss: str = field(default="softmax", metadata=_doc("loss of every state: softmax (SoftmaxWithLoss)"))
    top_k: int = field(default=5, metadata=_doc("K of the extra top-K Accuracy layer (TEST phase)", min=1))
    weight_filler: str = field(default="xavier", metadata=_doc("weight filler: " + ", ".join(FILLERS)))
    weight_std: float = field(
        default=0.01, metadata=_doc("std (gaussian) or half-range (uniform) of the weight filler", gt=0)
    )
    bias_value: float = field(default=0.0, metadata=_doc("constant the biases start at"))
    dropout: tuple[float, ...] = field(
        default=(0.0,),
        metadata=_doc(
            "dropout probability p_i after f_i, TRAIN phase only: one value or a list of `layers`; "
            "0 = no Dropout layer; 0 <= p < 1",
            min=0, lt=1,
        ),
    )
    repeat: bool = field(
        default=False,
        metadata=_doc(
            "repeat path: each state's scores also get the session's own items, one learned scalar per lag "
            "(needs the fixed page→item map, drnngen.bind.repeat_weights)"
        ),
    )
    repeat_init: float = field(default=1.0, metadata=_doc("initial value of the repeat path's learned scalars"))
    repeat_lr_mult: float = field(
        default=1.0, metadata=_doc("lr_mult of the repeat path's scalars (a few scalars that compete with whole "
                                   "score vectors may need to move faster than the weights)", gt=0))
    neighbours: bool = field(
        default=False,
        metadata=_doc(
            "neighbour path: each state's scores also get the items that co-occur with the session's own items "
            "in the train split (item-kNN's cosine, a fixed page→item map), one learned scalar per lag "
            "(drnngen.bind.repeat_weights writes the map from a prepared dataset)"
        ),
    )
    neighbours_init: float = field(default=1.0, metadata=_doc("initial value of the neighbour path's learned scalars"))
    neighbours_lr_mult: float = field(
        default=1.0, metadata=_doc("lr_mult of the neighbour path's scalars", gt=0))
    tied: bool = field(
        default=False,
        metadata=_doc(
            "tied embeddings: the top projection scores pages through `emb`, mapped to items by the fixed "
            "page→item map (needs widths[l-1] == widths[0] and drnngen.bind.repeat_weights)"
        ),
    )
    fnn: FNNConfig | None = field(default=None, metadata=_doc("FNN block (keys fnn.*); absent or null = no FNN"))


@dataclass(frozen=True)
class DataConfig:
    """Dimensions and the HDF5 sources of the data layers."""

    manifest: str | None = field(
        default=None, metadata=_doc("prepared dataset folder (drnngen prepare); fills pages, items, sources")
    )
    pages: int = field(default=10000, metadata=_doc("M, page vocabulary (Embed input_dim is M+1; id 0 pads)", min=1))
    items: int = field(default=500, metadata=_doc("N, purchasable items (classes)", min=2))
    train_samples: int | None = field(
        default=None, metadata=_doc("training rows, to turn epochs into iterations (default: one batch)", min=1)
    )
    history_k: int = field(
        default=0, metadata=_doc("sparse history: K (page id, weight) pairs per sample (HDF5 history_ids, "
                                 "history_weights); 0 = the dense (M+1)-wide `history` row. Filled from the dataset",
                                 min=0))
    user_items_k: int = field(
        default=0, metadata=_doc("sparse user items: U class ids per sample, padded with N (HDF5 user_items "
                                 "[n, 1, U]); 0 = the dense N-wide multi-hot. Filled from the dataset", min=0))
    train_source: str = field(default="data/train.txt", metadata=_doc("HDF5 list file of the TRAIN phase"))
    test_source: str = field(default="data/val.txt", metadata=_doc("HDF5 list file of the TEST phase"))
    batch_size: int = field(default=9000, metadata=_doc("TRAIN batch (Table I: 9000)", min=1))
    test_batch_size: int = field(default=9000, metadata=_doc("TEST batch", min=1))
    deploy_batch_size: int = field(default=1, metadata=_doc("batch of the deploy net's Input layers", min=1))
    shuffle: bool = field(default=True, metadata=_doc("shuffle HDF5 files/rows in the TRAIN phase"))


@dataclass(frozen=True)
class SolverConfig:
    """solver.prototxt (Table I defaults)."""

    type: str = field(default="SGD", metadata=_doc("solver type: " + ", ".join(SOLVER_TYPES)))
    base_lr: float = field(default=0.1, metadata=_doc("initial learning rate (Table I: 0.1)", gt=0))
    lr_policy: str = field(default="step", metadata=_doc("learning-rate policy: " + ", ".join(LR_POLICIES)))
    gamma: float = field(default=0.2, metadata=_doc("lr factor per step (Table I: lr / 5)", gt=0))
    power: float = field(default=0.75, metadata=_doc("power of the inv/poly policies", gt=0))
    stepsize_epochs: float = field(default=100, metadata=_doc("epochs between lr steps (Table I: 100)", gt=0))
    stepsize: int | None = field(
        default=None, metadata=_doc("iterations between lr steps; overrides stepsize_epochs", min=1)
    )
    momentum: float = field(default=0.9, metadata=_doc("momentum", min=0))
    weight_decay: float = field(default=0.0005, metadata=_doc("L2 weight decay", min=0))
    max_iter: int = field(default=10000, metadata=_doc("training iterations", min=1))
    test_iter: int = field(default=10, metadata=_doc("TEST batches per test pass", min=1))
    test_interval: int = field(default=500, metadata=_doc("iterations between test passes", min=1))
    test_initialization: bool = field(
        default=True, metadata=_doc("also test before the first iteration (Caffe's default)")
    )
    display: int = field(default=100, metadata=_doc("iterations between loss prints", min=0))
    snapshot: int = field(default=0, metadata=_doc("iterations between snapshots (0: only at the end)", min=0))
    snapshot_prefix: str = field(default="drnn", metadata=_doc("path prefix of .caffemodel/.solverstate files"))
    random_seed: int | None = field(default=None, metadata=_doc("Caffe's random_seed (reproducible fillers/shuffles)"))
    solver_mode: str = field(default="CPU", metadata=_doc("CPU or GPU"))
    device_id: int = field(default=0, metadata=_doc("GPU id in GPU mode", min=0))
    net: str = field(default="net.prototxt", metadata=_doc("net file named in the solver (relative to Caffe's cwd)"))


@dataclass(frozen=True)
class DRNNConfig:
    """A whole config file."""

    name: str = field(default="drnn", metadata=_doc("the net's name"))
    model: ModelConfig = field(default_factory=ModelConfig, metadata=_doc("section model.*"))
    data: DataConfig = field(default_factory=DataConfig, metadata=_doc("section data.*"))
    solver: SolverConfig = field(default_factory=SolverConfig, metadata=_doc("section solver.*"))


def load_config(path: str | Path) -> DRNNConfig:
    """Read and validate a YAML config file."""
    path = Path(path)
    raw = load_yaml(path, "config")  # bounded, UTF-8, no duplicate keys (drnngen.safe_yaml)
    try:
        return parse_config(raw if raw is not None else {})
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


# Bounds the parsing applies on top of each field's own (`min`, `gt`, `lt` of its
# metadata): every number finite and within what Caffe's field holds (int32, float32),
# and the keys that size the generated net capped, so that no config makes generation
# run for hours (the net has states × layers blocks).
MAX_STATES = 256  # drnngen.data.manifest.MAX_WINDOW: the longest window the data layer writes
MAX_LAYERS = 16
MAX_WIDTH = 65_536
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
_CAPS: dict[str, int] = {
    "model.states": MAX_STATES,
    "model.layers": MAX_LAYERS,
    "model.fnn.layers": MAX_LAYERS,
    "model.widths": MAX_WIDTH,
    "model.fnn.widths": MAX_WIDTH,
    "data.history_k": MAX_WIDTH,
    "data.user_items_k": MAX_WIDTH,
}
_INT64_KEYS = ("solver.random_seed",)  # Caffe's int64 random_seed
_PER_LAYER_KEYS = ("model.widths", "model.activations", "model.dropout", "model.fnn.widths",
                   "model.fnn.activations")
MAX_ERRORS = 8  # problems named in the one error line; the rest are counted


def parse_config(raw: object) -> DRNNConfig:
    """Validate a mapping (the parsed YAML) into a DRNNConfig; errors name their keys."""
    errors: list[str] = []
    cfg: DRNNConfig = _parse_section(DRNNConfig, raw, "", errors)
    if not errors:
        errors.extend(_cross_checks(cfg))
    if errors:
        shown = errors[:MAX_ERRORS]
        if len(errors) > MAX_ERRORS:
            shown.append(f"and {len(errors) - MAX_ERRORS} more problems")
        raise UserError("; ".join(shown))
    return cfg


def _parse_section(cls: type[Any], raw: object, prefix: str, errors: list[str]) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: expected a mapping of keys, got {_kind(raw)}")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [f"{prefix}{_key_name(key)}" for key in raw if key not in known]
    if unknown:
        named = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        errors.append(f"{named}: unknown key{'s' if len(unknown) > 1 else ''} (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, fld in known.items():
        if name in raw:
            values[name] = _parse_value(hints[name], raw[name], fld, f"{prefix}{name}", errors)
    try:
        return cls(**values)
    except TypeError:  # a bad value was already reported; fall back to defaults
        return cls()


def _key_name(key: object) -> str:
    """A key as an error message shows it: plain when it is a short printable string."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= 40:
        return key
    return short_repr(key, 40)


def _parse_value(hint: Any, value: object, fld: dataclasses.Field[Any], key: str, errors: list[str]) -> Any:
    optional = _is_optional(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if dataclasses.is_dataclass(hint):
        return _parse_section(typing.cast(type[Any], hint), {} if value is None else value, f"{key}.", errors)
    if typing.get_origin(hint) is tuple:
        return _parse_list(typing.get_args(hint)[0], value, fld, key, errors)
    return _parse_scalar(hint, value, fld, key, errors)


def _parse_list(item: type[Any], value: object, fld: dataclasses.Field[Any], key: str, errors: list[str]) -> Any:
    items = value if isinstance(value, list) else [value]
    if not items:
        errors.append(f"{key}: must not be an empty list")
        return fld.default
    if key in _PER_LAYER_KEYS and len(items) > MAX_LAYERS:
        errors.append(f"{key}: a list of {len(items)} values; at most one per layer ({MAX_LAYERS} layers)")
        return fld.default
    parsed = tuple(_parse_scalar(item, v, fld, key, errors) for v in items)
    return parsed


def _parse_scalar(hint: type[Any], value: object, fld: dataclasses.Field[Any], key: str, errors: list[str]) -> Any:
    ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        errors.append(f"{key}: expected {hint.__name__}, got {_kind(value)} {short_repr(value)}")
        return fld.default
    problem = _out_of_range(value, key)
    if problem:
        errors.append(f"{key}: {problem}")
        return fld.default
    low = fld.metadata.get("min")
    if low is not None and value < low:
        errors.append(f"{key}: must be >= {low}, got {value}")
    above = fld.metadata.get("gt")
    if above is not None and value <= above:
        errors.append(f"{key}: must be > {above}, got {value}")
    below = fld.metadata.get("lt")
    if below is not None and value >= below:
        errors.append(f"{key}: must be < {below}, got {value}")
    return value


def _out_of_range(value: object, key: str) -> str:
    """What is wrong with a number whatever its field's bounds (empty when nothing):
    NaN and infinities, and values beyond Caffe's field or drnngen's cap for the key."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        if abs(value) > FLOAT32_MAX:
            return f"must be at most {FLOAT32_MAX:.4g} in magnitude (Caffe's float), got {value:.4g}"
    elif isinstance(value, int) and not isinstance(value, bool):
        high = _CAPS.get(key, INT64_MAX if key in _INT64_KEYS else INT32_MAX)
        low = -INT64_MAX - 1 if key in _INT64_KEYS else -INT32_MAX - 1
        if not low <= value <= high:
            shown = value if abs(value) < 10**20 else short_repr(value)
            reason = " (the longest window drnngen prepares)" if key == "model.states" else ""
            return f"must be <= {high}{reason}, got {shown}" if value > high else f"must be >= {low}, got {shown}"
    elif isinstance(value, str):
        try:
            value.encode("utf-8")  # a YAML "\ud800" escape is a lone surrogate: no prototxt can hold it
        except UnicodeEncodeError:
            return f"must be valid Unicode text, got {short_repr(value)}"
    return ""


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def _kind(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _per_layer(values: tuple[Any, ...], count: int, key: str, errors: list[str]) -> tuple[Any, ...]:
    if len(values) == 1:
        return values * count
    if len(values) != count:
        errors.append(f"{key}: expected one value or a list of {count}, got a list of {len(values)}")
    return values


def _activation(name: str, key: str, errors: list[str]) -> str:
    canonical = ACTIVATIONS.get(name.lower())
    if canonical is None:
        errors.append(f"{key}: unknown activation {short_repr(name)} (one of: {', '.join(ACTIVATIONS.values())})")
        return name
    return canonical


def _cross_checks(cfg: DRNNConfig) -> list[str]:
    """Rules that involve several keys; also expands per-layer lists to length l."""
    errors: list[str] = []
    m = cfg.model
    if m.shortcut >= m.layers:
        errors.append(f"model.shortcut: h must be < model.layers ({m.layers}), got {m.shortcut}")
    if m.widths is not None:
        _per_layer(m.widths, m.layers, "model.widths", errors)
    for act in _per_layer(m.activations, m.layers, "model.activations", errors):
        _activation(act, "model.activations", errors)
    _per_layer(m.dropout, m.layers, "model.dropout", errors)
    errors.extend(_fixed_map_checks(cfg))
    net = PurePosixPath(cfg.solver.net)
    if net.is_absolute() or ".." in net.parts or not net.name.endswith(".prototxt"):
        # the solver is written beside the net: its `net` names that file, nothing else
        errors.append(f"solver.net: must be a .prototxt file name beside the solver (like net.prototxt), "
                      f"got {short_repr(cfg.solver.net)}")
    if m.fnn is not None:
        _per_layer(m.fnn.widths, m.fnn.layers, "model.fnn.widths", errors)
        for act in _per_layer(m.fnn.activations, m.fnn.layers, "model.fnn.activations", errors):
            _activation(act, "model.fnn.activations", errors)
    if m.cell not in CELLS:
        errors.append(f"model.cell: unknown cell {short_repr(m.cell)} (one of: {', '.join(CELLS)})")
    if m.loss not in LOSSES:
        errors.append(f"model.loss: unknown loss {short_repr(m.loss)} (one of: {', '.join(LOSSES)})")
    if m.weight_filler not in FILLERS:
        errors.append(f"model.weight_filler: unknown filler {short_repr(m.weight_filler)} "
                      f"(one of: {', '.join(FILLERS)})")
    if m.top_k > cfg.data.items:
        errors.append(f"model.top_k: must be <= data.items ({cfg.data.items}), got {m.top_k}")
    s = cfg.solver
    if s.stepsize is None and s.lr_policy in ("step", "sigmoid"):
        samples = cfg.data.train_samples or cfg.data.batch_size
        steps = s.stepsize_epochs * -(-samples // cfg.data.batch_size)
        if steps > INT32_MAX:
            errors.append(f"solver.stepsize_epochs: {s.stepsize_epochs:g} epochs are {steps:.3g} iterations, "
                          f"more than Caffe's stepsize holds ({INT32_MAX})")
    for key, value, allowed in (
        ("solver.type", s.type, SOLVER_TYPES),
        ("solver.lr_policy", s.lr_policy, LR_POLICIES),
        ("solver.solver_mode", s.solver_mode, SOLVER_MODES),
    ):
        if value not in allowed:
            errors.append(f"{key}: unknown value {short_repr(value)} (one of: {', '.join(allowed)})")
    return errors


def _fixed_map_checks(cfg: DRNNConfig) -> list[str]:
    """`tied` needs the top layer as wide as the embedding; `repeat`/`tied` hold R in memory."""
    errors: list[str] = []
    m = cfg.model
    if m.tied and (m.widths is None or len(m.widths) in (1, m.layers)):
        top, embedding = widths(cfg)[-1], widths(cfg)[0]
        if top != embedding:
            errors.append(f"model.tied: needs widths[l-1] == widths[0] (the top layer scores pages through "
                          f"`emb`), got widths[{m.layers - 1}] = {top} and widths[0] = {embedding}")
    if uses_fixed_maps(cfg):
        size = fixed_map_bytes(cfg)
        if size > FIXED_MAP_LIMIT:
            key = "model.repeat" if m.repeat else "model.tied" if m.tied else "model.neighbours"
            errors.append(f"{key}: {_maps_held(m)} = {cfg.data.pages + 1}×{cfg.data.items} "
                          f"float32, {size / 2**20:.0f} MiB, over the {FIXED_MAP_LIMIT // 2**20} MiB limit")
    return errors


def _maps_held(m: ModelConfig) -> str:
    if (m.repeat or m.tied) and m.neighbours:
        return "the fixed maps R and Q are 2×(M+1)×N"
    if m.neighbours:
        return "the fixed neighbour map Q is (M+1)×N"
    return "the fixed page→item map R is (M+1)×N"


def uses_fixed_maps(cfg: DRNNConfig) -> bool:
    """Whether the net reads a fixed [M+1, N] map from a weights file: R (`repeat`,
    `tied`) or the neighbour map Q (`neighbours`)."""
    m = cfg.model
    return m.repeat or m.tied or m.neighbours


def fixed_map_bytes(cfg: DRNNConfig) -> int:
    """Bytes of the fixed [M+1, N] float32 maps the net holds: R (`repeat`, `tied`)
    and the neighbour map Q (`neighbours`), each once (states share them)."""
    m = cfg.model
    maps = int(m.repeat or m.tied) + int(m.neighbours)
    return maps * (cfg.data.pages + 1) * cfg.data.items * 4


def widths(cfg: DRNNConfig) -> tuple[int, ...]:
    """Per-layer widths E_0..E_{l-1} (a single value is repeated)."""
    if cfg.model.widths is None:
        return (1000,) + (100,) * (cfg.model.layers - 1)
    return _expand(cfg.model.widths, cfg.model.layers)


def activations(cfg: DRNNConfig) -> tuple[str, ...]:
    """Per-layer Caffe activation types f_0..f_{l-1}."""
    return tuple(ACTIVATIONS[a.lower()] for a in _expand(cfg.model.activations, cfg.model.layers))


def dropouts(cfg: DRNNConfig) -> tuple[float, ...]:
    """Per-layer dropout probabilities p_0..p_{l-1} (0: no Dropout layer)."""
    return _expand(cfg.model.dropout, cfg.model.layers)


def fnn_layers(fnn: FNNConfig) -> tuple[tuple[int, str], ...]:
    """(width, Caffe activation) of each FNN hidden layer."""
    acts = _expand(fnn.activations, fnn.layers)
    return tuple(zip(_expand(fnn.widths, fnn.layers), (ACTIVATIONS[a.lower()] for a in acts), strict=True))


def _expand(values: tuple[Any, ...], count: int) -> tuple[Any, ...]:
    return values * count if len(values) == 1 else values


def to_mapping(cfg: DRNNConfig) -> dict[str, Any]:
    """The config as plain YAML-ready data (inverse of parse_config)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    result: dict[str, Any] = plain(cfg)
    return result


def key_table() -> list[tuple[str, str, str]]:
    """(key, default, description) of every config key, for the README."""
    rows: list[tuple[str, str, str]] = []

    def walk(cls: type[Any], prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for fld in dataclasses.fields(cls):
            hint = hints[fld.name]
            inner = next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), hint)
            if dataclasses.is_dataclass(inner):
                walk(inner, f"{prefix}{fld.name}.")  # type: ignore[arg-type]
                continue
            default = fld.default
            shown = "null" if default is None else yaml.safe_dump(
                list(default) if isinstance(default, tuple) else default, default_flow_style=True
            ).strip().removesuffix("...").strip()
            rows.append((prefix + fld.name, shown, fld.metadata["doc"]))

    walk(DRNNConfig, "")
    return rows
