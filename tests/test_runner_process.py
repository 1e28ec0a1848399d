"""Turning a dead Caffe child's stderr into one line; the child's environment.
The stderr samples are verbatim from this project's Caffe build (no Caffe needed)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from drnngen.runner.locate import CaffeInstall
from drnngen.runner.process import WorkerRun, caffe_error, child_env
from drnngen.runner.run import failure_status
from drnngen.vocabulary import UNCACHEABLE, Status

SHARE_MISMATCH = """WARNING: Logging before InitGoogleLogging() is written to STDERR
F20261123 18:33:12.847402 13271 net.cpp:555] Check failed: this_blob->shape() == owner_blob->shape() Cannot share param 'W' owned by layer 'ip_a' with layer 'ip_b'; shape mismatch.  Owner layer param shape is 8 4 (32); sharing layer expects shape 6 4 (24)
*** Check failure stack trace: ***
"""  # noqa: E501

PARSE_ERROR = """[libprotobuf ERROR google/protobuf/text_format.cc:337] Error parsing text-format caffe.NetParameter: 3:14: Message type "caffe.LayerParameter" has no field named "bogus_field".
WARNING: Logging before InitGoogleLogging() is written to STDERR
F20261123 18:33:43.052748 14202 upgrade_proto.cpp:94] Check failed: ReadProtoFromTextFile(param_file, param) Failed to parse NetParameter file: net.prototxt
*** Check failure stack trace: ***
"""  # noqa: E501

OLD_GLOG = """I1123 18:30:00.123456 12345 net.cpp:84] Creating Layer data
E1123 18:30:00.200000 12345 hdf5.cpp:33] Failed opening HDF5 file: missing.h5
F1123 18:30:00.200100 12345 hdf5_data_layer.cpp:40] Check failed: status >= 0 (-1 vs. 0) Failed to open HDF5 file
"""


def test_check_failure_is_caffes_own_line() -> None:
    message = caffe_error(SHARE_MISMATCH, -6)
    assert message.startswith("Check failed: this_blob->shape() == owner_blob->shape()")
    assert message.endswith("expects shape 6 4 (24) [net.cpp:555]")


def test_parse_error_keeps_protobufs_detail() -> None:
    message = caffe_error(PARSE_ERROR, -6)
    assert message.startswith("Check failed: ReadProtoFromTextFile")
    assert 'has no field named "bogus_field"' in message
    assert "\n" not in message


def test_glog_without_year_and_error_before_fatal() -> None:
    assert caffe_error(OLD_GLOG, -6) == (
        "Check failed: status >= 0 (-1 vs. 0) Failed to open HDF5 file [hdf5_data_layer.cpp:40]"
        " (Failed opening HDF5 file: missing.h5)"
    )


def test_signal_without_log_line() -> None:
    assert caffe_error("", -11) == "Caffe crashed (SIGSEGV)"
    assert caffe_error("Traceback ...\nModuleNotFoundError: No module named 'caffe'\n", 1) == (
        "ModuleNotFoundError: No module named 'caffe'"
    )


def test_child_env_puts_caffe_first_and_logs_to_stderr(tmp_path: Path) -> None:
    install = CaffeInstall(source="DRNNGEN_CAFFE_ROOT", package_dir=tmp_path / "python/caffe",
                           python_path=tmp_path / "python", root=tmp_path, tool=None)
    env = child_env(install, {"PYTHONPATH": "/elsewhere"})
    paths = env["PYTHONPATH"].split(":")
    assert paths[0] == str(tmp_path / "python")
    assert paths[-1] == "/elsewhere"
    assert Path(paths[1], "drnngen", "runner", "worker.py").is_file()
    assert env["GLOG_logtostderr"] == "1"
    assert env["GLOG_minloglevel"] == "1"
    assert child_env(install, {"GLOG_minloglevel": "0"})["GLOG_minloglevel"] == "0"


@pytest.mark.parametrize(("returncode", "timed_out", "status"), [
    (-signal.SIGKILL, False, Status.KILLED),  # the OOM killer or a user's kill -9: not the net's fault
    (-signal.SIGKILL, True, Status.TIMEOUT),  # our own kill at --timeout
    (-signal.SIGABRT, False, Status.FAILED),  # a Caffe CHECK
    (-signal.SIGSEGV, False, Status.FAILED),
    (1, False, Status.FAILED),
])
def test_why_a_training_child_gave_no_result(returncode: int, timed_out: bool, status: Status) -> None:
    run = WorkerRun(events=(), returncode=returncode, stderr="", timed_out=timed_out, seconds=1.0)
    assert failure_status(run) == status
    assert (status in UNCACHEABLE) == (status != Status.FAILED)
