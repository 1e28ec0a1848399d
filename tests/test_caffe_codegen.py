"""Generated nets in real Caffe (issue 3's tests 1, 2 and 4).

1. Every example and 60 random valid configs load in caffe.Net (TRAIN, TEST)
   and their deploy nets load.
2. Weight sharing is real: parameters declared with one `param { name }` are
   one piece of memory in Caffe (change one, read the other).
4. The graph computes MODEL.md's equations: an independent NumPy
   implementation, fed with weights Caffe trained for a few iterations, gives
   Caffe's per-state scores and losses; miswired nets do not. This covers the
   options beyond the paper too (section 17: dropout, the repeat path, tied
   embeddings), trained from the fixed page→item map's weights file, and
   GRU4Rec's cell (`model.cell: gru`, section 18) through its own NumPy
   implementation.
5. The sparse sample layout (history as K (page, weight) pairs, user items as
   class ids) computes what the dense one does: on one log prepared both ways,
   with K covering every page, the sparse net's forward equals the dense net's
   to 1e-5 under the same weights, and MODEL.md's equations; three more SGD
   steps of each from those weights end at the same weights (the gradients agree).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np
import pytest
from google.protobuf import text_format

from drnngen.codegen import schema
from drnngen.codegen.build import DEPLOY, NET, generate, write
from drnngen.codegen.config import ACTIVATIONS, DRNNConfig, activations, load_config, parse_config
from drnngen.codegen.graph import input_tops
from drnngen.runner import CaffeInstall, NetLoad, TrainJob, forward, load_check_many, locate_caffe, train
from drnngen.runner.process import child_env
from tests.net_support import (
    EXAMPLES,
    materialize,
    neighbour_table,
    page_classes,
    random_configs,
    small_batches,
    with_fixed_map,
)

pytestmark = pytest.mark.caffe


@pytest.fixture(scope="module")
def install() -> CaffeInstall:
    return locate_caffe()


def declared_params(net_text: str) -> dict[str, list[str]]:
    """`param { name }` → the `layer/index` slots that declare it."""
    slots: dict[str, list[str]] = {}
    for layer in schema.parse(net_text, "NetParameter", "net").layer:
        for index, param in enumerate(layer.param):
            if param.name:
                slots.setdefault(param.name, []).append(f"{layer.name}/{index}")
    return slots


# --- 1: everything loads -------------------------------------------------------------


def test_examples_and_random_configs_load_in_caffe(tmp_path: Path,
                                                   install: CaffeInstall) -> None:
    named = [(p.stem, small_batches(load_config(p))) for p in EXAMPLES]
    named += [(cfg.name, cfg) for cfg in random_configs(60, seed=3)]
    assert all(any(getattr(cfg.model, key) for _, cfg in named) for key in ("repeat", "tied", "neighbours"))
    assert {cfg.model.cell for _, cfg in named} == {"drnn", "gru"}
    assert any(cfg.data.history_k and cfg.model.history and cfg.model.fnn for _, cfg in named)
    items: list[NetLoad] = []
    for index, (name, cfg) in enumerate(named):
        folder = materialize(cfg, tmp_path / f"{index:02d}-{name}", seed=index)
        # nets with the fixed map R also load it from its weights file, in all three nets
        fixed = with_fixed_map(cfg, folder, seed=index)
        items += [NetLoad(folder / NET, "train", fixed), NetLoad(folder / NET, "test", fixed),
                  NetLoad(folder / DEPLOY, "test", fixed)]
    summaries = load_check_many(items, install)
    failures = [f"{s.path.parent.name} {s.path.name} {s.phase}: {s.error}"
                for s in summaries if not s.ok]
    assert not failures, "\n".join(failures)
    for (name, cfg), index in zip(named, range(0, len(summaries), 3), strict=True):
        train_net, test_net, deploy = summaries[index:index + 3]
        w, n = cfg.model.states, cfg.data.items
        losses = [layer.name for layer in train_net.layers if layer.type == "SoftmaxWithLoss"]
        assert losses == [f"s{t}_loss" for t in range(w)], name
        assert "accuracy" not in train_net.blobs and test_net.blobs["accuracy"] == (), name
        assert test_net.blobs[f"s{w - 1}_score"] == (cfg.data.test_batch_size, n), name
        assert deploy.blobs["prob"] == (cfg.data.deploy_batch_size, n), name
        assert not any(layer.type == "HDF5Data" for layer in deploy.layers), name


# --- 2: shared weights are shared memory ------------------------------------------------


TINY = {
    "name": "tiny",
    "model": {"states": 3, "layers": 2, "shortcut": 1, "widths": [8, 5],
              "activations": ["ReLU", "TanH"], "history": True,
              "fnn": {"layers": 1, "widths": 6, "activations": "Sigmoid"}},
    "data": {"pages": 30, "items": 7, "batch_size": 16, "test_batch_size": 16},
    "solver": {"base_lr": 0.05, "lr_policy": "fixed", "test_iter": 1, "test_interval": 1000,
               "random_seed": 3},
}
# The options beyond the paper, each with what it changes of TINY (MODEL.md section 17).
OPTIONS: dict[str, dict[str, Any]] = {
    # everything at once: dropout, repeat path with the history row, tied embeddings, FNN
    "all": {"widths": [8, 8], "dropout": [0.3, 0.2], "repeat": True, "repeat_init": 0.5, "tied": True},
    # tied alone: R's owner is the top projection `s0_out1`, which also owns `out_b`
    "tied": {"shortcut": 0, "widths": [6, 6], "activations": ["TanH", "Sigmoid"], "history": False,
             "fnn": None, "dropout": 0.5, "tied": True},
    # the repeat path without the history state: R's owner is `s0_repmap`
    "repeat": {"activations": ["ReLU", "ReLU"], "history": False, "fnn": None, "repeat": True,
               "dropout": [0, 0.4]},
    # the neighbour path beside the repeat path, with the history row and the FNN (section 17.5)
    "neighbours": {"activations": ["ReLU", "ReLU"], "repeat": True, "neighbours": True, "neighbours_init": 0.7,
                   "neighbours_lr_mult": 5.0, "dropout": [0, 0.4]},
}


# GRU4Rec's cell (MODEL.md section 18) in TINY, and with the options: no history (h = 0 at
# state 0), dropout, the repeat path and tied embeddings. a_i is the candidate's activation.
GRU_VARIANTS: dict[str, dict[str, Any]] = {
    "gru": {"cell": "gru"},
    "gru_options": {"cell": "gru", "history": False, "widths": [6, 6], "activations": ["TanH", "Sigmoid"],
                    "dropout": [0.3, 0.2], "repeat": True, "tied": True, "fnn": None},
}


def options_config(option: str) -> DRNNConfig:
    model = {**cast(dict[str, Any], TINY["model"]), **{**OPTIONS, **GRU_VARIANTS}[option]}
    return parse_config({**TINY, "name": f"tiny_{option}",
                         "model": {k: v for k, v in model.items() if v is not None}})

WRITE_ONE_READ_OTHER = """
import json, sys
import caffe
caffe.set_mode_cpu()
net = caffe.Net(sys.argv[1], caffe.TRAIN)
seen = {}
for marker, (writer, reader) in enumerate(json.loads(sys.argv[2]), start=1):
    (w_layer, w_index), (r_layer, r_index) = writer.split("/"), reader.split("/")
    net.params[w_layer][int(w_index)].data[...] = 0.5 * marker
    seen[reader] = float(net.params[r_layer][int(r_index)].data.flat[-1])
