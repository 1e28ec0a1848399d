"""Property test: random valid configs give sound, deterministic nets (Algorithm 1)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drnngen.codegen import schema
from drnngen.codegen.build import DEPLOY, NET, generate
from drnngen.codegen.config import ACTIVATIONS, DRNNConfig, activations, dropouts, parse_config
from drnngen.codegen.graph import NEIGHBOUR_MAP, REPEAT_MAP, fixed_map_layers


@st.composite
def configs(draw: st.DrawFn) -> DRNNConfig:
    layers = draw(st.integers(1, 5))
    acts = st.sampled_from(sorted(ACTIVATIONS.values()))
    model: dict[str, Any] = {
        "states": draw(st.integers(1, 6)),
        "layers": layers,
        "shortcut": draw(st.integers(0, layers - 1)),
        "widths": draw(st.one_of(st.integers(1, 64), st.lists(st.integers(1, 64), min_size=layers, max_size=layers))),
        "activations": draw(st.one_of(acts, st.lists(acts, min_size=layers, max_size=layers))),
        "history": draw(st.booleans()),
        "top_k": draw(st.integers(1, 3)),
    }
    if draw(st.booleans()):
        model["fnn"] = {"layers": draw(st.integers(1, 3)), "widths": draw(st.integers(1, 32))}
    # the options beyond the paper (issue 11)
    ratio = st.one_of(st.just(0.0), st.floats(0.0, 0.95))
    model["dropout"] = draw(st.one_of(ratio, st.lists(ratio, min_size=layers, max_size=layers)))
    model["repeat"] = draw(st.booleans())
    model["repeat_init"] = draw(st.floats(-2.0, 2.0))
    model["neighbours"] = draw(st.booleans())
    model["neighbours_init"] = draw(st.floats(-2.0, 2.0))
    model["tied"] = draw(st.booleans())
    model["cell"] = draw(st.sampled_from(["drnn", "gru"]))  # the paper's update or GRU4Rec's (section 18)
    if model["tied"]:  # the top layer must be as wide as the embedding
        model["widths"] = draw(st.lists(st.integers(1, 64), min_size=layers, max_size=layers))
        model["widths"][-1] = model["widths"][0]
    data = {"pages": draw(st.integers(1, 500)), "items": draw(st.integers(3, 50))}
    if draw(st.booleans()):  # the sparse sample layout (MODEL.md sections 4.1, 6.1)
        data.update(history_k=draw(st.integers(1, 40)), user_items_k=draw(st.integers(1, 40)))
    return parse_config({"model": model, "data": data})


def _layers(text: str) -> list[Any]:
    return list(schema.parse(text, "NetParameter", "net").layer)


@settings(max_examples=200, deadline=None)
@given(configs())
def test_random_config_is_sound_and_deterministic(cfg: DRNNConfig) -> None:
    files = generate(cfg)  # raises if schema or structural checks fail
    assert generate(cfg) == files
    layers = _layers(files[NET])
    w, n_layers, h = cfg.model.states, cfg.model.layers, cfg.model.shortcut
    losses = [x for x in layers if x.type == "SoftmaxWithLoss"]
    assert [x.name for x in losses] == [f"s{t}_loss" for t in range(w)]
    shortcuts = [x for x in layers if x.type == "InnerProduct" and x.name.split("_")[-1] in
                 {f"out{i}" for i in range(h)}]
    assert len(shortcuts) == w * h
    history = [x for x in layers if x.name.startswith("hist_") and x.type == "InnerProduct"]
    # drnn: hist_emb, hist_z{i}; gru: hist_emb, then W_z x and W_c x per layer (h = 0); + hist_repmap;
    # the sparse route's hist_emb is a Bias and its hist_repmap a Reshape (MODEL.md section 4.1)
    per_cell = 1 + 2 * n_layers if cfg.model.cell == "gru" else n_layers
    dense = 0 if cfg.data.history_k else 1
    maps = int(cfg.model.repeat) + int(cfg.model.neighbours)  # hist_repmap, hist_nbrmap
    assert len(history) == (per_cell - 1 + dense + dense * maps if cfg.model.history else 0)
    assert not any(x.startswith("hist") for loss in losses for x in loss.bottom)
    deploy = _layers(files[DEPLOY])
    assert deploy[-1].type == "Softmax" and not any(x.type == "SoftmaxWithLoss" for x in deploy)
    _check_options(cfg, layers)
    _check_options(cfg, deploy, deploy=True)
    _check_cell(cfg, layers)


def _check_options(cfg: DRNNConfig, layers: list[Any], deploy: bool = False) -> None:
    """Dropout, repeat path and tied embeddings as MODEL.md section 17 names them."""
    w, history = cfg.model.states, cfg.model.history
    states = [w - 1] if deploy else list(range(w))  # deploy keeps the last state's scores only
    by_name = {x.name: x for x in layers}
    readers = [b for x in layers for b in x.bottom]
    dropped = [i for i, p in enumerate(dropouts(cfg)) if p > 0]
    drops = [x for x in layers if x.type == "Dropout"]
    prefixes = [*(f"s{t}" for t in range(w)), *(["hist"] if history else [])]
    assert sorted(x.name for x in drops) == sorted(f"{s}_drop{i}" for s in prefixes for i in dropped)
    for x in drops:  # out of place, after the activation; only they read what they drop
        prefix, i = x.name.rsplit("_drop", 1)
        assert list(x.bottom) == [f"{prefix}_h{i}"] and list(x.top) == [x.name]
        assert abs(x.dropout_param.dropout_ratio - dropouts(cfg)[int(i)]) < 1e-6
        # the DRNN: the in-place activation and the Dropout; the GRU's h' is a plain sum
        assert readers.count(f"{prefix}_h{i}") == (1 if cfg.model.cell == "gru" else 2)
    scales = [x for x in layers if x.type == "Scale" and len(x.bottom) == 1]  # two: the sparse weighting
    for kind, on in (("rep", cfg.model.repeat), ("nbr", cfg.model.neighbours)):  # sections 17.2, 17.5
        mine = [x for x in scales if x.name.split("_")[-1].startswith(kind)]
        if not on:
            assert not mine and not any(x.name.endswith(f"_{kind}map") for x in layers)
            continue
        expected = {f"s{t}_{kind}{tau}": f"{kind}_b{t - tau}" for t in states for tau in range(t + 1)}
        expected.update({f"s{t}_{kind}H": f"{kind}_bH" for t in states if history})
        assert {x.name: x.param[0].name for x in mine} == expected
        for t in states:
            assert set(expected).intersection(by_name[f"s{t}_score"].bottom) == {
                n for n in expected if n.startswith(f"s{t}_")}
    assert len(scales) == sum(x.name.split("_")[-1].startswith(("rep", "nbr")) for x in scales)
    owners = {layer.name for layer in fixed_map_layers(cfg)}
    for table, on in ((REPEAT_MAP, cfg.model.repeat or cfg.model.tied), (NEIGHBOUR_MAP, cfg.model.neighbours)):
        holders = [x for x in layers if any(p.name == table for p in x.param)]
        assert bool(holders) == on
        for x in holders:  # R and Q are fixed: never learned, never decayed
            param = next(p for p in x.param if p.name == table)
            assert (param.lr_mult, param.decay_mult) == (0, 0)
        if holders:
            assert holders[0].name in owners
    tied = [x for x in layers if x.name.endswith("_tied")]
    assert [x.name for x in tied] == ([f"s{t}_tied" for t in states] if cfg.model.tied else [])
    for x in tied:
        assert x.param[0].name == "emb" and x.inner_product_param.num_output == cfg.data.pages + 1


def _check_cell(cfg: DRNNConfig, layers: list[Any]) -> None:
    """The hidden layers' update as MODEL.md names it: section 3 (drnn) or 18 (gru)."""
    m = cfg.model
    by_name = {x.name: x for x in layers}
    params = {p.name for x in layers for p in x.param}
    if m.cell == "drnn":
        # Power is the GRU's 1 − z here; the sparse route's (hist_wk, fnn_mask) scale its weights
        assert not any((x.type == "Power" and x.name not in ("hist_wk", "fnn_mask")) or "_gz" in x.name
                       for x in layers)
        return
    assert not params.intersection({f"W{i}" for i in range(m.layers)} | {f"Z{i}" for i in range(m.layers)})

    def output(prefix: str, i: int) -> str:
        return f"{prefix}_drop{i}" if dropouts(cfg)[i] > 0 else f"{prefix}_h{i}"

    chains = [(f"s{t}", (f"s{t - 1}" if t else "hist" if m.history else None)) for t in range(m.states)]
    for prefix, before in chains + ([("hist", None)] if m.history else []):
        for i in range(m.layers):
            h = None if before is None else output(before, i)
            x = f"{prefix}_x0" if i == 0 else output(prefix, i - 1)
            p = f"{prefix}_"

            def check(name: str, kind: str, bottoms: list[str], weights: list[str] | None = None) -> None:
                layer = by_name[name]
                assert layer.type == kind and list(layer.bottom) == bottoms, (name, layer)
                if weights is not None:
                    assert [q.name for q in layer.param] == weights, name

            if prefix == "hist" and i == 0 and cfg.data.history_k:  # Σ_k ε̂_k emb[p_k] + b_0
                check("hist_pages", "Embed", ["history_ids"], ["emb"])
                check("hist_emb", "Bias", ["hist_pages_flat"], ["b0"])
            elif prefix == "hist" and i == 0:
                check("hist_emb", "InnerProduct", ["history"], ["emb", "b0"])
            gz, c = f"{p}gz{i}", f"{p}c{i}"
            assert [q.name for q in by_name[f"{p}xz{i}"].param] == [f"Wz{i}", f"bz{i}"]
            assert list(by_name[f"{p}xz{i}"].bottom) == [x] and list(by_name[f"{p}xc{i}"].bottom) == [x]
            assert [q.name for q in by_name[f"{p}xc{i}"].param] == [f"Wc{i}", f"bc{i}"]
            check(f"{gz}_act", "Sigmoid", [gz])
            check(f"{c}_act", activations(cfg)[i], [c])
            if h is None:  # U·0 vanishes and h' = z∘ĥ: no r gate, no 1 − z, no zero blob
                assert not any(n.startswith((f"{p}u", f"{p}gr{i}", f"{p}rh{i}", f"{p}nz{i}", f"{p}keep{i}"))
                               and n.endswith(str(i)) for n in by_name)
                assert list(by_name[f"{p}xz{i}"].top) == [gz] and list(by_name[f"{p}xc{i}"].top) == [c]
                check(f"{p}new{i}", "Eltwise", [gz, c])
                assert list(by_name[f"{p}new{i}"].top) == [f"{p}h{i}"]
                continue
            gr = f"{p}gr{i}"
            check(f"{p}uz{i}", "InnerProduct", [h], [f"Uz{i}"])
            check(gz, "Eltwise", [f"{p}xz{i}", f"{p}uz{i}"])
            check(f"{p}xr{i}", "InnerProduct", [x], [f"Wr{i}", f"br{i}"])
            check(f"{p}ur{i}", "InnerProduct", [h], [f"Ur{i}"])
            check(gr, "Eltwise", [f"{p}xr{i}", f"{p}ur{i}"])
            check(f"{gr}_act", "Sigmoid", [gr])
            check(f"{p}rh{i}", "Eltwise", [gr, h])
            check(f"{p}uc{i}", "InnerProduct", [f"{p}rh{i}"], [f"Uc{i}"])
            check(c, "Eltwise", [f"{p}xc{i}", f"{p}uc{i}"])
            check(f"{p}nz{i}", "Power", [gz])
            power = by_name[f"{p}nz{i}"].power_param
            assert (power.power, power.scale, power.shift) == (1, -1, 1)
            check(f"{p}keep{i}", "Eltwise", [f"{p}nz{i}", h])
            check(f"{p}new{i}", "Eltwise", [gz, c])
            check(f"{p}h{i}", "Eltwise", [f"{p}keep{i}", f"{p}new{i}"])
            operations = [by_name[n].eltwise_param.operation for n in (f"{p}rh{i}", f"{p}keep{i}", f"{p}new{i}",
                                                                       f"{p}h{i}", gz, gr, c)]
            assert operations == [0, 0, 0, 1, 1, 1, 1]  # PROD ×3, then SUM
