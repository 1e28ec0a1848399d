"""Property test: random valid configs give sound, deterministic nets (Algorithm 1)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drnngen.codegen import schema
from drnngen.codegen.build import DEPLOY, NET, generate
from drnngen.codegen.config import ACTIVATIONS, DRNNConfig, dropouts, parse_config
from drnngen.codegen.graph import REPEAT_MAP, fixed_map_layers


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
    model["tied"] = draw(st.booleans())
    if model["tied"]:  # the top layer must be as wide as the embedding
        model["widths"] = draw(st.lists(st.integers(1, 64), min_size=layers, max_size=layers))
        model["widths"][-1] = model["widths"][0]
    data = {"pages": draw(st.integers(1, 500)), "items": draw(st.integers(3, 50))}
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
    assert len(history) == (n_layers + cfg.model.repeat if cfg.model.history else 0)  # + hist_repmap
    assert not any(x.startswith("hist") for loss in losses for x in loss.bottom)
    deploy = _layers(files[DEPLOY])
    assert deploy[-1].type == "Softmax" and not any(x.type == "SoftmaxWithLoss" for x in deploy)
    _check_options(cfg, layers)
    _check_options(cfg, deploy, deploy=True)


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
        assert readers.count(f"{prefix}_h{i}") == 2  # the in-place activation and the Dropout
    scales = [x for x in layers if x.type == "Scale"]
    if not cfg.model.repeat:
        assert not scales and not any(x.name.endswith("_repmap") for x in layers)
    else:
        expected = {f"s{t}_rep{tau}": f"rep_b{t - tau}" for t in states for tau in range(t + 1)}
        expected.update({f"s{t}_repH": "rep_bH" for t in states if history})
        assert {x.name: x.param[0].name for x in scales} == expected
        for t in states:
            assert set(expected).intersection(by_name[f"s{t}_score"].bottom) == {
                n for n in expected if n.startswith(f"s{t}_")}
    holders = [x for x in layers if any(p.name == REPEAT_MAP for p in x.param)]
    assert bool(holders) == (cfg.model.repeat or cfg.model.tied)
    for x in holders:  # R is fixed: never learned, never decayed
        param = next(p for p in x.param if p.name == REPEAT_MAP)
        assert (param.lr_mult, param.decay_mult) == (0, 0)
    if holders:
        assert holders[0].name in {layer.name for layer in fixed_map_layers(cfg)}
    tied = [x for x in layers if x.name.endswith("_tied")]
    assert [x.name for x in tied] == ([f"s{t}_tied" for t in states] if cfg.model.tied else [])
    for x in tied:
        assert x.param[0].name == "emb" and x.inner_product_param.num_output == cfg.data.pages + 1