print(json.dumps(seen))
"""


SHARED_NAMES = {  # MODEL.md's shared names, each held by at least one layer per state
    "paper": ("emb", "W0", "W1", "Z1", "out0", "out1"),
    "all": ("emb", "W0", "W1", "Z1", "out0", "repeat_map", "rep_b0", "rep_bH", "out_b"),
    "neighbours": ("emb", "repeat_map", "rep_b0", "nbr_map", "nbr_b0", "nbr_bH", "out_b"),
    "gru": ("emb", "zdwell", "b0", "Wz0", "bz0", "Uz0", "Wr0", "Ur0", "Wc0", "Uc0", "bc0",
            "Wz1", "Uz1", "Wr1", "br1", "Ur1", "Wc1", "Uc1", "out0", "out1"),
    "gru_options": ("emb", "Wz0", "Wc0", "Wz1", "Wc1", "repeat_map", "rep_b0", "out_b"),
}


@pytest.mark.parametrize("variant", sorted(SHARED_NAMES))
def test_shared_params_are_one_memory(variant: str, tmp_path: Path, install: CaffeInstall) -> None:
    cfg = parse_config(TINY) if variant == "paper" else options_config(variant)
    folder = materialize(cfg, tmp_path)
    declared = declared_params((folder / NET).read_text())
    for name in SHARED_NAMES[variant]:
        assert len(declared[name]) >= cfg.model.states, name
    summary = load_check_many([NetLoad(folder / NET, "train")], install)[0]
    assert summary.ok, summary.error
    expected = {frozenset(slots) for slots in declared.values() if len(slots) > 1}
    assert {frozenset(group) for group in summary.shared_params} == expected
    # Change one, read the other: the first and last holder of each shared name.
    pairs = [(slots[0], slots[-1]) for slots in declared.values() if len(slots) > 1]
    done = subprocess.run(
        [sys.executable, "-c", WRITE_ONE_READ_OTHER, str(folder / NET), json.dumps(pairs)],
        cwd=folder, env=child_env(install), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout)
    assert seen == {reader: 0.5 * marker for marker, (_, reader) in enumerate(pairs, start=1)}


# --- 4: the equations ---------------------------------------------------------------------

ACTIVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ReLU": lambda x: np.maximum(x, 0.0),
    "TanH": np.tanh,
    "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


def softmax_loss(scores: np.ndarray, label: np.ndarray) -> float:
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_prob[np.arange(len(label)), label.astype(int)].mean())


def lag_terms(p: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray], t: int, table: np.ndarray, kind: str,
              history: bool) -> np.ndarray:
    """A fixed map's path (MODEL.md 17.2, 17.5): Σ_{τ≤t} s_{t-τ} table[p_τ] (+ s_H V̄ table),
    the scalars s under `{kind}_b{lag}` and `{kind}_bH` (`rep`: β over R; `nbr`: γ over Q)."""
    total = sum(p[f"{kind}_b{t - tau}"] * table[x[f"page_{tau}"].astype(int)] for tau in range(t + 1))
    if history:
        total = total + p[f"{kind}_bH"] * (x["history"] @ table)
    return np.asarray(total)


def drnn_numpy(p: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray],
               w: int, f: tuple[str, str], f_fnn: str | None, *, history: bool = True,
               shortcut: int = 1, repeat: bool = False, classes: np.ndarray | None = None,
               tied: bool = False, neighbours: np.ndarray | None = None) -> list[tuple[np.ndarray, float]]:
    """MODEL.md for l=2, h in {0, 1}, history on or off, FNN (one hidden layer) or
    none (``f_fnn`` None); with the options of section 17: the repeat path and
    tied embeddings through the page → item classes ``classes``, the neighbour
    path through the map Q ``neighbours`` (dropout is the identity in the TEST
    phase). Returns (scores, loss) per state. ``p`` holds the weights by their
    shared names."""
    f0, f1 = ACTIVATION[f[0]], ACTIVATION[f[1]]
    n = p["out_b"].shape[0]
    if classes is not None:  # R = onehot(c(p)): class -1 picks the zero row
        fixed = np.vstack([np.eye(n), np.zeros((1, n))])[classes]
    zero = np.zeros(1)
    # History state (Algorithm 1, lines 12-18): V̄ through the page vectors, no W term.
    if history:
        prev0 = f0(x["history"] @ p["emb"] + p["b0"])
        prev1 = f1(prev0 @ p["Z1"].T + p["b1"])
        recur0, recur1 = prev0 @ p["W0"].T, prev1 @ p["W1"].T
    else:  # state 0 has no W term
        recur0 = recur1 = zero
    out = []
    for t in range(w):
        page = x[f"page_{t}"].astype(int)
        # a_0(t) = f_0(W_0 a_0(t-1) + Z_0 V_t + z_θ θ(p_t) + b_0)
        a0 = f0(recur0 + p["emb"][page] + x[f"dwell_{t}"] @ p["zdwell"].T + p["b0"])
        # a_1(t) = f_1(W_1 a_1(t-1) + Z_1 a_0(t) + b_1)
        a1 = f1(recur1 + a0 @ p["Z1"].T + p["b1"])
        # scores: the top layer's projection (tied: (a_1 embᵀ) R) plus the h=1 shortcut from a_0(t)
        scores = ((a1 @ p["emb"].T) @ fixed if tied else a1 @ p["out1"].T) + p["out_b"]
        if shortcut:
            scores = scores + a0 @ p["out0"].T
        if repeat:  # Σ_{τ≤t} β_{t-τ} onehot(c(p_τ)) + β_H V̄ R
            scores = scores + lag_terms(p, x, t, fixed, "rep", history)
        if neighbours is not None:  # Σ_{τ≤t} γ_{t-τ} Q[p_τ] + γ_H V̄ Q
            scores = scores + lag_terms(p, x, t, neighbours, "nbr", history)
        if t == w - 1 and f_fnn is not None:
            fnn_hidden = ACTIVATION[f_fnn](x["user_items"] @ p["fnn0"].T + p["fnn0_b"])
            scores = scores + fnn_hidden @ p["fnn_out"].T + p["fnn_out_b"]
        out.append((scores, softmax_loss(scores, x["label"])))
        recur0, recur1 = a0 @ p["W0"].T, a1 @ p["W1"].T
    return out


def numpy_of(cfg: DRNNConfig, p: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray],
             classes: np.ndarray | None, neighbours: np.ndarray | None = None) -> list[tuple[np.ndarray, float]]:
    """drnn_numpy with `cfg`'s switches (a TINY variant); `neighbours` is Q where the net has it."""
    m = cfg.model
    acts = tuple(ACTIVATIONS[a.lower()] for a in m.activations)
    f = (acts[0], acts[-1])
    fnn = ACTIVATIONS[m.fnn.activations[0].lower()] if m.fnn is not None else None
    return drnn_numpy(p, x, m.states, f, fnn, history=m.history, shortcut=m.shortcut,
                      repeat=m.repeat, classes=classes, tied=m.tied, neighbours=neighbours)


