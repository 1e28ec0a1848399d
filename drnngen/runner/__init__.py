"""Running Caffe: finding pycaffe (`locate`) and the one runner (`run`) that
build checks, the tuner and evaluation share. Caffe itself is only ever
imported by the child process in `worker`."""

from __future__ import annotations

from drnngen.runner.jobs import (
    CaffeInfo,
    LayerSummary,
    Mode,
    NetSummary,
    Phase,
    TrainJob,
    TrainResult,
    Validation,
    fitness,
    state_weights,
)
from drnngen.runner.locate import CaffeInstall, locate_caffe
from drnngen.runner.run import (
    CaffeError,
    ForwardResult,
    NetLoad,
    caffe_info,
    forward,
    forward_scores,
    gpu_available,
    load_check,
    load_check_many,
    require_mode,
    train,
)

__all__ = [
    "CaffeError",
    "CaffeInfo",
    "CaffeInstall",
    "ForwardResult",
    "LayerSummary",
    "Mode",
    "NetLoad",
    "NetSummary",
    "Phase",
    "TrainJob",
    "TrainResult",
    "Validation",
    "caffe_info",
    "fitness",
    "forward",
    "forward_scores",
    "gpu_available",
    "load_check",
    "load_check_many",
    "locate_caffe",
    "require_mode",
    "state_weights",
    "train",
]
