"""One 2x3 sample tensor per V2 datatype for the codec tests: the extremes of each integer
type (where a wrong width or sign would show), fractions for floats, non-ASCII and empty
BYTES elements."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ferry.signature import DATATYPES


def _sample(datatype: str) -> np.ndarray:
    dtype = DATATYPES[datatype]
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        return np.array([[b"a", "é".encode(), b""], [b"xyz" * 50, b"\x00z", b"1"]], dtype=object)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.array([[info.min, 0, 1], [2, info.max - 1, info.max]], dtype=dtype)
    return np.array([[-1.5, 0, 0.25], [2, 3.5, -0.125]], dtype=dtype)


@pytest.fixture
def sample() -> Callable[[str], np.ndarray]:
    """``sample(datatype)``: a fresh 2x3 array of that datatype's numpy dtype."""
    return _sample
