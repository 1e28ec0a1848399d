"""GRU4Rec's cell beside the paper's (`model.cell: gru`, docs/MODEL.md section 18):
the config key, the layer and parameter names, the h = 0 simplification, how the
options compose with it, the `cell` gene, and — in Caffe — `drnngen build` on
the issue's config and a tiny real `drnngen tune` whose GRU candidates train.

The NumPy equations, the miswirings and the shared-memory check of the GRU are in
tests/test_caffe_codegen.py; random configs of both cells in
tests/test_codegen_property.py.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from drnngen.cli import cli
from drnngen.codegen import schema
from drnngen.codegen.build import DEPLOY, NET, SOLVER, generate
from drnngen.codegen.config import CELLS, DRNNConfig, load_config, parse_config
from drnngen.codegen.graph import build_deploy_graph, build_graph
from drnngen.codegen.validate import layer_types
from drnngen.errors import UserError
from drnngen.evaluation.run_folder import genes_of
from drnngen.runner import NetLoad, load_check_many, locate_caffe
from drnngen.tuner.codec import decode, describe, encode, random_genes, to_list, violations
from drnngen.tuner.ledger import Ledger
from drnngen.tuner.operators import cxLayers, mutGenes
from drnngen.tuner.space import IntRange, SearchSpace, parse_space, space_mapping
from tests.data_support import TUNER_DATA
from tests.golden_tool import EXAMPLES

DATASET = TUNER_DATA
# The issue's acceptance config (small batches: the structure is what is checked).
ISSUE = {"model": {"cell": "gru", "states": 3, "layers": 2, "shortcut": 1, "history": True},
         "data": {"batch_size": 16, "test_batch_size": 16}}


def config(**model: object) -> DRNNConfig:
    base: dict[str, object] = {"cell": "gru", "states": 2, "layers": 2, "shortcut": 1, "widths": 4}
    return parse_config({"model": {**base, **model}, "data": {"pages": 9, "items": 5}})


def layers_of(cfg: DRNNConfig) -> dict[str, Any]:
    return {layer.name: layer for layer in build_graph(cfg).layers}


def params_of(cfg: DRNNConfig) -> set[str]:
    return {p.name for layer in build_graph(cfg).layers for p in layer.params if p.name}


# --- the config key ---------------------------------------------------------------------------


def test_cell_defaults_to_the_papers_and_the_paper_net_is_unchanged() -> None:
    assert parse_config({}).model.cell == "drnn" and CELLS == ("drnn", "gru")
    paper = load_config(EXAMPLES / "paper.yaml")
    raw = yaml.safe_load((EXAMPLES / "paper.yaml").read_text())
    raw["model"]["cell"] = "drnn"
    assert generate(parse_config(raw)) == generate(paper)
    assert "cell=" not in generate(paper)[NET]


def test_an_unknown_cell_is_one_line_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^model\.cell: unknown cell 'lstm' \(one of: drnn, gru\)$"):
        parse_config({"model": {"cell": "lstm"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  cell: GRU4Rec\n")
    result = CliRunner().invoke(cli, ["build", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "model.cell" in result.output


def test_the_net_comment_names_the_cell() -> None:
    line = generate(config(dropout=0.2))[NET].splitlines()[2]
    assert line.endswith("M=9 N=5 cell=gru dropout=[0.2, 0.2]")


# --- layers and parameters (MODEL.md section 18) -----------------------------------------------


def test_gru_layers_and_shared_params() -> None:
    layers = layers_of(config())
    # state 1, layer 0: x_0 = emb + dwell term; h = s0_h0
    assert layers["s1_x0"].type == "Eltwise" and layers["s1_x0"].bottoms == ("s1_emb", "s1_dwell")
    assert [p.name for p in layers["s1_xz0"].params] == ["Wz0", "bz0"] and layers["s1_xz0"].bottoms == ("s1_x0",)
    assert [p.name for p in layers["s1_uz0"].params] == ["Uz0"] and layers["s1_uz0"].bottoms == ("s0_h0",)
    assert layers["s1_gz0"].bottoms == ("s1_xz0", "s1_uz0") and layers["s1_gz0_act"].type == "Sigmoid"
    assert layers["s1_gr0"].bottoms == ("s1_xr0", "s1_ur0") and layers["s1_gr0_act"].type == "Sigmoid"
    assert layers["s1_rh0"].bottoms == ("s1_gr0", "s0_h0")
    assert layers["s1_rh0"].settings == {"eltwise_param": {"operation": "PROD"}}
    assert layers["s1_uc0"].bottoms == ("s1_rh0",) and [p.name for p in layers["s1_uc0"].params] == ["Uc0"]
    assert layers["s1_c0"].bottoms == ("s1_xc0", "s1_uc0") and layers["s1_c0_act"].type == "ReLU"  # a_0
    assert layers["s1_nz0"].type == "Power" and layers["s1_nz0"].bottoms == ("s1_gz0",)
    assert layers["s1_nz0"].settings == {"power_param": {"power": 1.0, "scale": -1.0, "shift": 1.0}}
    assert layers["s1_keep0"].bottoms == ("s1_nz0", "s0_h0") and layers["s1_new0"].bottoms == ("s1_gz0", "s1_c0")
    assert layers["s1_h0"].bottoms == ("s1_keep0", "s1_new0")
    assert layers["s1_h0"].settings == {"eltwise_param": {"operation": "SUM"}}
    # layer 1 reads layer 0's output as its x
    assert layers["s1_xz1"].bottoms == ("s1_h0",) and layers["s1_xc1"].bottoms == ("s1_h0",)
    gates = {f"{kind}{g}{i}" for kind in "WU" for g in "zrc" for i in (0, 1)} | {f"b{g}{i}" for g in "zrc"
                                                                                 for i in (0, 1)}
    assert params_of(config()) == gates | {"emb", "zdwell", "b0", "out0", "out1", "out_b"}
    # biases: on the W (input) terms, as the DRNN's are on Z; U terms have none
    assert layers["s1_xr1"].params[1].lr_mult == 2.0 and len(layers["s1_ur1"].params) == 1


def test_state_zero_from_the_history_state_and_the_history_chain() -> None:
    layers = layers_of(config())
    assert layers["s0_uz0"].bottoms == ("hist_h0",) and layers["s0_keep1"].bottoms == ("s0_nz1", "hist_h1")
    # the history state: x_0 = embᵀ V̄ + b_0 through `hist_emb`, h = 0
    assert layers["hist_emb"].tops == ("hist_x0",) and [p.name for p in layers["hist_emb"].params] == ["emb", "b0"]
    assert layers["hist_xz0"].tops == ("hist_gz0",) and layers["hist_xc0"].tops == ("hist_c0",)
    assert layers["hist_new1"].bottoms == ("hist_gz1", "hist_c1") and layers["hist_new1"].tops == ("hist_h1",)
    assert not any(n.startswith(("hist_u", "hist_gr", "hist_rh", "hist_nz", "hist_keep")) for n in layers)


def test_without_history_state_zero_is_z_times_candidate_and_no_zero_blob() -> None:
    layers = layers_of(config(history=False))
    state0 = [n for n in layers if n.startswith("s0_")]
    assert not [n for n in state0 if n.startswith(("s0_u", "s0_gr", "s0_xr", "s0_rh", "s0_nz", "s0_keep"))]
    assert layers["s0_xz0"].tops == ("s0_gz0",) and layers["s0_xc0"].tops == ("s0_c0",)
    assert layers["s0_new0"].bottoms == ("s0_gz0", "s0_c0") and layers["s0_new0"].tops == ("s0_h0",)
    blobs = {top for layer in layers.values() for top in layer.tops}
    assert not any("zero" in b for b in blobs)
    assert all(b in blobs for layer in layers.values() for b in layer.bottoms)  # nothing read is missing
    assert layers["s1_uz0"].bottoms == ("s0_h0",)  # state 1 has its full update
    # one state without history: no recurrent weight at all
    assert not {p for p in params_of(config(states=1, history=False)) if p[0] == "U" or p.startswith(("Wr", "br"))}


def test_options_compose_with_the_gru() -> None:
    layers = layers_of(config(dropout=[0.5, 0], repeat=True, tied=True))
    # ã_0 is read wherever a_0 is: layer 1's x, the next state's h (all four uses), the shortcut
    assert layers["s0_drop0"].bottoms == ("s0_h0",) and layers["hist_drop0"].bottoms == ("hist_h0",)
    assert layers["s0_xz1"].bottoms == ("s0_drop0",) and layers["s0_uz0"].bottoms == ("hist_drop0",)
    assert layers["s1_ur0"].bottoms == ("s0_drop0",) and layers["s1_rh0"].bottoms == ("s1_gr0", "s0_drop0")
    assert layers["s1_keep0"].bottoms == ("s1_nz0", "s0_drop0") and layers["s1_out0"].bottoms == ("s1_drop0",)
    assert layers["s1_tied"].bottoms == ("s1_h1",) and "s1_rep1" in layers["s1_score"].bottoms
    deploy = {layer.name for layer in build_deploy_graph(config(dropout=0.2, repeat=True)).layers}
    # the earlier state's hidden layers stay (the next state's gates read them), its scores go
    assert {"hist_new1", "s0_h1", "s0_drop1", "s1_uz1", "s1_h1", "prob"} <= deploy and "s0_score" not in deploy
    files = generate(config(dropout=0.3, repeat=True, tied=True, fnn={"layers": 1, "widths": 3}))
    assert "cell=gru dropout=[0.3, 0.3] repeat=on tied=on" in files[NET].splitlines()[2]


def test_power_is_a_layer_drnngen_checks() -> None:
    assert "Power" in layer_types()  # drnngen doctor checks it is registered


# --- the gene ----------------------------------------------------------------------------------


CELL_SPACE = SearchSpace(IntRange(2, 3), IntRange(1, 3), IntRange(0, 2), ("ReLU", "TanH"), (8, 16),
                         dropout=(0.0, 0.2), cell=("drnn", "gru"))


def test_space_takes_the_cell_gene_and_refuses_unknown_cells() -> None:
    space = parse_space({"cell": ["drnn", "gru"]})
    assert space.cell == ("drnn", "gru") and parse_space(space_mapping(space)) == space
    assert "cell" not in [g.name for g in SearchSpace().optional_genes()]
    with pytest.raises(UserError, match="cell: unknown cell 'lstm'"):
        parse_space({"cell": ["lstm"]})


def test_the_cell_gene_decodes_encodes_and_shows() -> None:
    base = load_config(EXAMPLES / "small.yaml")
    chromosome = [3, 2, 1, "TanH", "ReLU", 8, 16, 0.2, "gru"]
    assert violations(chromosome, CELL_SPACE) == []
    cfg = decode(chromosome, base, CELL_SPACE)
    assert cfg.model.cell == "gru" and cfg.model.dropout == (0.2,)
    assert encode(cfg, CELL_SPACE) == chromosome
    assert describe(chromosome, CELL_SPACE) == "w=3 l=2 h=1 a=TanH,ReLU E=8,16 dropout=0.2 cell=gru"
    assert genes_of(chromosome, CELL_SPACE)["cell"] == "gru"
    assert violations([3, 2, 1, "TanH", "ReLU", 8, 16, 0.2, "lstm"], CELL_SPACE) == ["cell 'lstm' not in the space"]
    assert "cell" not in genes_of([3, 1, 0, "ReLU", 50], SearchSpace())


def test_operators_keep_the_cell_gene_legal_and_reach_both_cells() -> None:
    rng = random.Random(2)
    population = [to_list(random_genes(rng, CELL_SPACE), CELL_SPACE) for _ in range(6)]
    seen = set()
    for _ in range(2000):
        if rng.random() < 0.5:
            a, b = rng.sample(population, 2)
            cxLayers(a, b, rng, CELL_SPACE)
            changed = [a, b]
        else:
            changed = list(mutGenes(rng.choice(population), rng, CELL_SPACE))
        for ind in changed:
            assert violations(ind, CELL_SPACE) == []
            seen.add(ind[-1])
    assert seen == {"drnn", "gru"}


def test_a_space_without_the_cell_draws_what_it_drew_before() -> None:
    """_LATER_SCALARS: no draw for a gene the space lacks, so adding the cell gene
    leaves the RNG stream of every earlier space as it was."""
    plain = SearchSpace(IntRange(2, 3), IntRange(1, 3), IntRange(0, 2), ("ReLU", "TanH"), (8, 16), dropout=(0.0, 0.2))
    first, again = random.Random(9), random.Random(9)
    genes = random_genes(first, CELL_SPACE)
    assert to_list(random_genes(again, plain), plain) == to_list(genes, CELL_SPACE)[:-1]  # the cell is drawn last
    # crossover: one draw per scalar gene the space has, then per aligned layer
    a, b = [3, 1, 0, "ReLU", 8, 0.0], [2, 1, 0, "TanH", 16, 0.2]
    counted = _Counting(0)
    cxLayers(a, b, counted, plain)
    assert counted.draws == 5 + 1 + 1  # w, l, h, lr, batch (drawn even when absent) + dropout + layer 0
    counted = _Counting(0)
    cxLayers([*a, "drnn"], [*b, "gru"], counted, CELL_SPACE)
    assert counted.draws == 5 + 2 + 1  # the cell's one draw only where the space has it


class _Counting(random.Random):
    draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()


# --- in Caffe ------------------------------------------------------------------------------------


@pytest.mark.caffe
def test_build_of_the_issue_config_parses_checks_and_loads_in_caffe(dataset: Path, tmp_path: Path) -> None:
    source = tmp_path / "gru.yaml"
    source.write_text(yaml.safe_dump(ISSUE))
    out = tmp_path / "net"
    result = CliRunner().invoke(cli, ["build", str(source), "--data", str(dataset), "-o", str(out)])
    assert result.exit_code == 0, result.output
    for name, kind in ((NET, "NetParameter"), (DEPLOY, "NetParameter"), (SOLVER, "SolverParameter")):
        schema.parse((out / name).read_text(), kind, name)  # Caffe's own schema
    summaries = load_check_many([NetLoad(out / NET, "train"), NetLoad(out / NET, "test"),
                                 NetLoad(out / DEPLOY, "test")], locate_caffe())
    assert all(s.ok for s in summaries), [s.error for s in summaries]
    train = summaries[0]
    assert {layer.type for layer in train.layers} >= {"Power", "Eltwise", "Sigmoid"}
    assert train.blobs["s2_h1"] == (16, 100) and train.blobs["s2_h0"] == (16, 1000)  # Table I widths
    grouped = {frozenset(group) for group in train.shared_params}
    assert frozenset({"s0_uz1/0", "s1_uz1/0", "s2_uz1/0"}) in grouped  # U_z of layer 1: one blob


@pytest.mark.caffe
def test_a_tiny_tune_trains_and_records_gru_candidates(dataset: Path, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("states: {min: 2, max: 3}\nlayers: {min: 1, max: 2}\nshortcut: {min: 0, max: 1}\n"
                     "activations: [ReLU, TanH]\nwidths: [8, 16]\ncell: [drnn, gru]\n")
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["tune", "--config", str(EXAMPLES / "small.yaml"), "--space", str(space),
                                      "--data", str(dataset), "--iters", "10", "--generations", "0",
                                      "--population", "4", "--seed", "3", "--no-cache", "-o", str(run)])
    assert result.exit_code == 0, result.output
    rows = Ledger.open(run).candidates()
    cells = {row.genotype[-1]: yaml.safe_load(row.config)["model"]["cell"] for row in rows}
    assert all(gene == cell for gene, cell in cells.items()) and "gru" in cells
    for row in rows:
        assert row.outcome.ok and row.outcome.fitness > 0 and row.outcome.iterations == 10
        if row.genotype[-1] == "gru":
            assert 'type: "Power"' in (Path(row.folder or "") / NET).read_text()
