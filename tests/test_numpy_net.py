"""The NumPy engine (`drnngen.runner.numpy_net`, what `drnngen serve` scores with) against
Caffe's own deploy forward: every example and random valid configs (every option, both
cells, both sample layouts), with random weights written as a caffemodel, give Caffe's
scores and probabilities on random well-formed rows, batched and one row at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from drnngen.codegen import schema
from drnngen.codegen.build import DEPLOY
from drnngen.codegen.config import DRNNConfig, load_config
from drnngen.errors import UserError
from drnngen.runner import CaffeInstall, forward, forward_scores, locate_caffe
from drnngen.runner.numpy_net import NumpyNet
from tests.net_support import EXAMPLES, materialize, random_configs, small_batches, with_fixed_map

pytestmark = pytest.mark.caffe


@pytest.fixture(scope="module")
def install() -> CaffeInstall:
    return locate_caffe()


def random_caffemodel(deploy: Path, fixed: Path | None, target: Path, seed: int, install: CaffeInstall) -> Path:
    """Caffe's own parameter blobs of `deploy` (the fillers', R and Q from their file), each
    moved by noise as large as its spread (at least 0.05), so that no bias is zero and no
    scalar at its start while the scores keep their scale: one noise per shared name, as a
    trained model holds one value in every layer that shares it."""
    params = forward(deploy, "test", [], weights=fixed, with_params=True, install=install).params
    rng = np.random.default_rng(seed)
    net = schema.parse(deploy.read_text(), "NetParameter", str(deploy))
    noise: dict[str, np.ndarray] = {}
    model = schema.message_class("NetParameter")()
    for layer in net.layer:
        if layer.name not in params:
            continue
        out = model.layer.add(name=layer.name, type=layer.type)
        for index, values in enumerate(params[layer.name]):
            name = layer.param[index].name if index < len(layer.param) else ""
            moved = noise.get(name) if name else None
            if moved is None:
                spread = max(float(values.std()), 0.05)
                moved = (values + rng.normal(0, spread, values.shape)).astype(np.float32)
                if name:
                    noise[name] = moved
            blob = out.blobs.add()
            blob.shape.dim.extend(values.shape)
            blob.data.extend(moved.ravel().tolist())
    target.write_bytes(model.SerializeToString())
    return target


def prob_bottom(deploy: Path) -> str:
    net = schema.parse(deploy.read_text(), "NetParameter", str(deploy))
    return next(layer.bottom[0] for layer in net.layer if layer.name == "prob")


def test_examples_and_random_configs_score_as_in_caffe(tmp_path: Path, install: CaffeInstall) -> None:
    named: list[tuple[str, DRNNConfig]] = [(p.stem, small_batches(load_config(p))) for p in EXAMPLES]
    named += [(cfg.name, cfg) for cfg in random_configs(24, seed=11)]
    assert all(any(getattr(cfg.model, key) for _, cfg in named) for key in ("repeat", "tied", "neighbours"))
    assert {cfg.model.cell for _, cfg in named} == {"drnn", "gru"}
    assert any(cfg.data.history_k for _, cfg in named) and any(not cfg.data.history_k for _, cfg in named)
    worst = 0.0
    for index, (name, cfg) in enumerate(named):
        folder = materialize(cfg, tmp_path / f"{index:02d}-{name}", seed=index)
        deploy = folder / DEPLOY
        model = random_caffemodel(deploy, with_fixed_map(cfg, folder, seed=index), folder / "random.caffemodel",
                                  seed=index, install=install)
        listing = folder / cfg.data.test_source
        logits = prob_bottom(deploy)
        caffe_prob = forward_scores(deploy, model, listing, "prob", install=install)
        caffe_logits = forward_scores(deploy, model, listing, logits, install=install)
        net = NumpyNet(deploy, model)
        with h5py.File(listing.with_suffix(".h5"), "r") as data:
            rows = {input_name: np.asarray(data[input_name]) for input_name in net.inputs}
        batched = net.forward(rows)
        # float32 sums in another order: equal to a millionth of the scores' scale
        scale = float(np.abs(caffe_logits).max())
        np.testing.assert_allclose(batched[logits], caffe_logits, rtol=0, atol=1e-5 * max(scale, 1.0), err_msg=name)
        np.testing.assert_allclose(batched["prob"], caffe_prob, rtol=0, atol=1e-5, err_msg=name)
        one = np.concatenate([net.scores({k: v[i:i + 1] for k, v in rows.items()}) for i in range(3)])
        np.testing.assert_allclose(one, caffe_prob[:3], rtol=0, atol=1e-5, err_msg=name)
        assert float(np.ptp(caffe_logits, axis=1).min()) > 0.1, name  # scores that differ: the check can fail
        worst = max(worst, float(np.abs(batched["prob"] - caffe_prob).max()))
    assert worst < 1e-5


@pytest.fixture(scope="module")
def small_net(tmp_path_factory: pytest.TempPathFactory, install: CaffeInstall) -> tuple[Path, Path]:
    cfg = small_batches(load_config(next(p for p in EXAMPLES if p.stem == "small")))
    folder = materialize(cfg, tmp_path_factory.mktemp("numpy-small"))
    return folder / DEPLOY, random_caffemodel(folder / DEPLOY, None, folder / "random.caffemodel", 0, install)


def test_a_layer_it_cannot_score_is_refused_at_load(small_net: tuple[Path, Path], tmp_path: Path) -> None:
    deploy, model = small_net
    other = tmp_path / "deploy.prototxt"
    other.write_text(deploy.read_text().replace('type: "TanH"', 'type: "BNLL"').replace('type: "ReLU"', 'type: "BNLL"'))
    with pytest.raises(UserError, match="BNLL, which the NumPy engine does not score; serve with --engine caffe"):
        NumpyNet(other, model)


def test_weights_of_another_net_or_no_caffemodel_are_one_line(small_net: tuple[Path, Path], tmp_path: Path) -> None:
    deploy, model = small_net
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(schema.message_class("NetParameter")(name="other").SerializeToString())
    with pytest.raises(UserError, match="holds no weights for the layer"):
        NumpyNet(deploy, empty)
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(UserError, match="not a caffemodel"):
        NumpyNet(deploy, garbage)
    with pytest.raises(UserError, match="no blob 'nope'"):
        NumpyNet(deploy, model, blob="nope")


def test_a_blob_whose_values_do_not_fill_its_shape_is_one_line(small_net: tuple[Path, Path], tmp_path: Path) -> None:
    deploy, model = small_net
    damaged: Any = schema.message_class("NetParameter")()
    damaged.ParseFromString(model.read_bytes())
    layer = next(layer for layer in damaged.layer if layer.blobs)
    layer.blobs[0].shape.dim[0] += 1
    target = tmp_path / "damaged.caffemodel"
    target.write_bytes(damaged.SerializeToString())
    with pytest.raises(UserError, match=f"layer '{layer.name}': a weight blob holds .* values for the shape"):
        NumpyNet(deploy, target)
