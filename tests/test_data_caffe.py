"""Caffe's own HDF5Data layer reads a prepared window (compressed and plain) row for row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from drnngen.data.sessions import BuildOptions
from drnngen.data.windows import DENSE, SPARSE
from drnngen.runner.locate import locate_caffe
from drnngen.runner.process import child_env
from tests.data_support import read_split, run_prepare, synth_log, yoochoose_spec

pytestmark = pytest.mark.caffe

_FORWARD = """
import sys, numpy as np, caffe
net = caffe.Net(sys.argv[1], caffe.TEST)
net.forward()
np.savez(sys.argv[2], **{name: blob.data for name, blob in net.blobs.items()})
"""


@pytest.mark.parametrize(("compress", "sparse"), [(True, False), (False, False), (True, True)])
def test_hdf5data_reads_what_h5py_reads(tmp_path: Path, compress: bool, sparse: bool) -> None:
    install = locate_caffe()  # EnvironmentProblem (the test fails) when `make caffe` was not run
    log = synth_log(tmp_path / "log", sessions=2000, seed=2)
    # dense: files of ~200 rows over chunks of 174, a padded partial chunk ends every compressed
    # file; sparse ([n, 1, K] rows, never compressed): files of ~100 rows
    report = run_prepare(yoochoose_spec(log), tmp_path / "data", window=3, compress=compress,
                         build=BuildOptions(max_pages=1500), file_bytes=30_000 if sparse else 1_500_000,
                         layout=SPARSE if sparse else DENSE)
    expected = read_split(report.sources["train"])
    rows = len(expected["label"])
    tops = "".join(f'  top: "{name}"\n' for name in expected)
    (tmp_path / "net.prototxt").write_text(
        f'layer {{\n  name: "data"\n  type: "HDF5Data"\n{tops}'
        f'  hdf5_data_param {{ source: "{report.sources["train"]}" batch_size: {rows} }}\n}}\n'
    )
    subprocess.run([sys.executable, "-c", _FORWARD, str(tmp_path / "net.prototxt"), str(tmp_path / "blobs.npz")],
                   env=child_env(install), check=True, capture_output=True, timeout=120)
    blobs = np.load(tmp_path / "blobs.npz")
    assert len(report.sources["train"].read_text().splitlines()) > 1  # several files, read in order
    for name, values in expected.items():
        np.testing.assert_array_equal(blobs[name], values, err_msg=name)
    with h5py.File(report.sources["train"].read_text().splitlines()[0], "r") as h5:
        if sparse:
            assert h5["history_ids"].shape[1:] == (1, SPARSE.history_k) and h5["history_ids"].compression is None
            return
        assert (h5["history"].compression == "gzip") is compress
        assert not compress or h5["history"].chunks[0] < h5["history"].shape[0]
