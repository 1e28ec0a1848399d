"""The runner against real Caffe, on a tiny hand-written net (no codegen).

The net: x (4 features) → two InnerProducts sharing one weight blob `W`,
summed → ReLU → InnerProduct to 3 classes → SoftmaxWithLoss. The label is the
argmax of the first three features, so a few SGD steps visibly lower the loss.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from drnngen.errors import EnvironmentProblem, UserError
from drnngen.runner import (
    CaffeInstall,
    NetLoad,
    TrainJob,
    forward,
    forward_scores,
    load_check,
    load_check_many,
    locate_caffe,
    train,
)
from drnngen.runner.process import child_env, run_worker

pytestmark = pytest.mark.caffe

ROWS, FEATURES, CLASSES, BATCH = 96, 4, 3, 16

MODEL = """layer { name: "ip_a" type: "InnerProduct" bottom: "x" top: "ha"
  param { name: "W" } inner_product_param { num_output: 8 weight_filler { type: "xavier" } } }
layer { name: "ip_b" type: "InnerProduct" bottom: "x" top: "hb"
  param { name: "W" } inner_product_param { num_output: 8 weight_filler { type: "xavier" } } }
layer { name: "sum" type: "Eltwise" bottom: "ha" bottom: "hb" top: "h" }
layer { name: "relu" type: "ReLU" bottom: "h" top: "h" }
layer { name: "score" type: "InnerProduct" bottom: "h" top: "score"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
"""

NET = """name: "tiny"
layer { name: "data" type: "HDF5Data" top: "x" top: "label"
  hdf5_data_param { source: "train.txt" batch_size: 16 } }
""" + MODEL + """layer { name: "loss" type: "SoftmaxWithLoss" bottom: "score" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "score" bottom: "label" top: "accuracy"
  include { phase: TEST } }
"""

DEPLOY = """name: "tiny"
layer { name: "input" type: "Input" top: "x" input_param { shape { dim: 16 dim: 4 } } }
""" + MODEL

SOLVER = """net: "net.prototxt"
base_lr: {lr}
momentum: 0.9
lr_policy: "fixed"
max_iter: 30
display: 1
random_seed: 7
test_iter: 2
test_interval: 100000
test_initialization: false
snapshot_prefix: "tool"
solver_mode: CPU
"""

# ip_b shares W but wants it 6x4 instead of 8x4: a CHECK in Net::AppendParam.
# (Not an Eltwise of mismatched shapes: this fork commented that CHECK out and
# adds whatever memory follows, so only drnngen's own validator catches it.)
IMPOSSIBLE = NET.replace(
    'top: "hb"\n  param { name: "W" } inner_product_param { num_output: 8',
    'top: "hb"\n  param { name: "W" } inner_product_param { num_output: 6')
assert IMPOSSIBLE != NET


@pytest.fixture(scope="module")
def install() -> CaffeInstall:
    return locate_caffe()  # EnvironmentProblem (the test fails) when `make caffe` was not run


def write_data(folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(ROWS, FEATURES)).astype(np.float32)
    with h5py.File(folder / "train.h5", "w") as data:
        data["x"] = x
        data["label"] = x[:, :CLASSES].argmax(axis=1).astype(np.float32)
    (folder / "train.txt").write_text("train.h5\n")


def workdir(folder: Path, net: str = NET, lr: float = 0.1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_data(folder)
    (folder / "net.prototxt").write_text(net)
    (folder / "solver.prototxt").write_text(SOLVER.replace("{lr}", str(lr)))
    (folder / "deploy.prototxt").write_text(DEPLOY)
    return folder


def job(folder: Path, **changes: object) -> TrainJob:
    settings: dict[str, object] = {
        "workdir": folder, "iterations": 30, "loss_blob": "loss",
        "accuracy_blobs": ("accuracy",), "test_iterations": 2, "loss_interval": 5,
        "snapshot": Path("trained.caffemodel"),
    }
    settings.update(changes)
    return TrainJob(**settings)  # type: ignore[arg-type]


def test_thirty_iterations_lower_the_loss(tmp_path: Path, install: CaffeInstall) -> None:
    result = train(job(workdir(tmp_path)), install)
    assert result.status == "ok", result.error
    assert result.iterations_done == 30
    assert [it for it, _ in result.train_losses] == [5, 10, 15, 20, 25, 30]
    first, last = result.train_losses[0][1], result.final_train_loss
    assert last is not None and last < 0.8 * first
    assert result.test_loss is not None and 0 < result.test_loss < first
    assert 0.0 <= result.test_accuracy["accuracy"] <= 1.0
    assert 0 < result.solver_seconds < 60
    assert result.caffemodel == tmp_path / "trained.caffemodel"
    assert result.caffemodel.stat().st_size > 0
    assert result.log is not None and result.log.is_file()


def test_caffe_command_line_tool_lowers_the_loss(tmp_path: Path, install: CaffeInstall) -> None:
    assert install.tool is not None, "no `caffe` tool next to pycaffe"
    folder = workdir(tmp_path)
    env = child_env(install)
    env["GLOG_minloglevel"] = "0"  # the tool reports the loss at INFO level
    done = subprocess.run([str(install.tool), "train", "--solver", "solver.prototxt"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    losses = [float(v) for v in re.findall(r"Iteration \d+.*, loss = ([-\d.eE+]+)", done.stderr)]
    assert len(losses) >= 25
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert (folder / "tool_iter_30.caffemodel").is_file()


def test_impossible_net_is_a_failed_result_with_caffes_message(
        tmp_path: Path, install: CaffeInstall) -> None:
    result = train(job(workdir(tmp_path, IMPOSSIBLE)), install)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith("Check failed:"), result.error
    assert "Cannot share param 'W'" in result.error and "[net.cpp:" in result.error
    assert "\n" not in result.error
    # The caller is alive and the next job runs normally.
    assert train(job(workdir(tmp_path / "again")), install).ok


def test_nan_loss_is_reported(tmp_path: Path, install: CaffeInstall) -> None:
    result = train(job(workdir(tmp_path, lr=1e32)), install)
    assert result.status == "nan"
    assert result.iterations_done < 30
    assert result.caffemodel is None


def test_timeout_kills_the_child(tmp_path: Path, install: CaffeInstall) -> None:
    result = train(job(workdir(tmp_path), iterations=10**8, timeout_s=8, loss_interval=1000),
                   install)
    assert result.status == "timeout"
    assert result.error == "timed out after 8 s"


def test_unknown_loss_blob_names_the_blobs(tmp_path: Path, install: CaffeInstall) -> None:
    result = train(job(workdir(tmp_path), loss_blob="s9_loss"), install)
    assert result.status == "failed"
    assert result.error is not None and "TRAIN net has no blob s9_loss" in result.error


def test_missing_solver_is_a_user_error(tmp_path: Path, install: CaffeInstall) -> None:
    with pytest.raises(UserError, match=r"solver\.prototxt: no such solver file"):
        train(job(tmp_path), install)


def test_gpu_mode_on_cpu_build_is_one_clear_line(tmp_path: Path, install: CaffeInstall) -> None:
    if install.cpu_only is False:
        pytest.skip("this Caffe is a CUDA build")
    with pytest.raises(EnvironmentProblem) as caught:
        train(job(workdir(tmp_path), mode="gpu"), install)
    message = str(caught.value)
    assert "CPU-only" in message and "--mode cpu" in message and "\n" not in message


def test_worker_refuses_gpu_mode_without_aborting(tmp_path: Path, install: CaffeInstall) -> None:
    """Even past the parent's check, the child answers instead of dying of SIGABRT."""
    if install.cpu_only is False:
        pytest.skip("this Caffe is a CUDA build")
    folder = workdir(tmp_path)
    run = run_worker("train", job(folder).to_wire() | {"mode": "gpu"}, install, cwd=folder)
    assert run.returncode == 1  # a clean exit, not -6 (SIGABRT)
    assert "CPU-only" in run.error()


def test_load_check_reports_layers_and_shared_memory(tmp_path: Path,
                                                     install: CaffeInstall) -> None:
    folder = workdir(tmp_path)
    summary = load_check(folder / "net.prototxt", "train", install=install)
    assert summary.ok, summary.error
    assert summary.layer("ip_a").param_shapes == ((8, 4), (8,))
    assert summary.blobs["score"] == (BATCH, CLASSES)
    # the named weight W is one blob; the unnamed biases are not shared
    assert summary.shared_params == (("ip_a/0", "ip_b/0"),)
    assert "accuracy" not in summary.blobs  # TEST-only layer
    assert "accuracy" in load_check(folder / "net.prototxt", "test", install=install).blobs


def test_load_check_many_survives_an_abort(tmp_path: Path, install: CaffeInstall) -> None:
    good = workdir(tmp_path / "good")
    bad = workdir(tmp_path / "bad", IMPOSSIBLE)
    items = [NetLoad(good / "net.prototxt", "train"), NetLoad(bad / "net.prototxt", "train"),
             NetLoad(good / "deploy.prototxt", "test")]
    summaries = load_check_many(items, install)
    assert [s.ok for s in summaries] == [True, False, True]
    assert summaries[1].error is not None and "Check failed" in summaries[1].error
    assert summaries[2].blobs["x"] == (BATCH, FEATURES)


def test_forward_scores_match_numpy_on_trained_weights(tmp_path: Path,
                                                       install: CaffeInstall) -> None:
    folder = workdir(tmp_path)
    model = train(job(folder), install).caffemodel
    assert model is not None
    scores = forward_scores(folder / "deploy.prototxt", model, folder / "train.txt", "score",
                            batch_size=10, install=install)
    params = forward(folder / "net.prototxt", "test", ["score"], weights=model,
                     with_params=True, install=install).params
    with h5py.File(folder / "train.h5") as data:
        x = np.asarray(data["x"])
    w, b_a = params["ip_a"]
    w_b, b_b = params["ip_b"]
    np.testing.assert_array_equal(w, w_b)  # shared, so saved once and equal
    hidden = np.maximum(x @ w.T + b_a + x @ w.T + b_b, 0)
    w2, b2 = params["score"]
    assert scores.shape == (ROWS, CLASSES)  # 96 rows in batches of 10: the last has 6
    np.testing.assert_allclose(scores, hidden @ w2.T + b2, rtol=1e-5, atol=1e-5)


def test_glog_noise_is_kept_out_of_the_log_by_default(tmp_path: Path,
                                                      install: CaffeInstall) -> None:
    if "GLOG_minloglevel" in os.environ:
        pytest.skip("GLOG_minloglevel set by the caller")
    result = train(job(workdir(tmp_path)), install)
    assert result.log is not None
    assert "Initializing net from parameters" not in result.log.read_text()
