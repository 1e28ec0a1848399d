"""Property test: random valid configs give sound, deterministic nets (Algorithm 1)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drnngen.codegen import schema
from drnngen.codegen.build import DEPLOY, NET, generate
from drnngen.codegen.config import ACTIVATIONS, DRNNConfig, parse_config


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
    assert len(history) == (n_layers if cfg.model.history else 0)
    assert not any(x.startswith("hist") for loss in losses for x in loss.bottom)
    deploy = _layers(files[DEPLOY])
    assert deploy[-1].type == "Softmax" and not any(x.type == "SoftmaxWithLoss" for x in deploy)
