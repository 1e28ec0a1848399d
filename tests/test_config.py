"""Invalid configs: one line naming the key, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen.config import DRNNConfig, activations, parse_config, to_mapping, widths
from drnngen.errors import UserError

CASES = {
    "h_not_below_l": ("model:\n  layers: 2\n  shortcut: 2\n", "model.shortcut"),
    "w_below_one": ("model:\n  states: 0\n", "model.states"),
    "unknown_activation": ("model:\n  activations: Swish\n", "model.activations"),
    "widths_wrong_length": ("model:\n  layers: 3\n  widths: [10, 20]\n", "model.widths"),
    "wrong_type": ("model:\n  states: four\n", "model.states"),
    "bool_is_not_int": ("model:\n  layers: true\n", "model.layers"),
    "unknown_key": ("model:\n  stats: 4\n", "model.stats"),
    "unknown_section": ("modle: {}\n", "modle"),
    "section_not_mapping": ("model: [1, 2]\n", "model"),
    "negative_width": ("model:\n  widths: -5\n", "model.widths"),
    "zero_lr": ("solver:\n  base_lr: 0\n", "solver.base_lr"),
    "bad_solver_mode": ("solver:\n  solver_mode: TPU\n", "solver.solver_mode"),
    "fnn_bad_activation": ("model:\n  fnn:\n    activations: Foo\n", "model.fnn.activations"),
    "top_k_above_items": ("model:\n  top_k: 50\ndata:\n  items: 10\n", "model.top_k"),
    "malformed_yaml": ("model:\n  states: [1, 2\n", "malformed YAML"),
    "not_a_mapping": ("- 1\n- 2\n", "config: expected a mapping"),
    "dropout_one": ("model:\n  dropout: 1\n", "model.dropout: must be < 1"),
    "dropout_negative": ("model:\n  dropout: [0.1, -0.2, 0]\n", "model.dropout: must be >= 0"),
    "dropout_wrong_length": ("model:\n  layers: 3\n  dropout: [0.1, 0.2]\n", "model.dropout"),
    "repeat_not_bool": ("model:\n  repeat: 1\n", "model.repeat"),
    "unknown_cell": ("model:\n  cell: lstm\n", "model.cell: unknown cell 'lstm' (one of: drnn, gru)"),
    "tied_widths_differ": ("model:\n  layers: 2\n  widths: [16, 8]\n  tied: true\n",
                           "model.tied: needs widths[l-1] == widths[0]"),
    "solver_net_absolute": ("solver:\n  net: /etc/passwd\n", "solver.net: must be a .prototxt file name beside"),
    "solver_net_up": ("solver:\n  net: ../net.prototxt\n", "solver.net: must be a .prototxt file name beside"),
    "repeat_map_too_big": ("model:\n  repeat: true\ndata:\n  pages: 200000\n  items: 1000\n",
                           "model.repeat: the fixed page→item map R is (M+1)×N = 200001×1000"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_config_is_one_line_exit_2(case: str, tmp_path: Path) -> None:
    text, key = CASES[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    result = CliRunner().invoke(cli, ["build", str(config), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and key in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'nope.yaml'}: no such config file"


def test_several_errors_reported_together() -> None:
    with pytest.raises(UserError) as info:
        parse_config({"model": {"states": 0, "layers": "x"}})
    assert "model.states" in str(info.value) and "model.layers" in str(info.value)


def test_defaults_are_table_one() -> None:
    cfg = parse_config({})
    assert (cfg.model.states, cfg.model.layers, cfg.model.history) == (4, 3, True)
    assert cfg.solver.base_lr == 0.1 and cfg.solver.gamma == 0.2 and cfg.data.batch_size == 9000
    assert activations(cfg) == ("ReLU", "ReLU", "ReLU")


def test_one_value_expands_per_layer_and_aliases_resolve() -> None:
    cfg = parse_config({"model": {"layers": 2, "shortcut": 1, "widths": 64, "activations": ["relu", "tanh"]}})
    assert widths(cfg) == (64, 64)
    assert activations(cfg) == ("ReLU", "TanH")


def test_mapping_round_trip() -> None:
    cfg = parse_config({"model": {"layers": 2, "shortcut": 0, "fnn": {"layers": 1}}})
    again = parse_config(to_mapping(cfg))
    assert again == cfg and isinstance(again, DRNNConfig)
    gru = parse_config({"model": {"cell": "gru"}})
    assert to_mapping(gru)["model"]["cell"] == "gru" and parse_config(to_mapping(gru)) == gru
