from __future__ import annotations

import numpy as np

from ferry.formats.parity import make_samples
from ferry.signature import Signature, TensorSpec

SIG = Signature(
    inputs=(
        TensorSpec(name="f", datatype="FP32", shape=(-1, 3)),
        TensorSpec(name="i", datatype="INT64", shape=(-1, -1)),
        TensorSpec(name="b", datatype="BOOL", shape=(-1,)),
        TensorSpec(name="s", datatype="BYTES", shape=(-1, 1)),
    ),
    outputs=(TensorSpec(name="y", datatype="FP32", shape=(-1,)),),
)


def test_samples_follow_the_signature_and_are_reproducible():
    one, two = make_samples(SIG, 5, seed=1), make_samples(SIG, 5, seed=1)
    SIG.check_inputs(one)
    assert one["f"].shape == (5, 3) and one["i"].shape == (5, 4)
    assert one["s"].dtype == object and isinstance(one["s"][0, 0], bytes)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])
    assert not np.array_equal(make_samples(SIG, 5, seed=2)["f"], one["f"])
