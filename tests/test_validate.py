"""The structural checks catch what Caffe's Net::Init would abort on."""

from __future__ import annotations

import pytest

from drnngen.codegen.build import NET, generate
from drnngen.codegen.config import parse_config
from drnngen.codegen.graph import input_shapes
from drnngen.codegen.validate import check_net, check_solver
from drnngen.errors import UserError

CFG = parse_config({"model": {"states": 2, "layers": 2, "shortcut": 1, "widths": 8},
                    "data": {"pages": 20, "items": 5}})
SHAPES = input_shapes(CFG, 1)


def _net() -> str:
    return generate(CFG)[NET]


def test_generated_net_is_clean() -> None:
    assert check_net(_net(), NET, SHAPES) == []


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('bottom: "s0_h1"\n  top: "s1_w1"', 'bottom: "s9_h1"\n  top: "s1_w1"', "bottom 's9_h1' is not produced"),
    ('top: "s1_out1"', 'top: "s0_score"', "top 's0_score' is already produced"),
    ('name: "s1_loss"', 'name: "s0_loss"', "layer name used twice"),
    ('num_output: 5\n    bias_term: false', 'num_output: 6\n    bias_term: false', "differ in shape"),
    ('name: "W0"\n    lr_mult: 1', 'name: "W0"\n    lr_mult: 3', "lr/decay mult"),
    ('type: "Eltwise"', 'type: "Swish"', "outside the layer subset"),
    ('include {\n    phase: TEST\n  }', 'include {\n    phase: TEST\n  }\n  exclude {\n    phase: TRAIN\n  }',
     "both include and exclude"),
])
def test_broken_net_is_reported(old: str, new: str, problem: str) -> None:
    text = _net()
    assert old in text
    errors = check_net(text.replace(old, new, 1), NET, SHAPES)
    assert any(problem in e for e in errors), errors


def test_shared_param_shape_mismatch_names_both_layers() -> None:
    text = _net().replace('name: "zdwell"', 'name: "emb"', 1)  # dwell weights [8, 1] vs emb [21, 8]
    errors = check_net(text, NET, SHAPES)
    assert any("'s0_dwell': shared param 'emb' has shape [8, 1], but [21, 8] in layer 'hist_emb'" in e
               for e in errors), errors


def test_schema_rejects_unknown_field() -> None:
    with pytest.raises(UserError, match=r"not a valid caffe\.NetParameter"):
        check_net(_net().replace("bias_term: false", "bias_terms: false", 1), NET, SHAPES)


def test_solver_needs_net() -> None:
    assert check_solver('base_lr: 0.1\n', "solver.prototxt") == ["solver.prototxt: no `net` given"]


def test_scale_params_are_shape_checked() -> None:
    """The repeat path's scalars (Scale, num_axes 0) are shared like any weight."""
    cfg = parse_config({"model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 4, "repeat": True,
                                  "dropout": 0.5}, "data": {"pages": 20, "items": 5}})
    text = generate(cfg)[NET]
    shapes = input_shapes(cfg, 1)
    assert check_net(text, NET, shapes) == []
    errors = check_net(text.replace("num_axes: 0", "num_axes: 1", 1), NET, shapes)
    assert any("'s1_rep1': shared param 'rep_b0' has shape [], but [9000] in layer 's0_rep0'" in e
               for e in errors), errors
    errors = check_net(text.replace("num_axes: 0", "num_axes: 3", 1), NET, shapes)
    assert any("num_axes 3" in e for e in errors), errors