def by_shared_name(net_text: str, params: Mapping[str, tuple[np.ndarray, ...]]
                   ) -> dict[str, np.ndarray]:
    named: dict[str, np.ndarray] = {}
    for name, slots in declared_params(net_text).items():
        layer, index = slots[0].split("/")
        named[name] = params[layer][int(index)].astype(np.float64)
    return named


def caffe_forward(folder: Path, net: Path, model: Path | None, cfg: DRNNConfig,
                  install: CaffeInstall) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    w = cfg.model.states
    blobs = [*input_tops(cfg), *(f"s{t}_score" for t in range(w)),
             *(f"s{t}_loss" for t in range(w))]
    result = forward(net, "test", blobs, weights=model, with_params=True, install=install)
    inputs = {k: v.astype(np.float64) for k, v in result.blobs.items() if k in input_tops(cfg)}
    return inputs, {**result.blobs, **by_shared_name((folder / NET).read_text(), result.params)}


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory,
                 install: CaffeInstall) -> tuple[DRNNConfig, Path, Path]:
    cfg = parse_config(TINY)
    folder = materialize(cfg, tmp_path_factory.mktemp("tiny"), seed=11)
    result = train(TrainJob(workdir=folder, iterations=5, loss_blob="s2_loss",
                            snapshot=Path("tiny.caffemodel")), install)
    assert result.ok, result.error
    assert result.caffemodel is not None
    return cfg, folder, result.caffemodel


