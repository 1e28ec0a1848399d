"""Training curves parsed from Caffe's glog output."""

from __future__ import annotations

import math

from drnngen.evaluation.caffe_log import parse_caffe_log

LOG = """\
I1123 18:40:01.123456  4242 solver.cpp:330] Iteration 0, Testing net (#0)
I1123 18:40:01.200000  4242 solver.cpp:397]     Test net output #0: accuracy = 0.0625
I1123 18:40:01.200001  4242 solver.cpp:397]     Test net output #1: s2_loss = 2.77259 (* 1 = 2.77259 loss)
I1123 18:40:01.300000  4242 solver.cpp:218] Iteration 0 (0 iter/s, 0.1s/10 iters), loss = 2.8
I1123 18:40:01.300001  4242 solver.cpp:237]     Train net output #0: s0_loss = 2.8 (* 1 = 2.8 loss)
I1123 18:40:01.300002  4242 sgd_solver.cpp:105] Iteration 0, lr = 0.1
I1123 18:40:02.000000  4242 solver.cpp:218] Iteration 10, loss = 1.5e+00
I1123 18:40:02.100000  4242 solver.cpp:330] Iteration 20, Testing net (#0)
I1123 18:40:02.200000  4242 solver.cpp:397]     Test net output #0: accuracy = 0.5
I1123 18:40:02.200001  4242 solver.cpp:397]     Test net output #1: s2_loss = 1.25 (* 1 = 1.25 loss)
I1123 18:40:02.210000  4242 solver.cpp:330] Iteration 20, Testing net (#1)
I1123 18:40:02.220000  4242 solver.cpp:397]     Test net output #0: accuracy = 0.99
I1123 18:40:02.300000  4242 solver.cpp:218] Iteration 20 (9 iter/s, 1.1s/10 iters), loss = nan
W1123 18:40:02.300001  4242 something.cpp:1] unrelated warning
"""


def test_parses_train_and_test_net_0() -> None:
    curve = parse_caffe_log(LOG.splitlines())
    assert curve.train_loss[:2] == ((0, 2.8), (10, 1.5))
    assert curve.train_loss[2][0] == 20 and math.isnan(curve.train_loss[2][1])
    # Test net #1's 0.99 is not the validation net: left out.
    assert curve.test == {"accuracy": ((0, 0.0625), (20, 0.5)), "s2_loss": ((0, 2.77259), (20, 1.25))}
    assert curve


def test_no_info_lines_no_curve() -> None:
    curve = parse_caffe_log(["W1123 18:40:02.300001  4242 net.cpp:1] only warnings\n"])
    assert not curve and curve.train_loss == () and curve.test == {}
