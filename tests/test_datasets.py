"""Tests of the bundled example data sets."""

import hashlib
import re
from importlib import resources

import numpy as np
import pytest

from numpyro_gmm.datasets import list_examples, load_example


def test_list_examples():
    assert list_examples() == ["faithful", "galaxies"]


def test_faithful_values():
    x, columns = load_example("faithful")
    assert columns == ["eruptions", "waiting"]
    assert x.shape == (272, 2)
    assert x.dtype == np.float64
    np.testing.assert_array_equal(x[0], [3.6, 79.0])
    np.testing.assert_array_equal(x[1], [1.8, 54.0])
    np.testing.assert_array_equal(x[-1], [4.467, 74.0])
    # Column means as printed by R: colMeans(faithful)
    np.testing.assert_allclose(x.mean(axis=0), [3.487783, 70.897059], atol=5e-7)
    assert x[:, 0].min() == 1.6 and x[:, 0].max() == 5.1
    assert x[:, 1].min() == 43.0 and x[:, 1].max() == 96.0


def test_galaxies_values():
    x, columns = load_example("galaxies")
    assert columns == ["velocity"]
    assert x.shape == (82, 1)
    assert x.dtype == np.float64
    v = x[:, 0]
    assert v.min() == 9172.0 and v.max() == 34279.0
    assert np.all(np.diff(v) > 0), "MASS::galaxies is sorted and has no ties"
    # MASS's known typo is shipped unchanged (documented in README.md and the docstring).
    assert v[77] == 26690.0
    assert v[0] == 9172.0 and v[7] == 16084.0
    np.testing.assert_allclose(v.mean(), 20828.17073, rtol=1e-9)


def test_name_is_case_insensitive_and_result_is_fresh():
    x1, _ = load_example("Faithful")
    x1[:] = 0.0
    x2, _ = load_example("faithful")
    assert x2[0, 0] == 3.6


def test_unknown_example_lists_available():
    with pytest.raises(ValueError, match="unknown example 'iris'") as info:
        load_example("iris")
    assert "faithful" in str(info.value) and "galaxies" in str(info.value)


def test_readme_checksums_match_shipped_files():
    pkg = resources.files("numpyro_gmm.datasets")
    readme = pkg.joinpath("README.md").read_text(encoding="utf-8")
    listed = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.csv)$", readme, re.M)
    )
    assert set(listed) == {"faithful.csv", "galaxies.csv"}
    for name, digest in listed.items():
        assert hashlib.sha256(pkg.joinpath(name).read_bytes()).hexdigest() == digest, name