def test_caffe_forward_is_model_md(trained_tiny: tuple[DRNNConfig, Path, Path],
                                   install: CaffeInstall) -> None:
    cfg, folder, model = trained_tiny
    inputs, caffe_out = caffe_forward(folder, folder / NET, model, cfg, install)
    assert np.abs(caffe_out["b0"]).max() > 0, "biases still at their filler: not trained"
    expected = drnn_numpy(caffe_out, inputs, cfg.model.states, ("ReLU", "TanH"), "Sigmoid")
    for t, (scores, loss) in enumerate(expected):
        np.testing.assert_allclose(caffe_out[f"s{t}_score"], scores, rtol=1e-5, atol=1e-5,
                                   err_msg=f"state {t} scores")
        assert float(caffe_out[f"s{t}_loss"]) == pytest.approx(loss, rel=1e-5, abs=1e-5)


@pytest.fixture(scope="module", params=sorted(OPTIONS))
def trained_option(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   install: CaffeInstall) -> tuple[DRNNConfig, Path, Path, np.ndarray]:
    """A TINY variant trained 5 steps from R's weights file (like `caffe train --weights`)."""
    cfg = options_config(request.param)
    folder = materialize(cfg, tmp_path_factory.mktemp(f"tiny-{request.param}"), seed=11)
    fixed = with_fixed_map(cfg, folder, seed=5)
    assert fixed is not None
    result = train(TrainJob(workdir=folder, iterations=5, loss_blob="s2_loss", init_weights=fixed,
                            snapshot=Path("tiny.caffemodel")), install)
    assert result.ok, result.error
    assert result.caffemodel is not None
    return cfg, folder, result.caffemodel, page_classes(cfg, seed=5)


def test_caffe_forward_is_model_md_with_options(trained_option: tuple[DRNNConfig, Path, Path, np.ndarray],
                                                install: CaffeInstall) -> None:
    """Section 17's equations in the TEST phase (dropout: the identity), after training."""
    cfg, folder, model, classes = trained_option
    inputs, caffe_out = caffe_forward(folder, folder / NET, model, cfg, install)
    assert np.abs(caffe_out["b0"]).max() > 0, "biases still at their filler: not trained"
    # R came from the weights file and was never learned; the repeat scalars were
    fixed = np.vstack([np.eye(cfg.data.items), np.zeros((1, cfg.data.items))])[classes]
    np.testing.assert_array_equal(caffe_out["repeat_map"], fixed)
    if cfg.model.repeat:
        assert all(float(caffe_out[f"rep_b{lag}"]) != cfg.model.repeat_init for lag in range(cfg.model.states))
    q = neighbour_table(cfg, seed=5)
    if q is not None:  # Q too, and the neighbour scalars learned
        np.testing.assert_array_equal(caffe_out["nbr_map"], q)
        assert all(float(caffe_out[f"nbr_b{lag}"]) != cfg.model.neighbours_init for lag in range(cfg.model.states))
    worst = 0.0
    for t, (scores, loss) in enumerate(numpy_of(cfg, caffe_out, inputs, classes, q)):
        np.testing.assert_allclose(caffe_out[f"s{t}_score"], scores, rtol=1e-5, atol=1e-5,
                                   err_msg=f"state {t} scores")
        assert float(caffe_out[f"s{t}_loss"]) == pytest.approx(loss, rel=1e-5, abs=1e-5)
        worst = max(worst, float(np.abs(caffe_out[f"s{t}_score"] - scores).max()))
    print(f"{cfg.name}: max |caffe - numpy| = {worst:.2e}")


