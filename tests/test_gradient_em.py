"""Gradient EM kernel, prune-and-merge and the over-parameterized fit (ALGORITHMS.md §2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from numpyro_gmm import GaussianMixture
from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
from numpyro_gmm.kernels import em, get_kernel, gradient_em
from numpyro_gmm.mixture.params import GMMParams, precisions_cholesky_from_covariances
from numpyro_gmm.overparameterized import default_n_components, prune_and_merge
from numpyro_gmm.pipeline import fit_mixture

from helpers import match_components, zscore


def _tolerance(dtype):
    return 2e-4 if dtype == np.float32 else 1e-10


def _problem(rng, n=53, d=3, k=4):
    x = rng.normal(size=(n, d)) * 2.0
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d)) * 2.0
    return x, weights, means


def _numpy_step(x, weights, means, eta, variance=1.0):
    """Independent float64 reference: psi, the gradient step on the means, EM weights."""
    squared = np.sum((x[:, None, :] - means[None]) ** 2, axis=-1)
    d = x.shape[1]
    log_joint = np.log(weights) - 0.5 * squared / variance - 0.5 * d * np.log(2 * np.pi * variance)
    log_norm = logsumexp(log_joint, axis=1)
    psi = np.exp(log_joint - log_norm[:, None])
    gradient = np.mean(psi[:, :, None] * (x[:, None, :] - means[None]), axis=0)
    return means + eta * gradient, psi.mean(axis=0), log_norm.sum(), psi


@pytest.mark.parametrize("covariance_type", ["spherical", "diag"])
def test_one_step_matches_the_formula(dtype, covariance_type):
    rng = np.random.default_rng(0)
    x, weights, means = _problem(rng)
    k, d = means.shape
    precisions = np.ones(k) if covariance_type == "spherical" else np.ones((k, d))
    params = GMMParams(*(jnp.asarray(a, dtype) for a in (weights, means, precisions)))
    step = gradient_em.build_kernel(covariance_type, 1e-6, 16, step_size=0.7)
    state, info = step(jax.random.key(0), gradient_em.init(params), jnp.asarray(x, dtype))
    expected_means, expected_weights, expected_ll, psi = _numpy_step(x, weights, means, 0.7)
    new = gradient_em.get_params(state)
    tol = _tolerance(dtype)
    np.testing.assert_allclose(new.means, expected_means, rtol=tol, atol=tol)
    np.testing.assert_allclose(new.weights, expected_weights, rtol=tol, atol=tol)
    np.testing.assert_allclose(info.objective, expected_ll, rtol=tol)
    np.testing.assert_allclose(info.counts, psi.sum(axis=0), rtol=tol, atol=tol)
    np.testing.assert_array_equal(new.precisions_cholesky, params.precisions_cholesky)
    assert bool(info.is_finite) and np.isfinite(info.objective)
    assert new.means.dtype == dtype


def test_weights_step_is_the_em_weights_step(dtype):
    rng = np.random.default_rng(1)
    x, weights, means = _problem(rng)
    params = GMMParams(jnp.asarray(weights, dtype), jnp.asarray(means, dtype), jnp.ones(4, dtype))
    xs = jnp.asarray(x, dtype)
    key = jax.random.key(0)
    grad_state, _ = gradient_em.build_kernel("spherical", 1e-6, 64)(
        key, gradient_em.init(params), xs
    )
    em_state, _ = em.build_kernel("spherical", 1e-6, 64)(key, em.init(params), xs)
    tol = _tolerance(dtype)
    np.testing.assert_allclose(grad_state.params.weights, em_state.params.weights, rtol=tol)


def test_em_variant_with_learned_covariance_is_exactly_em(dtype):
    """``mean_update="em"``, ``step_size=1`` and undamped covariances reproduce an EM step."""
    rng = np.random.default_rng(2)
    x, weights, means = _problem(rng)
    covariances = np.stack([np.eye(3) * s for s in (0.5, 1.0, 2.0, 3.0)])
    params = GMMParams(
        jnp.asarray(weights, dtype),
        jnp.asarray(means, dtype),
        precisions_cholesky_from_covariances(jnp.asarray(covariances, dtype), "full"),
    )
    xs = jnp.asarray(x, dtype)
    key = jax.random.key(0)
    step = gradient_em.build_kernel(
        "full",
        1e-6,
        64,
        step_size=1.0,
        learn_covariance=True,
        covariance_step_size=1.0,
        mean_update="em",
    )
    grad_state, grad_info = step(key, gradient_em.init(params), xs)
    em_state, em_info = em.build_kernel("full", 1e-6, 64)(key, em.init(params), xs)
    tol = 10 * _tolerance(dtype)
    for actual, expected in zip(grad_state.params, em_state.params, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad_info.objective, em_info.objective, rtol=tol)


def test_damped_covariance_step_stays_between_old_and_target():
    rng = np.random.default_rng(3)
    x, weights, means = _problem(rng)
    params = GMMParams(jnp.asarray(weights), jnp.asarray(means), jnp.full(4, 1.0 / np.sqrt(2.0)))
    key = jax.random.key(0)
    damped, _ = gradient_em.build_kernel(
        "spherical", 1e-6, 64, learn_covariance=True, covariance_step_size=0.25
    )(key, gradient_em.init(params), jnp.asarray(x))
    target, _ = gradient_em.build_kernel(
        "spherical", 1e-6, 64, learn_covariance=True, covariance_step_size=1.0
    )(key, gradient_em.init(params), jnp.asarray(x))
    variance = 1.0 / np.asarray(damped.params.precisions_cholesky) ** 2
    target_variance = 1.0 / np.asarray(target.params.precisions_cholesky) ** 2
    np.testing.assert_allclose(variance, 0.75 * 2.0 + 0.25 * target_variance, rtol=1e-5)


def test_kernel_is_registered_and_validates_options():
    assert get_kernel("gradient_em").build_kernel is gradient_em.build_kernel
    with pytest.raises(ValueError, match="mean_update"):
        gradient_em.build_kernel("spherical", 1e-6, 8, mean_update="newton")
    with pytest.raises(ValueError, match="covariance_step_size"):
        gradient_em.build_kernel("spherical", 1e-6, 8, covariance_step_size=0.0)


def test_default_n_components():
    assert [default_n_components(m) for m in (1, 2, 5, 10, 25)] == [1, 5, 25, 70, 242]
    with pytest.raises(ValueError):
        default_n_components(0)


def test_prune_by_weight_and_merge_within_radius():
    weights = np.array([0.3, 0.2, 0.001, 0.25, 0.249])
    means = np.array([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0], [10.0, 0.0], [10.0, 2.0]])
    covariances = np.array([1.0, 2.0, 1.0, 1.0, 0.5])
    out_w, out_mu, out_var, report = prune_and_merge(
        weights, means, covariances, "spherical", merge_radius=2.5
    )
    assert report.n_components_found == 2
    assert report.pruned == [2]
    assert report.groups == [[0, 1], [3, 4]]  # ordered by merged weight
    np.testing.assert_array_equal(report.assignment, [0, 0, -1, 1, 1])
    assert report.merged == [[0, 1], [3, 4]]
    kept = 1.0 - 0.001
    np.testing.assert_allclose(out_w, np.array([0.5, 0.499]) / kept)
    # Group {0, 1}: weighted mean and moment-matched spherical variance (tr / D).
    mean = (0.3 * means[0] + 0.2 * means[1]) / 0.5
    spread = (0.3 * np.sum((means[0] - mean) ** 2) + 0.2 * np.sum((means[1] - mean) ** 2)) / 0.5
    np.testing.assert_allclose(out_mu[0], mean)
    np.testing.assert_allclose(out_var[0], (0.3 * 1.0 + 0.2 * 2.0) / 0.5 + spread / 2)
    assert "pruned 1 component(s) [2]" in str(report)


def test_merged_full_covariance_is_the_moment_match():
    rng = np.random.default_rng(4)
    weights = np.array([0.2, 0.25, 0.55])
    means = np.array([[0.0, 0.0], [0.5, 0.2], [30.0, 0.0]])
    factors = rng.normal(size=(3, 2, 2))
    covariances = factors @ np.swapaxes(factors, -1, -2) + np.eye(2)
    out_w, out_mu, out_cov, report = prune_and_merge(weights, means, covariances, "full")
    assert report.groups == [[2], [0, 1]]
    mu = (0.2 * means[0] + 0.25 * means[1]) / 0.45
    second = (
        sum(
            w * (c + np.outer(m, m))
            for w, m, c in zip(weights[:2], means[:2], covariances[:2], strict=True)
        )
        / 0.45
    )
    np.testing.assert_allclose(out_mu[1], mu)
    np.testing.assert_allclose(out_cov[1], second - np.outer(mu, mu), atol=1e-12)
    np.testing.assert_allclose(out_cov[0], covariances[2])
    # diag keeps the diagonal of the same moment match.
    _, _, out_diag, _ = prune_and_merge(
        weights, means, np.diagonal(covariances, axis1=1, axis2=2), "diag", merge_radius=5.0
    )
    diag_second = (
        sum(
            w * (np.diag(c) + m**2)
            for w, m, c in zip(weights[:2], means[:2], covariances[:2], strict=True)
        )
        / 0.45
    )
    np.testing.assert_allclose(out_diag[1], diag_second - mu**2)


def test_default_radius_and_linkage():
    # Unit covariance: the default radius is 2.5, so 2.4 apart merge and 2.6 apart do not.
    weights = np.full(3, 1 / 3)
    means = np.array([[0.0], [2.4], [5.0]])
    _, _, _, report = prune_and_merge(weights, means, np.ones(3), "spherical")
    assert report.merge_radius == pytest.approx(2.5)
    assert report.groups == [[0, 1], [2]]
    # Single linkage chains through a light middle component; nearest-heavier does not.
    weights = np.array([0.45, 0.1, 0.45])
    means = np.array([[0.0], [2.4], [4.8]])
    _, _, _, single = prune_and_merge(weights, means, np.ones(3), "spherical")
    _, _, _, nearest = prune_and_merge(
        weights, means, np.ones(3), "spherical", linkage="nearest_heavier"
    )
    assert single.n_components_found == 1
    assert nearest.n_components_found == 2
    # Everything below the threshold: the heaviest survives.
    _, out_mu, _, report = prune_and_merge(
        np.array([0.5, 0.5]),
        np.array([[0.0], [9.0]]),
        np.ones(2),
        "spherical",
        weight_threshold=0.9,
    )
    assert report.n_components_found == 1 and report.pruned == [1]


def _separated_mixture(seed, m=5, d=2, n_per=100, separation=4.0):
    rng = np.random.default_rng(seed)
    while True:
        means = rng.normal(scale=separation * np.sqrt(d) * m ** (1 / d) / 1.5, size=(m, d))
        distances = np.linalg.norm(means[:, None] - means[None], axis=-1) + 1e9 * np.eye(m)
        if distances.min() >= separation * np.sqrt(d):
            break
    labels = rng.integers(0, m, n_per * m)
    return means[labels] + rng.normal(size=(n_per * m, d)), means


def _fit_gradient_em(x, m, **settings):
    """``method="gradient_em"`` with the theory's setting, the old ``fit_gradient_em`` defaults:
    fixed spherical unit covariances, polish tolerance 1e-6."""
    options = {"learn_covariance": False, **settings.pop("options", {})}
    settings = {"covariance_type": "spherical", "tol": 1e-6, **settings}
    return fit_mixture(jnp.asarray(x), m, method="gradient_em", options=options, **settings)


def _finite(trace):
    trace = np.asarray(trace)
    return trace[np.isfinite(trace)]


def _recovered(estimate, truth, tol):
    if estimate.shape != truth.shape:
        return False
    permutation = match_components(estimate, truth)
    return bool(np.max(np.linalg.norm(estimate[permutation] - truth, axis=-1)) <= tol)


def test_overparameterized_recovers_where_em_fails(dtype):
    m, tol = 5, np.sqrt(2.0)  # a quarter of the minimum separation 4 sqrt(2)
    em_recovered, gradient_recovered = [], []
    for seed in range(4):
        x, truth = _separated_mixture(seed)
        x = x.astype(dtype)
        # 600 gradient steps (the exploration always runs all of them), polish tol 1e-6.
        result = _fit_gradient_em(x, m, rng_key=seed, max_iter=600)
        assert result.extras["n_components_found"] == m
        assert result.params.means.dtype == dtype
        assert np.isfinite(result.objective)
        gradient_trace = result.extras["exploration"].best_trace()
        assert gradient_trace.shape == (600,) and np.all(np.isfinite(gradient_trace))
        assert result.polish_trace is not None
        assert _finite(result.polish_trace[result.best_restart]).size >= 1
        assert result.extras["n_components_fit"] == 25
        gradient_recovered.append(_recovered(np.asarray(result.params.means), truth, tol))
        baseline = fit_gaussian_mixture(
            jnp.asarray(x),
            m,
            covariance_type="spherical",
            rng_key=seed,
            init_params="random_from_data",
            initial=InitialValues(precisions_cholesky=np.ones(m, dtype)),
            max_iter=200,
            kernel="gradient_em",
            kernel_options={"mean_update": "em", "step_size": 1.0},
        )
        em_recovered.append(_recovered(np.asarray(baseline.params.means), truth, tol))
    assert all(gradient_recovered)
    assert not all(em_recovered)


def test_gradient_em_method_with_learned_covariance():
    rng = np.random.default_rng(5)
    means = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    labels = rng.integers(0, 3, 600)
    x = means[labels] + 0.5 * rng.normal(size=(600, 2))
    result = _fit_gradient_em(
        x.astype(np.float32), 3, options={"learn_covariance": True}, rng_key=1, max_iter=300
    )
    assert result.extras["n_components_found"] == 3
    assert _recovered(np.asarray(result.params.means), means, 0.5)
    np.testing.assert_allclose(result.covariances, 0.25, rtol=0.3)


def test_gradient_em_method_rejects_bad_input():
    with pytest.raises(ValueError, match="n_components_fit"):
        _fit_gradient_em(np.zeros((20, 2)), 5, options={"n_components_fit": 3})
    # fit_mixture takes validated data: the entry points that validate reject NaN.
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixture(2, method="gradient_em").fit(np.full((20, 2), np.nan))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_to_n_components_merges_the_closest_pair_and_splits_the_widest(covariance_type):
    from numpyro_gmm.mixture.covariance import covariance_shape
    from numpyro_gmm.overparameterized import to_n_components

    weights = np.array([0.3, 0.3, 0.4])
    means = np.array([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0]])
    shape = covariance_shape(covariance_type, 3, 2)
    full = np.eye(2)[None].repeat(3, 0)
    covariances = {
        "full": full,
        "tied": np.eye(2),
        "diag": np.ones((3, 2)),
        "spherical": np.ones(3),
    }[covariance_type]
    assert covariances.shape == shape
    w, m, c, changes = to_n_components(weights, means, covariances, covariance_type, 2)
    assert changes == ["merged components 0 and 1"]
    np.testing.assert_allclose(w, [0.6, 0.4])
    np.testing.assert_allclose(m, [[0.25, 0.0], [10.0, 0.0]])
    assert c.shape == covariance_shape(covariance_type, 2, 2)
    # Splitting keeps the first two moments of the split component.
    w4, m4, c4, changes = to_n_components(weights, means, covariances, covariance_type, 4)
    assert len(changes) == 1 and w4.shape == (4,) and np.isclose(w4.sum(), 1.0)
    assert c4.shape == covariance_shape(covariance_type, 4, 2)
    np.testing.assert_allclose(w4 @ m4, weights @ means)


def test_gradient_em_explores_under_the_models_priors_in_many_dimensions():
    """Breast cancer (569 x 30, standardized), the builder model with K = 2: the
    exploration's n = 5 components made singular covariances by maximum likelihood and
    every restart failed; under the model's mean and covariance priors none does."""
    import warnings

    import sklearn.datasets

    import numpyro_gmm as ngm

    z = zscore(sklearn.datasets.load_breast_cancer().data)
    model = ngm.models.gaussian_mixture(2, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        result = ngm.fit(model, z, method="gradient_em", num_restarts=1, rng_key=0, max_iter=30)
    exploration = result.fit.extras["exploration"]
    assert not exploration.restarts.failed.any()
    assert result.params["weights"].shape == (2,) and np.isfinite(result.objective)
