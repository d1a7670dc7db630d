"""EM from identical initial parameters equals scikit-learn's GaussianMixture.

Tolerances: float64, 1e-6 relative (observed ~1e-13). float32 against scikit-learn's float64
run: the per-iteration lower bounds within 1e-5 relative and the parameters within 2e-3
relative after ``T = 10`` iterations (float32 round-off, about 1e-7 per operation, grows
through the iterations of a well-conditioned problem to about 1e-4 on the covariances).
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SKConvergenceWarning
from sklearn.mixture import GaussianMixture as SKGaussianMixture

from numpyro_gmm import ConvergenceWarning, GaussianMixture
from numpyro_gmm.fitting import InitialValues
from numpyro_gmm.mixture.params import precisions_cholesky_from_precisions
from numpyro_gmm.pipeline import fit_mixture

from helpers import relative_error

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
N_ITER = 10


def initial_precisions(x, covariance_type, k, rng):
    d = x.shape[1]
    scales = rng.uniform(0.5, 2.0, size=k)
    if covariance_type == "full":
        return np.stack([np.linalg.inv(np.cov(x.T) * s) for s in scales])
    if covariance_type == "tied":
        return np.linalg.inv(np.cov(x.T))
    if covariance_type == "diag":
        return scales[:, None] / np.var(x, axis=0)[None, :].repeat(k, 0)
    return scales / np.var(x) * np.ones(k) * np.ones(d).mean()


def random_start(x, covariance_type, k, seed):
    """Initial weights, means (data points) and precisions shared by both libraries."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = x[rng.choice(len(x), k, replace=False)]
    return weights, means, initial_precisions(x, covariance_type, k, rng)


def reference_run(x, covariance_type, weights, means, precisions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SKConvergenceWarning)
        return SKGaussianMixture(
            len(weights),
            covariance_type=covariance_type,
            max_iter=N_ITER,
            tol=0.0,
            weights_init=weights,
            means_init=means,
            precisions_init=precisions,
        ).fit(x)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_matches_scikit_learn_from_identical_start(covariance_type, dtype, blobs):
    x, _, _ = blobs
    k = 4
    weights, means, precisions = random_start(x, covariance_type, k, seed=3)
    reference = reference_run(x, covariance_type, weights, means, precisions)

    initial = InitialValues(
        weights, means, precisions_cholesky_from_precisions(precisions, covariance_type)
    )
    # The pipeline (not the bare engine) gives the warnings.
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = fit_mixture(
            jnp.asarray(x, dtype),
            k,
            covariance_type=covariance_type,
            init_params="k-means++",
            initial=initial,
            max_iter=N_ITER,
            tol=0.0,
        )
    assert result.params.means.dtype == dtype
    bound_tol, param_tol = (1e-6, 1e-6) if dtype == np.float64 else (1e-5, 2e-3)
    assert relative_error(result.trace[0], reference.lower_bounds_) < bound_tol
    assert relative_error(result.params.weights, reference.weights_) < param_tol
    assert relative_error(result.params.means, reference.means_) < param_tol
    assert relative_error(result.covariances, reference.covariances_) < param_tol
    assert (
        relative_error(result.params.precisions_cholesky, reference.precisions_cholesky_)
        < param_tol
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_facade_matches_scikit_learn_attributes(covariance_type, x64, blobs):
    x, _, _ = blobs
    k = 4
    weights, means, precisions = random_start(x, covariance_type, k, seed=4)
    reference = reference_run(x, covariance_type, weights, means, precisions)
    with pytest.warns(ConvergenceWarning):
        ours = GaussianMixture(
            k,
            covariance_type=covariance_type,
            max_iter=N_ITER,
            tol=0.0,
            weights_init=weights,
            means_init=means,
            precisions_init=precisions,
        ).fit(x)
    assert ours.n_iter_ == reference.n_iter_ == N_ITER
    assert relative_error(ours.lower_bounds_, reference.lower_bounds_) < 1e-6
    assert relative_error(ours.lower_bound_, reference.lower_bound_) < 1e-6
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert relative_error(getattr(ours, name), getattr(reference, name)) < 1e-6, name
    np.testing.assert_allclose(ours.score_samples(x), reference.score_samples(x), rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(x), reference.predict_proba(x), atol=1e-9)
    np.testing.assert_array_equal(ours.predict(x), reference.predict(x))
    assert ours.bic(x) == pytest.approx(reference.bic(x), rel=1e-9)
    assert ours.aic(x) == pytest.approx(reference.aic(x), rel=1e-9)


def test_converged_run_stops_like_scikit_learn(x64, blobs):
    x, _, _ = blobs
    rng = np.random.default_rng(5)
    weights = np.full(4, 0.25)
    means = x[rng.choice(len(x), 4, replace=False)]
    precisions = initial_precisions(x, "full", 4, rng)
    reference = SKGaussianMixture(
        4,
        tol=1e-4,
        max_iter=500,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    ).fit(x)
    ours = GaussianMixture(
        4,
        tol=1e-4,
        max_iter=500,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
    ).fit(x)
    assert ours.converged_ and reference.converged_
    assert ours.n_iter_ == reference.n_iter_
    assert relative_error(ours.means_, reference.means_) < 1e-6