def rewire(net_text: str, layer_name: str, old_bottom: str, new_bottom: str | None) -> str:
    """The net with one bottom of one layer replaced (None: removed)."""
    net = schema.parse(net_text, "NetParameter", "net")
    layer = next(layer for layer in net.layer if layer.name == layer_name)
    bottoms = [b for b in layer.bottom if b != old_bottom]
    assert len(bottoms) == len(layer.bottom) - 1, f"{layer_name} has no bottom {old_bottom}"
    position = list(layer.bottom).index(old_bottom)
    if new_bottom is not None:
        bottoms.insert(position, new_bottom)
    del layer.bottom[:]
    layer.bottom.extend(bottoms)
    return str(text_format.MessageToString(net))


MISWIRINGS = {
    # the history state feeds state 1 instead of state 0
    "history into the wrong state": ("s1_w0", "s0_h0", "hist_h0"),
    # the h=1 shortcut of the last state is dropped from its scores
    "shortcut dropped": ("s2_score", "s2_out0", None),
}


OPTION_MISWIRINGS = {
    # the repeat path of the last state loses its lag-1 term
    "repeat lag dropped": ("all", ("s2_score", "s2_rep1", None)),
    # the history's repeat term scales state 2's own page map instead of V̄ R
    "repeat history replaced": ("all", ("s2_repH", "hist_repmap", "s2_repmap")),
    # the neighbour path of the last state loses its lag-1 term
    "neighbour lag dropped": ("neighbours", ("s2_score", "s2_nbr1", None)),
    # the history's neighbour term scales V̄ R (the repeat path's) instead of V̄ Q
    "neighbour history replaced": ("neighbours", ("s2_nbrH", "hist_nbrmap", "hist_repmap")),
    # tied: the item scores map V̄ instead of the page scores through R
    "tied page scores bypassed": ("all", ("s2_out1", "s2_tied", "history")),
    # tied alone: the top layer's page scores read layer 0 instead of layer 1
    "tied from the wrong layer": ("tied", ("s2_tied", "s2_drop1", "s2_drop0")),
}


@pytest.mark.parametrize("miswiring", sorted(OPTION_MISWIRINGS))
def test_numpy_check_catches_a_miswired_option(miswiring: str, tmp_path: Path,
                                               install: CaffeInstall) -> None:
    """The options' check can fail too: R's weights and fresh fillers in a miswired net."""
    option, change = OPTION_MISWIRINGS[miswiring]
    cfg = options_config(option)
    folder = materialize(cfg, tmp_path, seed=11)
    fixed = with_fixed_map(cfg, folder, seed=5)
    broken = folder / "broken.prototxt"
    broken.write_text(rewire((folder / NET).read_text(), *change))
    inputs, caffe_out = caffe_forward(folder, broken, fixed, cfg, install)
    expected = numpy_of(cfg, caffe_out, inputs, page_classes(cfg, seed=5), neighbour_table(cfg, seed=5))
    worst = max(float(np.abs(caffe_out[f"s{t}_score"] - scores).max())
                for t, (scores, _) in enumerate(expected))
    assert worst > 1e-3


@pytest.mark.parametrize("miswiring", sorted(MISWIRINGS))
def test_numpy_check_catches_a_miswired_net(miswiring: str,
                                            trained_tiny: tuple[DRNNConfig, Path, Path],
                                            install: CaffeInstall) -> None:
    """The check above can fail: the same weights in a miswired net disagree."""
    cfg, folder, model = trained_tiny
    broken = folder / f"broken-{miswiring.replace(' ', '-')}.prototxt"
    broken.write_text(rewire((folder / NET).read_text(), *MISWIRINGS[miswiring]))
    inputs, caffe_out = caffe_forward(folder, broken, model, cfg, install)
    expected = drnn_numpy(caffe_out, inputs, cfg.model.states, ("ReLU", "TanH"), "Sigmoid")
    worst = max(float(np.abs(caffe_out[f"s{t}_score"] - scores).max())
                for t, (scores, _) in enumerate(expected))
    assert worst > 1e-3


# --- 4 for the GRU cell (MODEL.md section 18) ------------------------------------------------


