"""Algorithm 1 (CodeGen) as a pure function: config → in-memory layer graph.

No I/O here. The graph is a list of `Layer`s in a deterministic topological
order, with the names of docs/MODEL.md (`s{t}_h{i}`, `hist_h{i}`,
`s{t}_score`, `s{t}_loss`, `fnn_h{j}`; shared params `emb`, `Z{i}`, `W{i}`,
`out{i}`). Weight sharing across states is Caffe's `param { name }`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drnngen.codegen.config import DRNNConfig, activations, dropouts, fnn_layers, widths

TRAIN, TEST = "TRAIN", "TEST"
WEIGHT = (1.0, 1.0)  # (lr_mult, decay_mult): Caffe's convention for weights …
BIAS = (2.0, 0.0)  # … and for biases
SCALAR = (1.0, 0.0)  # learned scalars and slopes (PReLU, the repeat path's β): no decay
FIXED = (0.0, 0.0)  # never learned: the page→item map R, the neighbour map Q
REPEAT_MAP = "repeat_map"  # the shared name of R ([M+1, N]), read from a weights file
NEIGHBOUR_MAP = "nbr_map"  # the shared name of Q ([M+1, N], MODEL.md section 17.5), read from the same file
FIXED_MAPS = (REPEAT_MAP, NEIGHBOUR_MAP)
GRU = "gru"  # model.cell's GRU4Rec update (MODEL.md section 18)


@dataclass(frozen=True)
class Param:
    """One `param { }` block: a blob's name (shared when named) and multipliers."""

    name: str | None
    lr_mult: float
    decay_mult: float


