"""Parameter conversions and log-densities against scipy and scikit-learn."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from sklearn.mixture import GaussianMixture as SKGaussianMixture

from numpyro_gmm.mixture import params as gp
from numpyro_gmm.mixture.estep import component_log_prob

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def random_covariances(rng, covariance_type, k, d):
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        return a @ np.swapaxes(a, -1, -2) + np.eye(d)
    if covariance_type == "tied":
        a = rng.normal(size=(d, d))
        return a @ a.T + np.eye(d)
    if covariance_type == "diag":
        return rng.uniform(0.5, 2.0, size=(k, d))
    return rng.uniform(0.5, 2.0, size=k)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_conversions_round_trip(covariance_type, x64):
    rng = np.random.default_rng(1)
    covariances = random_covariances(rng, covariance_type, 3, 4)
    factor = gp.precisions_cholesky_from_covariances(covariances, covariance_type)
    back = gp.covariances_from_precisions_cholesky(factor, covariance_type)
    np.testing.assert_allclose(back, covariances, rtol=1e-10)
    precisions = gp.precisions_from_precisions_cholesky(factor, covariance_type)
    if covariance_type in ("full", "tied"):
        np.testing.assert_allclose(precisions, np.linalg.inv(covariances), rtol=1e-9)
        assert np.allclose(np.tril(np.asarray(factor), -1), 0.0)  # upper-triangular
    again = gp.precisions_cholesky_from_precisions(precisions, covariance_type)
    np.testing.assert_allclose(again, factor, rtol=1e-9, atol=1e-12)


def test_non_positive_definite_covariance_gives_non_finite_factor():
    bad = np.array([[[1.0, 2.0], [2.0, 1.0]]])
    assert not np.isfinite(gp.precisions_cholesky_from_covariances(bad, "full")).all()
    assert not np.isfinite(
        gp.precisions_cholesky_from_covariances(np.array([-1.0]), "spherical")
    ).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_component_log_prob_matches_scipy(covariance_type, dtype):
    rng = np.random.default_rng(2)
    k, d = 3, 4
    covariances = random_covariances(rng, covariance_type, k, d)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d))
    x = rng.normal(size=(50, d)) * 2
    params = gp.GMMParams(
        jnp.asarray(weights, dtype),
        jnp.asarray(means, dtype),
        gp.precisions_cholesky_from_covariances(jnp.asarray(covariances, dtype), covariance_type),
    )
    actual = np.asarray(component_log_prob(jnp.asarray(x, dtype), params, covariance_type))
    full = np.asarray(gp.full_covariances(covariances, covariance_type, k, d))
    expected = np.stack(
        [
            np.log(weights[j]) + scipy.stats.multivariate_normal(means[j], full[j]).logpdf(x)
            for j in range(k)
        ],
        axis=1,
    )
    tolerance = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(actual, expected, rtol=tolerance)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_n_parameters_matches_scikit_learn(covariance_type):
    reference = SKGaussianMixture(5, covariance_type=covariance_type)
    reference.means_ = np.zeros((5, 3))
    assert gp.n_parameters(5, 3, covariance_type) == reference._n_parameters()