def gru_numpy(cfg: DRNNConfig, p: Mapping[str, np.ndarray], x: Mapping[str, np.ndarray],
              classes: np.ndarray | None) -> list[tuple[np.ndarray, float]]:
    """MODEL.md section 18 written out on its own, for any l and h: GRU4Rec's update
    per hidden layer, the state before state 0 the history state's (itself the
    update from h = 0) or zeros; then section 5's scores with section 17's repeat
    path and tied output, and the FNN (one hidden layer). The update from zeros
    is computed by the full formula, not simplified, so the net's simplification
    is checked too. Returns (scores, loss) per state."""
    m = cfg.model
    sigmoid = ACTIVATION["Sigmoid"]
    f = [ACTIVATION[a] for a in activations(cfg)]
    n = p["out_b"].shape[0]
    if classes is not None:
        fixed = np.vstack([np.eye(n), np.zeros((1, n))])[classes]

    def update(i: int, inp: np.ndarray, h: np.ndarray) -> np.ndarray:
        z = sigmoid(inp @ p[f"Wz{i}"].T + p[f"bz{i}"] + (h @ p[f"Uz{i}"].T if f"Uz{i}" in p else 0.0))
        r = sigmoid(inp @ p[f"Wr{i}"].T + p[f"br{i}"] + h @ p[f"Ur{i}"].T) if f"Wr{i}" in p else 0.0
        recurrent = (r * h) @ p[f"Uc{i}"].T if f"Uc{i}" in p else 0.0
        candidate = f[i](inp @ p[f"Wc{i}"].T + p[f"bc{i}"] + recurrent)
        return np.asarray((1.0 - z) * h + z * candidate)

    def chain(first: np.ndarray, before: list[np.ndarray]) -> list[np.ndarray]:
        hidden: list[np.ndarray] = []
        for i in range(m.layers):
            hidden.append(update(i, first if i == 0 else hidden[i - 1], before[i]))
        return hidden

    rows = len(x["label"])
    zeros = [np.zeros((rows, p[f"Wz{i}"].shape[0])) for i in range(m.layers)]
    # x_0 of the history state: V̄ through the page vectors, + b_0 (no dwell term)
    before = chain(x["history"] @ p["emb"] + p["b0"], zeros) if m.history else zeros
    out = []
    for t in range(m.states):
        page = x[f"page_{t}"].astype(int)
        # x_0(t) = emb[page_t] + z_θ θ(p_t) + b_0, the DRNN's input terms of layer 0
        hidden = chain(p["emb"][page] + x[f"dwell_{t}"] @ p["zdwell"].T + p["b0"], before)
        top = hidden[-1]
        scores = ((top @ p["emb"].T) @ fixed if m.tied else top @ p[f"out{m.layers - 1}"].T) + p["out_b"]
        for i in range(m.shortcut):
            scores = scores + hidden[i] @ p[f"out{i}"].T
        if m.repeat:
            scores = scores + lag_terms(p, x, t, fixed, "rep", m.history)
        if t == m.states - 1 and m.fnn is not None:
            fnn_hidden = ACTIVATION[m.fnn.activations[0]](x["user_items"] @ p["fnn0"].T + p["fnn0_b"])
            scores = scores + fnn_hidden @ p["fnn_out"].T + p["fnn_out_b"]
        out.append((scores, softmax_loss(scores, x["label"])))
        before = hidden
    return out


def gru_worst(cfg: DRNNConfig, caffe_out: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray],
              classes: np.ndarray | None) -> float:
    """max |Caffe − NumPy| over every state's scores."""
    expected = gru_numpy(cfg, caffe_out, inputs, classes)
    return max(float(np.abs(caffe_out[f"s{t}_score"] - scores).max()) for t, (scores, _) in enumerate(expected))


GRUTrained = tuple[DRNNConfig, Path, Path, np.ndarray | None]


@pytest.fixture(scope="module")
def trained_gru(tmp_path_factory: pytest.TempPathFactory,
                install: CaffeInstall) -> Callable[[str], GRUTrained]:
    """A GRU variant of TINY trained 5 steps (from R's weights file where it has R),
    trained once per module on first use."""
    done: dict[str, GRUTrained] = {}

    def get(variant: str) -> GRUTrained:
        if variant not in done:
            cfg = options_config(variant)
            folder = materialize(cfg, tmp_path_factory.mktemp(f"tiny-{variant}"), seed=11)
            fixed = with_fixed_map(cfg, folder, seed=5)
            result = train(TrainJob(workdir=folder, iterations=5, loss_blob="s2_loss", init_weights=fixed,
                                    snapshot=Path("tiny.caffemodel")), install)
            assert result.ok, result.error
            assert result.caffemodel is not None
            done[variant] = (cfg, folder, result.caffemodel, page_classes(cfg, seed=5) if fixed else None)
        return done[variant]

    return get


@pytest.mark.parametrize("variant", sorted(GRU_VARIANTS))
def test_caffe_forward_is_model_md_gru(variant: str, trained_gru: Callable[[str], GRUTrained],
                                       install: CaffeInstall) -> None:
    """Section 18's equations in the TEST phase, after training: every gate and bias has learned."""
    cfg, folder, model, classes = trained_gru(variant)
    inputs, caffe_out = caffe_forward(folder, folder / NET, model, cfg, install)
    for name in ("b0", "bz0", "br0", "bc0", "bz1", "br1", "bc1"):
        assert np.abs(caffe_out[name]).max() > 0, f"{name} still at its filler: not trained"
    worst = 0.0
    for t, (scores, loss) in enumerate(gru_numpy(cfg, caffe_out, inputs, classes)):
        np.testing.assert_allclose(caffe_out[f"s{t}_score"], scores, rtol=1e-5, atol=1e-5,
                                   err_msg=f"state {t} scores")
        assert float(caffe_out[f"s{t}_loss"]) == pytest.approx(loss, rel=1e-5, abs=1e-5)
        worst = max(worst, float(np.abs(caffe_out[f"s{t}_score"] - scores).max()))
    print(f"{cfg.name}: max |caffe - numpy| = {worst:.2e}")


