"""Landscape diagnostic, restart atlas and the worked 1-D check of ALGORITHMS.md §3."""

import numpy as np
import pytest

from numpyro_gmm.diagnostics import (
    GroupKind,
    landscape_diagnostic,
    match_means,
    population_gradient_descent,
    population_kl,
    restart_atlas,
)

TRUTH = np.array([-1.5, 1.5, 6.0])
SIGMA = 0.5


def test_worked_example_bad_local_minimum():
    result = population_gradient_descent([0.0, 5.8, 6.2], TRUTH, SIGMA)
    assert result.converged
    np.testing.assert_allclose(result.means.ravel(), [-0.0035, 5.8769, 6.1094], atol=5e-3)
    assert result.kl == pytest.approx(2.769, abs=2e-3)
    diagnostic = landscape_diagnostic(result.means, TRUTH, SIGMA)
    kinds = {(g.kind, g.fitted, g.reference) for g in diagnostic.groups}
    assert kinds == {
        (GroupKind.ONE_FITS_MANY, (0,), (0, 1)),
        (GroupKind.MANY_FIT_ONE, (1, 2), (2,)),
    }
    assert diagnostic.is_structured and not diagnostic.all_matched
    assert diagnostic.tol == pytest.approx(0.75)  # min(Delta / 4, 2 sigma), Delta = 3
    assert diagnostic.summary() == "ONE_FITS_MANY{0,1} + MANY_FIT_ONE{2}"
    assert "ONE_FITS_MANY(fitted=[0], reference=[0, 1]" in str(diagnostic)


def test_worked_example_global_minimum():
    result = population_gradient_descent([-1.4, 1.6, 5.9], TRUTH, SIGMA)
    assert result.converged
    np.testing.assert_allclose(result.means.ravel(), TRUTH, atol=1e-4)
    assert abs(result.kl) < 1e-8
    diagnostic = landscape_diagnostic(result.means, TRUTH, SIGMA)
    assert diagnostic.all_matched and diagnostic.count("matched") == 3


def test_population_kl_is_zero_at_truth_and_positive_elsewhere():
    assert population_kl(TRUTH, TRUTH, SIGMA) == pytest.approx(0.0, abs=1e-12)
    assert population_kl(TRUTH + 0.3, TRUTH, SIGMA) > 0.0


TRUTH_2D = np.array([[0.0, 0.0], [3.0, 0.0], [20.0, 20.0], [0.0, 20.0]])


def _kinds(diagnostic):
    return sorted((g.kind.value, g.fitted, g.reference) for g in diagnostic.groups)


def test_2d_matched():
    fitted = TRUTH_2D[[2, 0, 3, 1]] + 0.1
    diagnostic = landscape_diagnostic(fitted, TRUTH_2D, 1.0)
    assert set(_kinds(diagnostic)) == {
        ("matched", (1,), (0,)),
        ("matched", (3,), (1,)),
        ("matched", (0,), (2,)),
        ("matched", (2,), (3,)),
    }


def test_2d_one_fits_many_and_many_fit_one():
    fitted = np.array([[1.6, 0.1], [20.0, 20.2], [19.8, 19.9], [0.1, 20.0]])
    diagnostic = landscape_diagnostic(fitted, TRUTH_2D, 1.0)
    assert _kinds(diagnostic) == [
        ("many-fit-one", (1, 2), (2,)),
        ("matched", (3,), (3,)),
        ("one-fits-many", (0,), (0, 1)),
    ]
    # The responsibilities of the one-fits-many mean are shared by both true means.
    np.testing.assert_allclose(diagnostic.shares[0, :2], [0.5, 0.5], atol=0.05)


def test_2d_uncovered_with_fewer_fitted_means():
    fitted = TRUTH_2D[[0, 1, 2]] + 0.05
    diagnostic = landscape_diagnostic(fitted, TRUTH_2D, 1.0)
    assert diagnostic.count(GroupKind.UNCOVERED) == 1
    (uncovered,) = diagnostic.of_kind("uncovered")
    assert uncovered.reference == (3,) and uncovered.fitted == ()
    assert uncovered.distance == pytest.approx(np.linalg.norm(TRUTH_2D[3] - fitted[0]))
    assert diagnostic.count("matched") == 3
    assert not diagnostic.edges[:, 3].any()


def test_2d_orphan():
    fitted = np.vstack([TRUTH_2D, [[10.0, 10.0]]])
    weights = np.array([0.25, 0.25, 0.25, 0.2499, 0.0001])
    diagnostic = landscape_diagnostic(fitted, TRUTH_2D, 1.0, fitted_weights=weights)
    (orphan,) = diagnostic.of_kind(GroupKind.ORPHAN)
    assert orphan.fitted == (4,) and orphan.reference == ()
    assert np.isnan(diagnostic.responsibilities[4]).all()
    assert diagnostic.count("matched") == 4


def test_2d_unstructured():
    truth = np.array([[0.0, 0.0], [10.0, 0.0]])
    fitted = np.array([[4.0, 0.0], [10.0, 0.0]])
    diagnostic = landscape_diagnostic(fitted, truth, 1.0)
    kinds = _kinds(diagnostic)
    assert ("unstructured", (0,), (0,)) in kinds and ("matched", (1,), (1,)) in kinds
    assert not diagnostic.is_structured


def test_monte_carlo_path_in_3d():
    truth = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 15.0, 0.0]])
    fitted = np.array([[1.5, 0.0, 0.0], [0.0, 15.2, 0.0], [0.0, 14.8, 0.0]])
    diagnostic = landscape_diagnostic(fitted, truth, 1.0, n_mc=2000, rng=1)
    assert diagnostic.summary() == "ONE_FITS_MANY{0,1} + MANY_FIT_ONE{2}"


def test_match_means():
    reference = np.array([[0.0, 0.0], [5.0, 5.0]])
    permutation, distance = match_means(reference[::-1] + 0.1, reference)
    np.testing.assert_array_equal(permutation, [1, 0])
    assert distance == pytest.approx(np.sqrt(0.02))


def test_restart_atlas_groups_optima_and_explains_the_worse_one():
    good = TRUTH
    bad = np.array([-0.0035, 5.8769, 6.1094])
    rng = np.random.default_rng(0)
    restarts = np.stack(
        [
            good + 1e-3 * rng.normal(size=3),
            bad,
            good[[2, 0, 1]],
            bad[[1, 0, 2]] + 1e-3,
            good,
        ]
    )
    objectives = np.array([-1.0, -3.769, -1.0001, -3.7691, -1.00005])
    atlas = restart_atlas(restarts, objectives, sigma=SIGMA)
    assert len(atlas.optima) == 2
    assert atlas.best.restarts == [0, 4, 2] and atlas.best.diagnostic.all_matched
    worse = atlas.optima[1]
    assert worse.restarts == [1, 3] and worse.n_restarts == 2
    assert worse.diagnostic.count("one-fits-many") == 1
    assert worse.diagnostic.count("many-fit-one") == 1
    text = str(atlas)
    assert "2 distinct" in text and "ONE_FITS_MANY" in text


def test_bad_inputs():
    with pytest.raises(ValueError, match="sigma"):
        landscape_diagnostic(TRUTH, TRUTH, 0.0)
    with pytest.raises(ValueError, match="dimensions"):
        landscape_diagnostic(np.zeros((2, 2)), np.zeros((2, 3)), 1.0)
    with pytest.raises(ValueError, match="method"):
        landscape_diagnostic(TRUTH, TRUTH, 1.0, method="simpson")
