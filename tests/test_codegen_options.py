"""The architecture options beyond the paper (docs/MODEL.md section 17): dropout,
the repeat path, tied embeddings — their config keys, layer names, and the
weights file of the fixed page → item map R (`drnngen.bind.repeat_weights`).

The Caffe side (loading, the NumPy equations, miswirings) is in
tests/test_caffe_codegen.py; the random configs in tests/test_codegen_property.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from drnngen.bind import bind_dataset, dataset_page_items, fixed_map, neighbour_map, repeat_weights, write_fixed_map
from drnngen.codegen.build import DEPLOY, NET, generate
from drnngen.codegen.config import DRNNConfig, dropouts, parse_config
from drnngen.codegen.graph import NEIGHBOUR_MAP, REPEAT_MAP, build_deploy_graph, build_graph, fixed_map_layers
from drnngen.codegen.itemmap import NO_ITEM, PageItemError, page_item
from drnngen.data.manifest import load_manifest
from drnngen.data.samples import load_sessions
from drnngen.errors import UserError
from drnngen.runner import CaffeInstall, forward, locate_caffe
from tests.data_support import SyntheticData

DATASET = SyntheticData(sessions=400, items=40, categories=4, max_pages=50, max_items=15, window=2)


def config(**model: object) -> DRNNConfig:
    base: dict[str, object] = {"states": 2, "layers": 2, "shortcut": 1, "widths": 4}
    return parse_config({"model": {**base, **model}, "data": {"pages": 9, "items": 5}})


def names(cfg: DRNNConfig) -> list[str]:
    return [layer.name for layer in build_graph(cfg).layers]


# --- config keys ------------------------------------------------------------------------


def test_options_are_off_by_default() -> None:
    m = parse_config({}).model
    assert (m.dropout, m.repeat, m.repeat_init, m.tied, m.neighbours) == ((0.0,), False, 1.0, False, False)
    plain = names(config())
    assert not any("drop" in n or "rep" in n or "tied" in n or "nbr" in n for n in plain)


def test_dropout_one_value_or_per_layer() -> None:
    assert dropouts(config(dropout=0.25)) == (0.25, 0.25)
    assert dropouts(config(dropout=[0, 0.5])) == (0.0, 0.5)
    with pytest.raises(UserError, match=r"model\.dropout: must be < 1"):
        config(dropout=[0, 1])


def test_tied_needs_top_as_wide_as_embedding() -> None:
    with pytest.raises(UserError, match=r"model\.tied: .*widths\[1\] = 3 and widths\[0\] = 4"):
        config(widths=[4, 3], tied=True)
    assert config(widths=[4, 4], tied=True).model.tied


# --- layer names (MODEL.md section 17) ------------------------------------------------------


def test_dropout_layers_follow_their_activation() -> None:
    layers = {layer.name: layer for layer in build_graph(config(dropout=[0.5, 0])).layers}
    assert [n for n in layers if "drop" in n] == ["hist_drop0", "s0_drop0", "s1_drop0"]
    assert layers["s0_drop0"].bottoms == ("s0_h0",) and layers["s0_drop0"].tops == ("s0_drop0",)
    # every reader of a_0 takes the dropped blob; a_1 (p = 0) is read as before
    assert layers["s0_z1"].bottoms == ("s0_drop0",) and layers["s1_w0"].bottoms == ("s0_drop0",)
    assert layers["s0_w0"].bottoms == ("hist_drop0",) and layers["s0_out0"].bottoms == ("s0_drop0",)
    assert layers["s1_out1"].bottoms == ("s1_h1",)


def test_repeat_layers_and_params() -> None:
    layers = {layer.name: layer for layer in build_graph(config(repeat=True, repeat_init=0.5)).layers}
    assert [n for n in layers if "rep" in n] == [
        "hist_repmap", "s0_repmap", "s0_rep0", "s0_repH", "s1_repmap", "s1_rep0", "s1_rep1", "s1_repH"]
    assert {n: layers[n].params[0].name for n in ("s1_rep0", "s1_rep1", "s1_repH", "s0_rep0")} == {
        "s1_rep0": "rep_b1", "s1_rep1": "rep_b0", "s1_repH": "rep_bH", "s0_rep0": "rep_b0"}
    assert layers["s1_rep0"].bottoms == ("s0_repmap",)
    assert layers["s1_score"].bottoms == ("s1_out1", "s1_out0", "s1_rep0", "s1_rep1", "s1_repH")
    for name in ("hist_repmap", "s0_repmap", "s1_repmap"):
        param = layers[name].params[0]
        assert (param.name, param.lr_mult, param.decay_mult) == (REPEAT_MAP, 0.0, 0.0)
    scale = layers["s0_rep0"].settings["scale_param"]
    assert scale == {"axis": 0, "num_axes": 0, "filler": {"type": "constant", "value": 0.5}}


def test_neighbour_layers_and_params() -> None:
    """MODEL.md section 17.5: Q's rows per state, one scalar per lag and the history's, beside the repeat path."""
    cfg = config(repeat=True, neighbours=True, neighbours_init=0.25, neighbours_lr_mult=4.0)
    layers = {layer.name: layer for layer in build_graph(cfg).layers}
    assert [n for n in layers if "nbr" in n] == [
        "hist_nbrmap", "s0_nbrmap", "s0_nbr0", "s0_nbrH", "s1_nbrmap", "s1_nbr0", "s1_nbr1", "s1_nbrH"]
    assert {n: layers[n].params[0].name for n in ("s1_nbr0", "s1_nbr1", "s1_nbrH")} == {
        "s1_nbr0": "nbr_b1", "s1_nbr1": "nbr_b0", "s1_nbrH": "nbr_bH"}
    assert layers["s1_nbr0"].bottoms == ("s0_nbrmap",) and layers["s1_nbrH"].bottoms == ("hist_nbrmap",)
    assert layers["s1_score"].bottoms == ("s1_out1", "s1_out0", "s1_rep0", "s1_rep1", "s1_repH",
                                          "s1_nbr0", "s1_nbr1", "s1_nbrH")
    for name in ("hist_nbrmap", "s0_nbrmap", "s1_nbrmap"):
        param = layers[name].params[0]
        assert (param.name, param.lr_mult, param.decay_mult) == (NEIGHBOUR_MAP, 0.0, 0.0)
    scalar = layers["s0_nbr0"]
    assert (scalar.params[0].lr_mult, scalar.params[0].decay_mult) == (4.0, 0.0)
    assert scalar.settings["scale_param"]["filler"] == {"type": "constant", "value": 0.25}
    assert "neighbours=on" in generate(cfg)[NET].splitlines()[2]


def test_fixed_maps_past_the_limit_are_refused() -> None:
    big = {"pages": 99_999, "items": 1000}  # (M+1)·N·4 = 400 MB: one map fits, two do not
    assert parse_config({"model": {"neighbours": True}, "data": big}).model.neighbours
    with pytest.raises(UserError, match=r"model\.repeat: the fixed maps R and Q are 2×\(M\+1\)×N"):
        parse_config({"model": {"repeat": True, "neighbours": True}, "data": big})


def test_tied_top_projection() -> None:
    layers = {layer.name: layer for layer in build_graph(config(tied=True)).layers}
    pages, items = layers["s1_tied"], layers["s1_out1"]
    assert pages.bottoms == ("s1_h1",) and [p.name for p in pages.params] == ["emb"]
    assert pages.settings["inner_product_param"]["num_output"] == 10  # M + 1
    assert items.bottoms == ("s1_tied",) and [p.name for p in items.params] == [REPEAT_MAP, "out_b"]
    assert items.settings["inner_product_param"]["transpose"] is True
    assert "out1" not in {p.name for layer in layers.values() for p in layer.params}


@pytest.mark.parametrize(("model", "owners"), [
    ({"repeat": True}, ["hist_repmap"]),
    ({"repeat": True, "history": False, "tied": True, "widths": 4}, ["s0_repmap"]),
    ({"tied": True}, ["s0_out1", "s1_out1"]),  # TRAIN/TEST owner, deploy owner
    ({"neighbours": True}, ["hist_nbrmap"]),
    ({"repeat": True, "neighbours": True, "history": False}, ["s0_repmap", "s0_nbrmap"]),
    ({}, []),
])
def test_fixed_map_owners(model: dict[str, object], owners: list[str]) -> None:
    cfg = config(**model)
    assert [layer.name for layer in fixed_map_layers(cfg)] == owners
    for graph in (build_graph(cfg), build_deploy_graph(cfg)):
        for table in (REPEAT_MAP, NEIGHBOUR_MAP):
            holders = [layer.name for layer in graph.layers if any(p.name == table for p in layer.params)]
            assert not holders or holders[0] in owners


def test_options_render_and_validate() -> None:
    files = generate(config(dropout=0.3, repeat=True, tied=True))
    assert 'type: "Dropout"' in files[NET] and 'type: "Scale"' in files[DEPLOY]
    assert "dropout=[0.3, 0.3] repeat=on tied=on" in files[NET].splitlines()[2]


# --- the page → item map and its weights file ---------------------------------------------


def test_page_item_matches_raw_ids() -> None:
    assert page_item([None, None, "7", 3, "x"], [3, 7]) == [NO_ITEM, NO_ITEM, 1, 0, NO_ITEM]
    matrix = fixed_map([NO_ITEM, 1, 0], 2)
    assert matrix.dtype == np.float32 and matrix.tolist() == [[0, 0], [0, 1], [1, 0]]
    with pytest.raises(PageItemError):
        fixed_map([0, 2], 2)


def test_weights_file_layout(tmp_path: Path) -> None:
    cfg = parse_config({"model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 3, "history": False,
                                  "tied": True, "bias_value": 0.25, "top_k": 1},
                       "data": {"pages": 3, "items": 2}})
    classes = [NO_ITEM, NO_ITEM, 1, 0]
    target = write_fixed_map(cfg, classes, tmp_path / "r.caffemodel.h5")
    with h5py.File(target, "r") as weights:
        assert sorted(weights["data"]) == ["s0_out0", "s1_out0"]
        for layer in ("s0_out0", "s1_out0"):
            group = weights["data"][layer]
            assert sorted(group) == ["0", "1"]
            assert group["0"].dtype == np.float32
            np.testing.assert_array_equal(group["0"][...], [[0, 0], [0, 0], [0, 1], [1, 0]])
            np.testing.assert_array_equal(group["1"][...], [0.25, 0.25])  # out_b at its filler
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_repeat_weights_from_a_dataset(dataset: Path) -> None:
    cfg = bind_dataset(parse_config({"model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 8,
                                               "repeat": True}}), dataset)
    manifest = load_manifest(dataset)
    target = repeat_weights(cfg)
    assert target is not None and target.parent == manifest.root and target.name.endswith(".caffemodel.h5")
    classes = dataset_page_items(manifest)
    assert sum(c != NO_ITEM for c in classes) > 0
    # the dataset has the sparse layout: R's owner is the Embed over the history ids
    assert manifest.layout.sparse and fixed_map_layers(cfg)[0].name == "hist_reppages"
    with h5py.File(target, "r") as weights:
        np.testing.assert_array_equal(weights["data/hist_reppages/0"][...], fixed_map(classes, manifest.items))
    stamp = target.stat().st_mtime_ns
    assert repeat_weights(cfg, dataset) == target and target.stat().st_mtime_ns == stamp  # reused
    other = bind_dataset(parse_config({"model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 8,
                                                 "history": False, "repeat": True}}), dataset)
    assert repeat_weights(other) not in (None, target)  # another owner layer: another file
    assert repeat_weights(bind_dataset(parse_config({}), dataset)) is None


def test_neighbour_map_from_a_dataset(dataset: Path) -> None:
    """Q in the weights file is S[c(p)] of the train split's co-occurrence: no item is its own
    neighbour, rows peak at 1 (or are empty), pages of no item get none; the net with R
    alone keeps its own file."""
    manifest = load_manifest(dataset)
    raw = {"model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 8, "repeat": True}}
    plain = repeat_weights(bind_dataset(parse_config(raw), dataset))
    cfg = bind_dataset(parse_config({"model": {**raw["model"], "neighbours": True}}), dataset)
    target = repeat_weights(cfg)
    assert target is not None and target != plain and plain is not None and plain.is_file()
    classes = np.array(dataset_page_items(manifest))
    with h5py.File(target, "r") as weights:
        np.testing.assert_array_equal(weights["data/hist_reppages/0"][...], fixed_map(classes, manifest.items))
        q = weights["data/hist_nbrpages/0"][...]
    np.testing.assert_array_equal(q, neighbour_map(manifest, classes))
    items = classes >= 0
    assert not q[~items].any()
    assert (q[items, classes[items]] == 0).all()  # the diagonal: the repeat path's business
    peaks = q[items].max(axis=1)
    assert np.isin(peaks, [0.0, 1.0]).all() and (peaks == 1.0).mean() > 0.5
    # two items bought together in train: each is the other's neighbour, symmetric before the row scaling
    train = load_sessions(manifest.sources(manifest.window)["train"])
    pair = next((int(a), int(b)) for a, b in zip(classes[train.pages[:, -1]], train.labels, strict=True)
                if a >= 0 and a != b)
    first = int(np.flatnonzero(classes == pair[0])[0])
    assert q[first, pair[1]] > 0


def _split_files(tmp_path: Path, splits: dict[str, list[list[int]]]) -> Path:
    """A dataset prepared from given split files (GRU4Rec TSV, item ids 60 s apart), next-item."""
    from click.testing import CliRunner

    from drnngen.cli import cli

    files = {}
    for offset, (split, sessions) in enumerate(splits.items()):
        lines = ["SessionId\tItemId\tTime"]
        for s, items in enumerate(sessions, start=100 * offset + 1):
            lines += [f"{s}\t{item}\t{1_600_000_000 + 86_400 * s + 60 * i}" for i, item in enumerate(items)]
        files[split] = tmp_path / f"{split}.tsv"
        files[split].write_text("\n".join(lines) + "\n")
    out = tmp_path / "data"
    result = CliRunner().invoke(cli, ["prepare", str(files["train"]), "--valid-log", str(files["valid"]),
                                      "--test-log", str(files["test"]), "--format", "gru4rec", "--target",
                                      "next-item", "--window", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_neighbour_map_by_hand_and_from_the_train_split_only(tmp_path: Path) -> None:
    """Train samples {7, 8}, {7, 9}, {7, 9} (each session's one prefix and its next item):
    n_7 = 3, n_8 = 1, n_9 = 2, co(7, 8) = 1, co(7, 9) = 2, λ = 20. Validation and test
    sessions pair 8 with 9 many times; Q must not see it."""
    data = _split_files(tmp_path, {"train": [[7, 8], [7, 9], [7, 9]], "valid": [[8, 9, 8, 9]] * 3,
                                   "test": [[9, 8, 9, 8]] * 3})
    manifest = load_manifest(data)
    classes = dataset_page_items(manifest)
    q = neighbour_map(manifest, classes)
    item = {int(key): c for c, key in enumerate(manifest.item_keys())}
    row = {int(key): q[p] for p, key in enumerate(manifest.page_keys()) if classes[p] >= 0}
    s78, s79 = 1 / np.sqrt((3 + 20) * (1 + 20)), 2 / np.sqrt((3 + 20) * (2 + 20))
    np.testing.assert_allclose(row[7][[item[8], item[9]]], [s78 / s79, 1.0], rtol=1e-6)
    assert row[7][item[7]] == 0  # no item is its own neighbour
    for own in (8, 9):  # each co-occurs with 7 alone in train: 8-9 is in validation and test only
        np.testing.assert_array_equal(row[own][[item[7], item[8], item[9]]], [1.0, 0.0, 0.0])


def test_repeat_weights_needs_a_bound_config(dataset: Path) -> None:
    with pytest.raises(UserError, match="bind the config"):
        repeat_weights(config(repeat=True), dataset)
    with pytest.raises(UserError, match="needs a prepared dataset"):
        repeat_weights(config(repeat=True))


@pytest.mark.caffe
def test_caffe_loads_r_from_the_dataset_file(dataset: Path, tmp_path: Path) -> None:
    """The file's R reaches every holder of `repeat_map` in a TEST net on the real data."""
    install: CaffeInstall = locate_caffe()
    cfg = bind_dataset(parse_config({"model": {"states": 2, "layers": 1, "shortcut": 0, "widths": 8,
                                               "repeat": True, "tied": True},
                                     "data": {"batch_size": 8, "test_batch_size": 8}}), dataset)
    target = repeat_weights(cfg)
    assert target is not None
    files = generate(cfg)
    (tmp_path / NET).write_text(files[NET])
    result = forward(tmp_path / NET, "test", ["s1_score"], weights=target, with_params=True, install=install)
    expected = fixed_map(dataset_page_items(load_manifest(dataset)), cfg.data.items)
    holders = {"hist_reppages": 0, "s0_repmap": 0, "s1_repmap": 0, "s0_out0": 0, "s1_out0": 0}
    for layer, index in holders.items():
        np.testing.assert_array_equal(result.params[layer][index], expected, err_msg=layer)


def test_build_with_data_names_the_map_to_pass_to_caffe(dataset: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from drnngen.cli import cli

    config = tmp_path / "repeat.yaml"
    config.write_text("model: {states: 2, layers: 1, shortcut: 0, widths: 8, repeat: true}\n")
    result = CliRunner().invoke(cli, ["build", str(config), "--data", str(dataset), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("page->item map: ") and line.endswith(" (caffe train --weights it)")
    assert Path(line.split(": ", 1)[1].split(" (")[0]).is_file()