@dataclass(frozen=True)
class Layer:
    """One Caffe layer. `settings` are further LayerParameter fields, in order."""

    name: str
    type: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: tuple[Param, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    phase: str | None = None


@dataclass(frozen=True)
class NetGraph:
    """A whole net: its name and layers in topological order."""

    name: str
    layers: tuple[Layer, ...]
    comment: str = ""


def model_outputs(cfg: DRNNConfig) -> tuple[str, str]:
    """Blob names of "the model's" loss and top-1 accuracy: the last state's."""
    return f"s{cfg.model.states - 1}_loss", "accuracy"


def input_tops(cfg: DRNNConfig) -> tuple[str, ...]:
    """Tops of the data layer, in HDF5 dataset order (see docs/ARCHITECTURE.md)."""
    w = cfg.model.states
    tops = [f"page_{t}" for t in range(w)] + [f"dwell_{t}" for t in range(w)]
    if cfg.model.history:
        tops += ["history_ids", "history_weights"] if cfg.data.history_k else ["history"]
    if cfg.model.fnn is not None:
        tops.append("user_items")
    return (*tops, "label")


def input_shapes(cfg: DRNNConfig, batch: int) -> dict[str, tuple[int, ...]]:
    """Shape of each input blob for a batch (the HDF5 datasets have these shapes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for top in input_tops(cfg):
        if top.startswith("page_") or top == "label":
            shapes[top] = (batch,)  # 1-D: Embed then yields [batch, E] (MODEL.md)
        elif top.startswith("dwell_"):
            shapes[top] = (batch, 1)
        elif top == "history":
            shapes[top] = (batch, cfg.data.pages + 1)
        elif top.startswith("history_"):
            shapes[top] = (batch, 1, cfg.data.history_k)  # [n, 1, K]: Embed then yields [n, 1, K, E], 4-D
        elif cfg.data.user_items_k:
            shapes[top] = (batch, 1, cfg.data.user_items_k)
        else:
            shapes[top] = (batch, cfg.data.items)
    return shapes


def build_graph(cfg: DRNNConfig) -> NetGraph:
    """Algorithm 1, CodeGen(w, l, h), for the TRAIN/TEST net.

    Line numbers are the paper's::

         1: input = genInputLayer()                       -> _input_layers
         2: for i = 0 to w-1                              -> _state (one call per state)
         3-9:   chain l neuron layers, btm -> top           -> _neuron (a_j(i) update)
        10-11:  loss = genLossLayer(); connect(top, loss)    -> _score (top projection), _loss
        12-18: history state: l neuron layers, no loss     -> _history
        19-24: for each state, walk up h layers from the
               input and connect each to the state's loss  -> _score (shortcut projections)

    The history chain is emitted before state 0, which reads it, so the
    layer list is topologically ordered.
    """
    w = cfg.model.states
    layers: list[Layer] = [*_input_layers(cfg)]
    if cfg.model.history:
        layers += _history(cfg)
    fnn = _fnn(cfg) if cfg.model.fnn is not None else []
    for t in range(w):
        layers += _state(cfg, t)
        if cfg.model.repeat:
            layers.append(_page_map(cfg, t, "repmap", REPEAT_MAP))
        if cfg.model.neighbours:
            layers.append(_page_map(cfg, t, "nbrmap", NEIGHBOUR_MAP))
        if t == w - 1:
            layers += fnn  # joined into the last state's scores only
        layers += _score(cfg, t)
        layers.append(_loss(t))
    layers += _accuracy(cfg)
    return NetGraph(cfg.name, tuple(layers), _comment(cfg))


def build_deploy_graph(cfg: DRNNConfig) -> NetGraph:
    """The deploy net: Input layers instead of data, `prob` = softmax of the last
    state's scores, and only the layers that `prob` needs."""
    graph = build_graph(cfg)
    shapes = input_shapes(cfg, cfg.data.deploy_batch_size)
    tops = tuple(t for t in input_tops(cfg) if t != "label")
    inputs = Layer(
        "input", "Input", (), tops,
        settings={"input_param": {"shape": [{"dim": list(shapes[t])} for t in tops]}},
    )
    last = f"s{cfg.model.states - 1}_score"
    body = [layer for layer in graph.layers if layer.phase is None and layer.type != "SoftmaxWithLoss"]
    prob = Layer("prob", "Softmax", (last,), ("prob",))
    kept = _ancestors([inputs, *body, prob], "prob")
    return NetGraph(cfg.name, tuple(kept), graph.comment)


def fixed_map_layers(cfg: DRNNConfig) -> tuple[Layer, ...]:
    """The layers a weights file must give the fixed maps (R `repeat_map`, Q `nbr_map`)
    to: each map's owner in the TRAIN/TEST net and in the deploy net (the first
    layer declaring it, the only one whose entry Caffe's
    CopyTrainedLayersFromHDF5 requires; the others share its blob). Empty when
    none of `repeat`, `tied` and `neighbours` is on."""
    owners: dict[str, Layer] = {}
    for graph in (build_graph(cfg), build_deploy_graph(cfg)):
        for name in FIXED_MAPS:
            first = next((layer for layer in graph.layers if any(p.name == name for p in layer.params)), None)
            if first is not None:
                owners.setdefault(first.name, first)
    return tuple(owners.values())


def _comment(cfg: DRNNConfig) -> str:
    m = cfg.model
    text = (
        f"w={m.states} l={m.layers} h={m.shortcut} widths={list(widths(cfg))} "
        f"activations={list(activations(cfg))} history={'on' if m.history else 'off'} "
        f"fnn={'on' if m.fnn is not None else 'off'} M={cfg.data.pages} N={cfg.data.items}"
    )
    # options beyond the paper are named only when on, so the paper's nets read as before
    if m.history and cfg.data.history_k:
        text += f" history_k={cfg.data.history_k}"
    if m.fnn is not None and cfg.data.user_items_k:
        text += f" user_items_k={cfg.data.user_items_k}"
    if m.cell == GRU:
        text += " cell=gru"
    if any(dropouts(cfg)):
        text += f" dropout={list(dropouts(cfg))}"
    if m.repeat:
        text += " repeat=on"
    if m.neighbours:
        text += " neighbours=on"
    if m.tied:
        text += " tied=on"
    return text


def _ancestors(layers: list[Layer], output: str) -> list[Layer]:
    """Layers `output` depends on, in their original order (dead branches pruned)."""
    needed = {output}
    keep: list[Layer] = []
    for layer in reversed(layers):
        if needed.intersection(layer.tops):
            keep.append(layer)
            needed.update(layer.bottoms)
    return keep[::-1]


# --- line 1: the input layer ------------------------------------------------

def _input_layers(cfg: DRNNConfig) -> list[Layer]:
    tops = input_tops(cfg)
    d = cfg.data
    train = {"source": d.train_source, "batch_size": d.batch_size}
    if d.shuffle:
        train["shuffle"] = True
    return [
        Layer("data", "HDF5Data", (), tops, settings={"hdf5_data_param": train}, phase=TRAIN),
        Layer(
            "data", "HDF5Data", (), tops,
            settings={"hdf5_data_param": {"source": d.test_source, "batch_size": d.test_batch_size}},
            phase=TEST,
        ),
    ]


# --- lines 2-9: the neuron layers of one state -------------------------------

def _state(cfg: DRNNConfig, t: int) -> list[Layer]:
    layers: list[Layer] = []
    for i in range(cfg.model.layers):
        previous = _previous_state_layer(cfg, t, i)
        if cfg.model.cell == GRU:
            layers += _gru(cfg, f"s{t}", i, _inputs(cfg, t, i), previous)
        else:
            layers += _neuron(cfg, f"s{t}", i, _inputs(cfg, t, i), previous)
    return layers


def _previous_state_layer(cfg: DRNNConfig, t: int, i: int) -> str | None:
    """a_i(t-1): the previous state's layer i, the history state's for t = 0, or none."""
    if t > 0:
        return _output(cfg, f"s{t - 1}", i)
    return _output(cfg, "hist", i) if cfg.model.history else None


def _output(cfg: DRNNConfig, prefix: str, i: int) -> str:
    """The blob every reader of a_i takes: `{prefix}_h{i}`, or its Dropout's top."""
    return f"{prefix}_drop{i}" if dropouts(cfg)[i] > 0 else f"{prefix}_h{i}"


def _inputs(cfg: DRNNConfig, t: int, i: int) -> list[Layer]:
    """The non-recurrent terms of a_i(t): Z_0 V_t + z_θ θ(p_t) + b_0, or Z_i a_{i-1}(t) + b_i."""
    width = widths(cfg)[i]
    if i > 0:
        return [_inner_product(cfg, f"s{t}_z{i}", _output(cfg, f"s{t}", i - 1), width, f"Z{i}", f"b{i}")]
    embed = Layer(
        f"s{t}_emb", "Embed", (f"page_{t}",), (f"s{t}_emb",),
        params=(Param("emb", *WEIGHT),),
        settings={"embed_param": {
            "num_output": width, "input_dim": cfg.data.pages + 1, "bias_term": False,
            "weight_filler": _weight_filler(cfg),
        }},
    )
    return [embed, _inner_product(cfg, f"s{t}_dwell", f"dwell_{t}", width, "zdwell", "b0")]


def _neuron(cfg: DRNNConfig, prefix: str, i: int, terms: list[Layer], previous: str | None) -> list[Layer]:
    """a_i = f_i(sum of terms [+ W_i a_i(previous)]): Eltwise SUM, then f_i in place,
    then Dropout when p_i > 0 — not in place: Sigmoid's, TanH's and ELU's backward
    pass reads their top, which an in-place Dropout would have rescaled."""
    if previous is not None:
        terms = [*terms, _inner_product(cfg, f"{prefix}_w{i}", previous, widths(cfg)[i], f"W{i}", None)]
    top = f"{prefix}_h{i}"
    return [*_sum(terms, top), _activation(activations(cfg)[i], f"{top}_act", top, f"P{i}"),
            *_dropout(cfg, prefix, i)]


def _gru(cfg: DRNNConfig, prefix: str, i: int, terms: list[Layer], previous: str | None) -> list[Layer]:
    """GRU4Rec's update of hidden layer i (MODEL.md section 18), h = a_i(previous):

        z = σ(W_z x + b_z + U_z h)         {prefix}_gz{i}   ({prefix}_xz{i} + {prefix}_uz{i})
        r = σ(W_r x + b_r + U_r h)         {prefix}_gr{i}   ({prefix}_xr{i} + {prefix}_ur{i})
        ĥ = f_i(W_c x + b_c + U_c (r∘h))   {prefix}_c{i}    ({prefix}_xc{i} + {prefix}_uc{i} over {prefix}_rh{i})
        h' = (1 − z)∘h + z∘ĥ               {prefix}_h{i}    ({prefix}_keep{i} over {prefix}_nz{i}, + {prefix}_new{i})

    x is what the DRNN's update takes as its non-recurrent input: for i = 0 the
    sum of the DRNN's terms (`terms`: the page vector and the dwell term with
    b_0, summed into `{prefix}_x0`), for i > 0 layer i-1's output. Without h
    (state 0 without history, the history chain) every U term vanishes and
    h' = z∘ĥ: no r gate, no 1 − z."""
    width = widths(cfg)[i]
    if i == 0:
        x = f"{prefix}_x0"
        layers = _sum(terms, x)
    else:
        x = _output(cfg, prefix, i - 1)
        layers = []

    def affine(kind: str, recurrent: str | None, top: str) -> list[Layer]:
        """W_kind x + b_kind (+ U_kind recurrent), summed into `top`."""
        parts = [_inner_product(cfg, f"{prefix}_x{kind}{i}", x, width, f"W{kind}{i}", f"b{kind}{i}")]
        if recurrent is not None:
            parts.append(_inner_product(cfg, f"{prefix}_u{kind}{i}", recurrent, width, f"U{kind}{i}", None))
        return _sum(parts, top)

    z, r, candidate, top = f"{prefix}_gz{i}", f"{prefix}_gr{i}", f"{prefix}_c{i}", f"{prefix}_h{i}"
    layers += [*affine("z", previous, z), Layer(f"{z}_act", "Sigmoid", (z,), (z,))]
    reset = None
    if previous is not None:
        layers += [*affine("r", previous, r), Layer(f"{r}_act", "Sigmoid", (r,), (r,))]
        reset = f"{prefix}_rh{i}"
        layers.append(_product(reset, r, previous))
    layers += [*affine("c", reset, candidate),
               _activation(activations(cfg)[i], f"{candidate}_act", candidate, f"P{i}")]
    new = _product(f"{prefix}_new{i}", z, candidate)
    if previous is None:
        layers += _sum([new], top)
    else:
        keep, complement = f"{prefix}_keep{i}", f"{prefix}_nz{i}"
        one_minus_z = Layer(complement, "Power", (z,), (complement,),
                            settings={"power_param": {"power": 1.0, "scale": -1.0, "shift": 1.0}})
        layers += [one_minus_z, *_sum([_product(keep, complement, previous), new], top)]
    return [*layers, *_dropout(cfg, prefix, i)]


def _product(name: str, a: str, b: str) -> Layer:
    """a ∘ b: an Eltwise PROD named and writing `name`."""
    return Layer(name, "Eltwise", (a, b), (name,), settings={"eltwise_param": {"operation": "PROD"}})


def _dropout(cfg: DRNNConfig, prefix: str, i: int) -> list[Layer]:
    """The Dropout after hidden layer i when p_i > 0 (out of place, see `_neuron`)."""
    ratio = dropouts(cfg)[i]
    if ratio <= 0:
        return []
    top, drop = f"{prefix}_h{i}", _output(cfg, prefix, i)
    return [Layer(drop, "Dropout", (top,), (drop,), settings={"dropout_param": {"dropout_ratio": ratio}})]


def _sum(terms: list[Layer], top: str, extra: tuple[str, ...] = ()) -> list[Layer]:
    """Sum the terms' outputs (and `extra` blobs) into `top`, an Eltwise layer of
    that name; a lone term writes `top` itself (Eltwise needs two bottoms)."""
    if len(terms) == 1 and not extra:
        only = terms[0]
        return [Layer(only.name, only.type, only.bottoms, (top,), only.params, only.settings)]
    eltwise = Layer(
        top, "Eltwise", (*(term.tops[0] for term in terms), *extra), (top,),
        settings={"eltwise_param": {"operation": "SUM"}},
    )
    return [*terms, eltwise]


def _activation(kind: str, name: str, blob: str, shared: str) -> Layer:
    # PReLU's slopes are weights too: shared across states like W_i and Z_i.
    params = (Param(shared, *SCALAR),) if kind == "PReLU" else ()
    return Layer(name, kind, (blob,), (blob,), params)


def _inner_product(
    cfg: DRNNConfig, name: str, bottom: str, width: int, weight: str, bias: str | None,
    transpose: bool = False,
) -> Layer:
    fixed = weight in FIXED_MAPS  # R and Q are loaded from a weights file and never learned
    params = [Param(weight, *(FIXED if fixed else WEIGHT))]
    settings: dict[str, Any] = {"num_output": width, "bias_term": bias is not None}
    if transpose:
        settings["transpose"] = True
    settings["weight_filler"] = _FIXED_FILLER if fixed else _weight_filler(cfg)
    if bias is not None:
        params.append(Param(bias, *BIAS))
        settings["bias_filler"] = {"type": "constant", "value": cfg.model.bias_value}
    return Layer(name, "InnerProduct", (bottom,), (name,), tuple(params), {"inner_product_param": settings})


_FIXED_FILLER = {"type": "constant", "value": 0.0}  # R until its weights file is loaded


def _weight_filler(cfg: DRNNConfig) -> dict[str, Any]:
    kind = cfg.model.weight_filler
    if kind == "gaussian":
        return {"type": kind, "std": cfg.model.weight_std}
    if kind == "uniform":
        return {"type": kind, "min": -cfg.model.weight_std, "max": cfg.model.weight_std}
    if kind == "constant":
        return {"type": kind, "value": cfg.model.bias_value}
    return {"type": kind}


# --- lines 10-11 and 19-24: scores (top + shortcut projections) and loss ------

def _score(cfg: DRNNConfig, t: int) -> list[Layer]:
    """s{t}_score = out_{l-1} a_{l-1}(t) + Σ_{i<h} out_i a_i(t) (+ the FNN's, last state)
    (+ the repeat path's Σ_τ β_{t-τ} R[p_τ] + β_H V̄ R)
    (+ the neighbour path's Σ_τ γ_{t-τ} Q[p_τ] + γ_H V̄ Q).

    Only the top projection has a bias: the others' would be redundant. With
    `tied`, the top projection is (a_{l-1}(t) embᵀ) R + out_b: `s{t}_tied` scores
    the pages through the shared `emb`, `s{t}_out{l-1}` maps them to items."""
    top = cfg.model.layers - 1
    n = cfg.data.items
    head: list[Layer] = []
    if cfg.model.tied:
        pages = _inner_product(cfg, f"s{t}_tied", _output(cfg, f"s{t}", top), cfg.data.pages + 1, "emb", None)
        head.append(pages)
        terms = [_inner_product(cfg, f"s{t}_out{top}", pages.tops[0], n, REPEAT_MAP, "out_b", transpose=True)]
    else:
        terms = [_inner_product(cfg, f"s{t}_out{top}", _output(cfg, f"s{t}", top), n, f"out{top}", "out_b")]
    terms += [
        _inner_product(cfg, f"s{t}_out{i}", _output(cfg, f"s{t}", i), n, f"out{i}", None)
        for i in range(cfg.model.shortcut)
    ]
    if cfg.model.repeat:
        terms += _lag_terms(cfg, t, "rep", cfg.model.repeat_init, cfg.model.repeat_lr_mult)
    if cfg.model.neighbours:
        terms += _lag_terms(cfg, t, "nbr", cfg.model.neighbours_init, cfg.model.neighbours_lr_mult)
    joins_fnn = t == cfg.model.states - 1 and cfg.model.fnn is not None
    return [*head, *_sum(terms, f"s{t}_score", ("fnn_score",) if joins_fnn else ())]


# --- the repeat path (RepeatNet's simplest form) and the neighbour path ---------

def _page_map(cfg: DRNNConfig, t: int, kind: str, table: str) -> Layer:
    """Row page_t of a fixed [M+1, N] map, an Embed `s{t}_{kind}` over it: R[page_t]
    (`repmap`: the one-hot of the page's item class, zero for padding, OOV and pages
    that are no item) or Q[page_t] (`nbrmap`: that item's neighbours)."""
    return Layer(
        f"s{t}_{kind}", "Embed", (f"page_{t}",), (f"s{t}_{kind}",),
        params=(Param(table, *FIXED),),
        settings={"embed_param": {
            "num_output": cfg.data.items, "input_dim": cfg.data.pages + 1, "bias_term": False,
            "weight_filler": _FIXED_FILLER,
        }},
    )


def _lag_terms(cfg: DRNNConfig, t: int, kind: str, init: float, lr_mult: float) -> list[Layer]:
    """One learned scalar per lag over a fixed map's rows: for the repeat path (`rep`)
    β_{t-τ} R[page_τ] for τ = 0 … t (`s{t}_rep{τ}`, scalar `rep_b{t-τ}`) and, with the
    history state, β_H V̄ R (`s{t}_repH`, scalar `rep_bH`); for the neighbour path
    (`nbr`) the same over Q (`s{t}_nbr{τ}`, `nbr_b{t-τ}`, `s{t}_nbrH`, `nbr_bH`)."""
    sources = [(f"s{t}_{kind}{tau}", f"s{tau}_{kind}map", f"{kind}_b{t - tau}") for tau in range(t + 1)]
    if cfg.model.history:
        sources.append((f"s{t}_{kind}H", f"hist_{kind}map", f"{kind}_bH"))
    return [
        Layer(name, "Scale", (bottom,), (name,), params=(Param(scalar, lr_mult, SCALAR[1]),),
              settings={"scale_param": {"axis": 0, "num_axes": 0, "filler": {"type": "constant", "value": init}}})
        for name, bottom, scalar in sources
    ]


def _loss(t: int) -> Layer:
    return Layer(f"s{t}_loss", "SoftmaxWithLoss", (f"s{t}_score", "label"), (f"s{t}_loss",))


def _accuracy(cfg: DRNNConfig) -> list[Layer]:
    scores = f"s{cfg.model.states - 1}_score"
    layers = [Layer("accuracy", "Accuracy", (scores, "label"), ("accuracy",), phase=TEST)]
    k = cfg.model.top_k
    if k > 1:
        layers.append(Layer(
            f"accuracy_top{k}", "Accuracy", (scores, "label"), (f"accuracy_top{k}",),
            settings={"accuracy_param": {"top_k": k}}, phase=TEST,
        ))
    return layers


# --- lines 12-18: the history state ------------------------------------------

def _history(cfg: DRNNConfig) -> list[Layer]:
    """a_i(-1): the same update without a W term, fed by V̄ through the page
    vectors `emb` (InnerProduct transpose over the dense history row, or the
    weighted sum of the K sparse pairs' rows of `emb`). With the GRU cell: the
    cell's update from h = 0 over the same input."""
    layers: list[Layer] = []
    sparse = cfg.data.history_k > 0
    if sparse:
        layers.append(_power("hist_wk", "history_weights", cfg.data.history_k, 0.0))
    for i in range(cfg.model.layers):
        if i == 0 and sparse:
            pooled = _weighted_rows(cfg, "hist_pages", ("history_ids", "hist_wk", cfg.data.history_k),
                                    ("emb", cfg.data.pages + 1, widths(cfg)[0]))
            layers += pooled
            term = _bias(cfg, "hist_emb", pooled[-1].tops[0], "b0")
        elif i == 0:
            term = _inner_product(cfg, "hist_emb", "history", widths(cfg)[0], "emb", "b0", transpose=True)
        else:
            term = _inner_product(cfg, f"hist_z{i}", _output(cfg, "hist", i - 1), widths(cfg)[i], f"Z{i}", f"b{i}")
        if cfg.model.cell == GRU:  # x_0 = emb^T V̄ + b_0 (`hist_emb` writes `hist_x0`), x_i = hist_h{i-1}; h = 0
            layers += _gru(cfg, "hist", i, [term] if i == 0 else [], None)
        else:
            layers += _neuron(cfg, "hist", i, [term], None)
    for on, kind, table in ((cfg.model.repeat, "rep", REPEAT_MAP), (cfg.model.neighbours, "nbr", NEIGHBOUR_MAP)):
        if on and sparse:  # V̄ R = Σ_k w_k R[id_k] (V̄ Q alike)
            layers += _weighted_rows(cfg, f"hist_{kind}pages", ("history_ids", "hist_wk", cfg.data.history_k),
                                     (table, cfg.data.pages + 1, cfg.data.items), top=f"hist_{kind}map")
        elif on:  # V̄ R: the older pages' dwell shares, summed per item class (V̄ Q alike)
            layers.append(_inner_product(cfg, f"hist_{kind}map", "history", cfg.data.items, table, None,
                                         transpose=True))
    return layers


def _weighted_rows(cfg: DRNNConfig, name: str, pairs: tuple[str, str, int], table: tuple[str, int, int],
                   top: str | None = None, filler: dict[str, Any] | None = None) -> list[Layer]:
    """Σ_k weights[k] · table[ids[k]] per sample, [n, width], from ids and weights of
    shape [n, 1, K] (MODEL.md section 4.1): an Embed over the shared `table`
    ([n, 1, K, width]), a Scale by the weights in place, the mean over the K rows (the
    weights come in multiplied by K, so the mean is the sum), a Reshape to [n, width].
    The mean is a 1×1 Convolution over the rows viewed as K channels ([n, K, width, 1])
    with its one filter fixed at 1/K: a matrix product, where Caffe's CPU Pooling walks
    the window element by element (on the shop log's V̄R, K = 32 and N = 999, 10 ms
    against 59 ms a forward pass). `top` names the last blob (default `{name}_flat`),
    `filler` the table's (default the config's weight filler)."""
    ids, weights, k = pairs
    param, rows, width = table
    fixed = param in FIXED_MAPS
    if filler is None:
        filler = _FIXED_FILLER if fixed else _weight_filler(cfg)
    embed = Layer(name, "Embed", (ids,), (name,), params=(Param(param, *(FIXED if fixed else WEIGHT)),),
                  settings={"embed_param": {"num_output": width, "input_dim": rows, "bias_term": False,
                                            "weight_filler": filler}})
    scale = Layer(f"{name}_w", "Scale", (name, weights), (name,), settings={"scale_param": {"axis": 0}})
    rows_as_channels = Layer(f"{name}_k", "Reshape", (name,), (f"{name}_k",),
                             settings={"reshape_param": {"shape": {"dim": [0, k, -1, 1]}}})
    mean = Layer(f"{name}_sum", "Convolution", (rows_as_channels.tops[0],), (f"{name}_sum",),
                 params=(Param(None, *FIXED),),
                 settings={"convolution_param": {"num_output": 1, "bias_term": False, "kernel_size": 1,
                                                 "weight_filler": {"type": "constant", "value": 1.0 / k}}})
    flat = top or f"{name}_flat"
    reshape = Layer(flat, "Reshape", (mean.tops[0],), (flat,), settings={"reshape_param": {"shape": {"dim": [0, -1]}}})
    return [embed, scale, rows_as_channels, mean, reshape]


def _power(name: str, bottom: str, scale: float, shift: float) -> Layer:
    """scale · bottom + shift (Caffe's Power with power 1)."""
    return Layer(name, "Power", (bottom,), (name,),
                 settings={"power_param": {"power": 1.0, "scale": float(scale), "shift": float(shift)}})


def _bias(cfg: DRNNConfig, name: str, bottom: str, param: str) -> Layer:
    """bottom + b, b shared under `param` (the [width] bias of an InnerProduct)."""
    return Layer(name, "Bias", (bottom,), (name,), params=(Param(param, *BIAS),),
                 settings={"bias_param": {"filler": {"type": "constant", "value": cfg.model.bias_value}}})


# --- the FNN for collaborative filtering --------------------------------------

def _fnn(cfg: DRNNConfig) -> list[Layer]:
    assert cfg.model.fnn is not None
    layers: list[Layer] = []
    bottom = "user_items"
    for j, (width, kind) in enumerate(fnn_layers(cfg.model.fnn)):
        top = f"fnn_h{j}"
        if j == 0 and cfg.data.user_items_k:
            layers += _user_item_rows(cfg, width)
            ip = _bias(cfg, top, "fnn_items_flat", "fnn0_b")
        else:
            ip = _inner_product(cfg, top, bottom, width, f"fnn{j}", f"fnn{j}_b")
        layers += [ip, _activation(kind, f"{top}_act", top, f"fnn_P{j}")]
        bottom = top
    layers.append(_inner_product(cfg, "fnn_score", bottom, cfg.data.items, "fnn_out", "fnn_out_b"))
    return layers


def _user_item_rows(cfg: DRNNConfig, width: int) -> list[Layer]:
    """F_0 user_items from the sparse ids (padded with N): a mask U·[id < N] from a
    Threshold at N − ½ (1 at padding) and a Power (U − U·pad), then the weighted sum of
    the ids' rows of `fnn0` ([N+1, E_f]; row N, the padding's, is masked out)."""
    n, u = cfg.data.items, cfg.data.user_items_k
    pad = Layer("fnn_pad", "Threshold", ("user_items",), ("fnn_pad",),
                settings={"threshold_param": {"threshold": n - 0.5}})
    mask = _power("fnn_mask", "fnn_pad", -u, u)
    filler = _weight_filler(cfg)
    if filler["type"] in ("xavier", "msra"):  # scaled by N, as the dense [E_f, N] weight's fan-in is
        filler = {**filler, "variance_norm": "FAN_OUT"}
    return [pad, mask, *_weighted_rows(cfg, "fnn_items", ("user_items", "fnn_mask", u), ("fnn0", n + 1, width),
                                       filler=filler)]
