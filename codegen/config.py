"""The YAML config schema: frozen dataclasses, parsed and validated in one place.

Each field's `metadata` carries its documentation and bounds, so the README's
key table (`codegen.config.key_table`) and the validation never drift apart.
Every problem is reported as `section.key: what is wrong`, collected, and
raised together as one `UserError` line.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from drnngen.errors import UserError

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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such config file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise UserError(f"{path}:{where}: malformed YAML: {problem}") from None
    try:
        return parse_config(raw if raw is not None else {})
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def parse_config(raw: object) -> DRNNConfig:
    """Validate a mapping (the parsed YAML) into a DRNNConfig; errors name their keys."""
    errors: list[str] = []
    cfg: DRNNConfig = _parse_section(DRNNConfig, raw, "", errors)
    if not errors:
        errors.extend(_cross_checks(cfg))
    if errors:
        raise UserError("; ".join(errors))
    return cfg


def _parse_section(cls: type[Any], raw: object, prefix: str, errors: list[str]) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: expected a mapping of keys, got {_kind(raw)}")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            errors.append(f"{prefix}{key}: unknown key (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for name, fld in known.items():
        if name in raw:
            values[name] = _parse_value(hints[name], raw[name], fld, f"{prefix}{name}", errors)
    try:
        return cls(**values)
    except TypeError:  # a bad value was already reported; fall back to defaults
        return cls()


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
    parsed = tuple(_parse_scalar(item, v, fld, key, errors) for v in items)
    return parsed


def _parse_scalar(hint: type[Any], value: object, fld: dataclasses.Field[Any], key: str, errors: list[str]) -> Any:
    ok = isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        errors.append(f"{key}: expected {hint.__name__}, got {_kind(value)} {value!r}")
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
        errors.append(f"{key}: unknown activation {name!r} (one of: {', '.join(ACTIVATIONS.values())})")
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
    if m.fnn is not None:
        _per_layer(m.fnn.widths, m.fnn.layers, "model.fnn.widths", errors)
        for act in _per_layer(m.fnn.activations, m.fnn.layers, "model.fnn.activations", errors):
            _activation(act, "model.fnn.activations", errors)
    if m.loss not in LOSSES:
        errors.append(f"model.loss: unknown loss {m.loss!r} (one of: {', '.join(LOSSES)})")
    if m.weight_filler not in FILLERS:
        errors.append(f"model.weight_filler: unknown filler {m.weight_filler!r} (one of: {', '.join(FILLERS)})")
    if m.top_k > cfg.data.items:
        errors.append(f"model.top_k: must be <= data.items ({cfg.data.items}), got {m.top_k}")
    s = cfg.solver
    for key, value, allowed in (
        ("solver.type", s.type, SOLVER_TYPES),
        ("solver.lr_policy", s.lr_policy, LR_POLICIES),
        ("solver.solver_mode", s.solver_mode, SOLVER_MODES),
    ):
        if value not in allowed:
            errors.append(f"{key}: unknown value {value!r} (one of: {', '.join(allowed)})")
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
    if m.repeat or m.tied:
        size = fixed_map_bytes(cfg)
        if size > FIXED_MAP_LIMIT:
            key = "model.repeat" if m.repeat else "model.tied"
            errors.append(f"{key}: the fixed page→item map R is (M+1)×N = {cfg.data.pages + 1}×{cfg.data.items} "
                          f"float32, {size / 2**20:.0f} MiB, over the {FIXED_MAP_LIMIT // 2**20} MiB limit")
    return errors


def fixed_map_bytes(cfg: DRNNConfig) -> int:
    """Bytes of the fixed page→item map R ([M+1, N] float32) of `repeat` and `tied`."""
    return (cfg.data.pages + 1) * cfg.data.items * 4


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