GRU_MISWIRINGS = {
    # (1 − z)∘h keeps the candidate instead of the previous state
    "gru keeps the candidate": ("gru", ("s2_keep0", "s1_h0", "s2_c0")),
    # the candidate reads h itself instead of r∘h: the reset gate is bypassed
    "gru reset gate bypassed": ("gru", ("s1_uc1", "s1_rh1", "s0_h1")),
    # z∘ĥ is gated by r instead of z
    "gru update gate swapped": ("gru", ("s2_new1", "s2_gz1", "s2_gr1")),
    # the history state's layer 1 gates the wrong layer's candidate
    "gru history gate on the wrong layer": ("gru", ("hist_new1", "hist_c1", "hist_c0")),
    # without history, state 0's z∘ĥ (h = 0) takes the gate as its candidate
    "gru state 0 candidate replaced": ("gru_options", ("s0_new0", "s0_c0", "s0_gz0")),
}


@pytest.mark.parametrize("miswiring", sorted(GRU_MISWIRINGS))
def test_numpy_check_catches_a_miswired_gru(miswiring: str, trained_gru: Callable[[str], GRUTrained],
                                            install: CaffeInstall) -> None:
    """The GRU check can fail: the trained weights in a net with one gate input miswired disagree."""
    variant, change = GRU_MISWIRINGS[miswiring]
    cfg, folder, model, classes = trained_gru(variant)
    broken = folder / f"broken-{miswiring.replace(' ', '-')}.prototxt"
    broken.write_text(rewire((folder / NET).read_text(), *change))
    inputs, caffe_out = caffe_forward(folder, broken, model, cfg, install)
    assert gru_worst(cfg, caffe_out, inputs, classes) > 1e-3


# --- 5: the sparse layout computes what the dense one does -----------------------------------

SPARSE_VARIANTS = {  # TINY with: the paper's net + FNN; every option; GRU4Rec's cell
    # (no dropout: its masks follow Caffe's RNG, which the two nets' fillers leave apart)
    "paper": {}, "all": {**OPTIONS["all"], "dropout": 0.0, "neighbours": True}, "gru": GRU_VARIANTS["gru"],
}


