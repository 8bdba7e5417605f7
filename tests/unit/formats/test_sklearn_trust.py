"""Which type names ferry lets skops rebuild (issue 5: unknown types refused)."""

from __future__ import annotations

import pytest

from ferry.formats.sklearn import is_allowed


@pytest.mark.parametrize("name", [
    "sklearn.tree._tree.Tree",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "numpy.float64",
    "scipy.sparse._csr.csr_matrix",
], ids=["tree", "encoder", "numpy-scalar", "sparse"])
def test_estimator_types_are_allowed(name):
    assert is_allowed(name)


@pytest.mark.parametrize("name", [
    "builtins.eval",
    "os.system",
    "mymodule.Doubler",
    "sklearnx.Evil",
    "numpy.f2py.compile",
    "numpy.lib.npyio.load",
    "numpy.load",
    "numpy.testing.assert_equal",
    "scipy.io.loadmat",
], ids=["eval", "os", "user-class", "lookalike-prefix", "f2py", "npyio", "np-load",
        "np-testing", "scipy-io"])
def test_other_types_are_refused(name):
    assert not is_allowed(name)