@pytest.fixture(scope="module")
def both_layouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One synthetic log (with users: the FNN's input) prepared dense and sparse, K and U
    large enough to keep every page and item of every row."""
    from drnngen.data.prepare import PrepareOptions, prepare
    from drnngen.data.sessions import BuildOptions
    from drnngen.data.windows import DENSE, SampleLayout
    from tests.data_support import quiet, synth_log, yoochoose_spec

    root = tmp_path_factory.mktemp("layouts")
    spec = yoochoose_spec(synth_log(root / "log", sessions=600, seed=7, items=40, categories=4))
    build = BuildOptions(max_pages=30, max_items=7)
    folders = []
    for name, layout in (("dense", DENSE), ("sparse", SampleLayout(31, 7))):
        prepare(spec, PrepareOptions(build=build, window=3, layout=layout), root / name, quiet)
        folders.append(root / name)
    return folders[0], folders[1]


def dense_view(cfg: DRNNConfig, x: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sparse inputs as the dense rows they stand for: V̄ from the (id, weight) pairs, the
    multi-hot from the class ids (N pads)."""
    dense = dict(x)
    if "history_ids" in x:
        ids, weights = x["history_ids"][:, 0].astype(int), x["history_weights"][:, 0]
        history = np.zeros((len(ids), cfg.data.pages + 1))
        np.add.at(history, (np.arange(len(ids))[:, None].repeat(ids.shape[1], 1), ids), weights)
        dense["history"] = history
    if cfg.data.user_items_k and "user_items" in x:
        ids = x["user_items"][:, 0].astype(int)
        hot = np.zeros((len(ids), cfg.data.items + 1))
        hot[np.arange(len(ids))[:, None].repeat(ids.shape[1], 1), ids] = 1.0
        dense["user_items"] = hot[:, :-1]
    return dense


def sparse_weights(dense: Mapping[str, np.ndarray], sparse_net: str, target: Path) -> Path:
    """A weights file (Caffe's HDF5 layout) giving every parameter of the sparse net the
    dense net's value of the same shared name; fnn0, an InnerProduct weight [E_f, N]
    there, is the Embed table [N+1, E_f] here, its row N (the padding's) set to 0.7: the
    net's mask must cancel it."""
    with h5py.File(target, "w") as out:
        for name, slots in declared_params(sparse_net).items():
            value = dense[name]
            if name == "fnn0":
                value = np.vstack([value.T, np.full((1, value.shape[0]), 0.7)])
            for slot in slots:
                layer, index = slot.split("/")
                out.require_group(f"data/{layer}").create_dataset(index, data=value.astype(np.float32))
    return target


@pytest.mark.parametrize("variant", sorted(SPARSE_VARIANTS))
def test_sparse_forward_equals_dense(variant: str, both_layouts: tuple[Path, Path], tmp_path: Path,
                                     install: CaffeInstall) -> None:
    from drnngen.bind import bind_dataset, repeat_weights

    model = {**cast(dict[str, Any], TINY["model"]), **SPARSE_VARIANTS[variant]}
    raw = {**TINY, "name": f"tiny_{variant}", "model": model,
           "data": {**cast(dict[str, Any], TINY["data"]), "shuffle": False}}  # both read the rows in order
    dense_cfg, sparse_cfg = (bind_dataset(parse_config(raw), folder) for folder in both_layouts)
    assert (dense_cfg.data.history_k, sparse_cfg.data.history_k, sparse_cfg.data.user_items_k) == (0, 31, 7)
    w = dense_cfg.model.states
    dense_dir, sparse_dir = tmp_path / "dense", tmp_path / "sparse"
    write(generate(dense_cfg), dense_dir)
    write(generate(sparse_cfg), sparse_dir)
    fixed = repeat_weights(dense_cfg)
    trained = train(TrainJob(workdir=dense_dir, iterations=5, loss_blob=f"s{w - 1}_loss", init_weights=fixed,
                             snapshot=Path("dense.caffemodel")), install)
    assert trained.ok and trained.caffemodel is not None, trained.error
    _, dense_out = caffe_forward(dense_dir, dense_dir / NET, trained.caffemodel, dense_cfg, install)
    weights = sparse_weights(dense_out, (sparse_dir / NET).read_text(), tmp_path / "sparse.caffemodel.h5")
    inputs, sparse_out = caffe_forward(sparse_dir, sparse_dir / NET, weights, sparse_cfg, install)
    as_dense = dense_view(sparse_cfg, inputs)
    # the same rows, and rows that exercise both inputs (so the comparison can fail)
    np.testing.assert_allclose(as_dense["history"], dense_out["history"], atol=1e-6)
    np.testing.assert_array_equal(as_dense["user_items"], dense_out["user_items"])
    assert (dense_out["history"] > 0).any(axis=1).mean() > 0.2 and dense_out["user_items"].any()
    worst = 0.0
    for t in range(w):
        np.testing.assert_allclose(sparse_out[f"s{t}_score"], dense_out[f"s{t}_score"], rtol=1e-5, atol=1e-5,
                                   err_msg=f"state {t} scores")
        worst = max(worst, float(np.abs(sparse_out[f"s{t}_score"] - dense_out[f"s{t}_score"]).max()))
    if variant != "gru":  # and both are MODEL.md's equations (the GRU's own check is section 18's)
        classes, q = None, None
        if fixed is not None:
            classes = np.array([-1 if not row.any() else int(row.argmax()) for row in dense_out["repeat_map"]])
        if dense_cfg.model.neighbours:  # Q as bind made it from the train split, not a random table
            from drnngen.bind import neighbour_map
            from drnngen.data.manifest import load_manifest

            q = dense_out["nbr_map"]
            assert classes is not None and q.any(), "the train split gave no co-occurrence"
            np.testing.assert_allclose(q, neighbour_map(load_manifest(both_layouts[0]), list(classes)), atol=1e-7)
        params = {**sparse_out, "fnn0": sparse_out["fnn0"][:-1].T}  # the Embed table as F_0 [E_f, N]
        for t, (scores, _) in enumerate(numpy_of(sparse_cfg, params, as_dense, classes, q)):
            np.testing.assert_allclose(sparse_out[f"s{t}_score"], scores, rtol=1e-5, atol=1e-5)
    # the gradients agree too: 3 more steps of each from the same weights end at the same weights
    steps = {}
    for name, folder, start in (("dense", dense_dir, trained.caffemodel), ("sparse", sparse_dir, weights)):
        more = train(TrainJob(workdir=folder, iterations=3, loss_blob=f"s{w - 1}_loss", init_weights=start,
                              snapshot=Path(f"{name}-more.caffemodel")), install)
        assert more.ok and more.caffemodel is not None, more.error
        cfg = dense_cfg if name == "dense" else sparse_cfg
        steps[name] = caffe_forward(folder, folder / NET, more.caffemodel, cfg, install)[1]
    moved = steps["dense"]["emb"] - dense_out["emb"]
    assert np.abs(moved).max() > 1e-4, "the 3 steps did not move emb"
    for name in declared_params((dense_dir / NET).read_text()):
        after = steps["sparse"][name][:-1].T if name == "fnn0" else steps["sparse"][name]
        np.testing.assert_allclose(after, steps["dense"][name], rtol=1e-4, atol=1e-5, err_msg=name)
    print(f"{variant}: max |sparse - dense| = {worst:.2e}")
