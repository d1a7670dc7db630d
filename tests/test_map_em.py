"""MAP-EM: the log prior against scipy, monotone log joint, and the fixed point is the MAP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numpyro_gmm.fitting import fit_gaussian_mixture
from numpyro_gmm.mixture import params as gp
from numpyro_gmm.mixture.estep import component_log_prob
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior

from helpers import relative_error

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def make_prior(covariance_type, n_components, n_features, mean_prior, rng):
    """A random conjugate prior of the requested structure."""
    fields = {"weight_concentration": rng.uniform(1.0, 3.0, n_components)}
    if mean_prior != "flat":
        fields["mean_loc"] = rng.normal(size=n_features)
    if mean_prior == "coupled":
        fields["mean_precision"] = rng.uniform(0.1, 2.0)
    elif mean_prior == "independent":
        a = rng.normal(size=(n_features, n_features))
        fields["mean_covariance"] = a @ a.T + np.eye(n_features)
    if covariance_type in ("full", "tied"):
        fields["covariance_df"] = n_features + rng.uniform(0.5, 4.0)
        b = rng.normal(size=(n_features, n_features)) * 0.3
        fields["covariance_scale"] = b @ b.T + 0.5 * np.eye(n_features)
    else:
        fields["variance_concentration"] = rng.uniform(0.5, 3.0)
        fields["variance_rate"] = rng.uniform(0.1, 2.0)
    return GaussianMixturePrior(**fields)


def random_params(rng, covariance_type, k, d):
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        covariances = a @ np.swapaxes(a, -1, -2) + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        covariances = a @ a.T + np.eye(d)
    elif covariance_type == "diag":
        covariances = rng.uniform(0.5, 2.0, (k, d))
    else:
        covariances = rng.uniform(0.5, 2.0, k)
    params = gp.GMMParams(
        jnp.asarray(rng.dirichlet(np.ones(k))),
        jnp.asarray(rng.normal(size=(k, d))),
        gp.precisions_cholesky_from_covariances(jnp.asarray(covariances), covariance_type),
    )
    return params, covariances


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("mean_prior", ["coupled", "independent"])
def test_log_prior_matches_scipy(covariance_type, mean_prior, x64):
    rng = np.random.default_rng(0)
    k, d = 3, 2
    prior = make_prior(covariance_type, k, d, mean_prior, rng)
    params, covariances = random_params(rng, covariance_type, k, d)
    full = np.asarray(gp.full_covariances(covariances, covariance_type, k, d))
    expected = scipy.stats.dirichlet(prior.weight_concentration).logpdf(np.asarray(params.weights))
    for j in range(k):
        mean_cov = (
            full[j] / prior.mean_precision if mean_prior == "coupled" else prior.mean_covariance
        )
        expected += scipy.stats.multivariate_normal(prior.mean_loc, mean_cov).logpdf(
            params.means[j]
        )
    if covariance_type in ("full", "tied"):
        iw = scipy.stats.invwishart(df=prior.covariance_df, scale=prior.covariance_scale)
        expected += sum(iw.logpdf(c) for c in np.reshape(covariances, (-1, d, d)))
    else:
        expected += (
            scipy.stats.invgamma(prior.variance_concentration, scale=prior.variance_rate)
            .logpdf(covariances)
            .sum()
        )
    actual = log_prior(
        params,
        GaussianMixturePrior(*(None if v is None else jnp.asarray(v) for v in prior)),
        covariance_type,
    )
    assert float(actual) == pytest.approx(expected, rel=1e-10)


def log_joint(x, params, prior, covariance_type):
    log_prob = component_log_prob(x, params, covariance_type)
    return jnp.sum(jax.nn.logsumexp(log_prob, axis=1)) + log_prior(params, prior, covariance_type)


def as_jax_prior(prior):
    return GaussianMixturePrior(*(None if v is None else jnp.asarray(v) for v in prior))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    mean_prior=st.sampled_from(["flat", "coupled", "independent"]),
    scale=st.floats(0.05, 20.0),
)
def test_map_em_never_decreases_the_log_joint(seed, covariance_type, mean_prior, scale):
    rng = np.random.default_rng(seed)
    k, d, n = 3, 2, 60
    x = rng.normal(size=(n, d)) * scale + rng.integers(0, 3, (n, 1)) * scale * 2
    prior = make_prior(covariance_type, k, d, mean_prior, rng)
    # The bare engine gives no warnings (a short run that stops at max_iter or empties a
    # component is fine here).
    with jax.enable_x64(True):
        result = fit_gaussian_mixture(
            jnp.asarray(x),
            k,
            covariance_type=covariance_type,
            rng_key=seed % 1000,
            init_params="random_from_data",
            max_iter=25,
            tol=1e-14,
            reg_covar=1e-9,
            prior=as_jax_prior(prior),
        )
    trace = result.trace[0][np.isfinite(result.trace[0])]
    assert trace.size >= 2
    # Per-sample objective: allow float64 round-off only.
    assert np.all(np.diff(trace) >= -1e-10 * np.maximum(1.0, np.abs(trace[1:])))
    assert np.isfinite(result.objective)
    assert all(np.isfinite(leaf).all() for leaf in result.params)


def pack(params, covariance_type):
    """Unconstrained vector: weight logits, means, log-Cholesky of the covariances."""
    covariances = gp.covariances_from_precisions_cholesky(
        params.precisions_cholesky, covariance_type
    )
    if covariance_type in ("full", "tied"):
        lower = jnp.linalg.cholesky(covariances)
        diag = jnp.log(jnp.diagonal(lower, axis1=-2, axis2=-1))
        rows, cols = np.tril_indices(lower.shape[-1], -1)
        cov_part = jnp.concatenate([diag.ravel(), lower[..., rows, cols].ravel()])
    else:
        cov_part = jnp.log(covariances).ravel()
    return jnp.concatenate([jnp.log(params.weights), params.means.ravel(), cov_part])


def unpack(vector, covariance_type, k, d):
    weights = jax.nn.softmax(vector[:k])
    means = vector[k : k + k * d].reshape(k, d)
    rest = vector[k + k * d :]
    if covariance_type in ("full", "tied"):
        batch = (k,) if covariance_type == "full" else ()
        n_diag = int(np.prod(batch)) * d
        rows, cols = np.tril_indices(d, -1)
        lower = jnp.zeros((*batch, d, d))
        lower = lower.at[..., rows, cols].set(rest[n_diag:].reshape(*batch, -1))
        lower = lower + jnp.exp(rest[:n_diag].reshape(*batch, d))[..., None] * jnp.eye(d)
        covariances = lower @ jnp.swapaxes(lower, -1, -2)
    else:
        covariances = jnp.exp(rest).reshape((k, d) if covariance_type == "diag" else (k,))
    return gp.GMMParams(
        weights, means, gp.precisions_cholesky_from_covariances(covariances, covariance_type)
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("mean_prior", ["coupled", "independent"])
def test_map_em_fixed_point_is_the_numerical_map(covariance_type, mean_prior, x64):
    rng = np.random.default_rng(11)
    k, d, n = 2, 2, 80
    x = np.concatenate([rng.normal(size=(n // 2, d)), rng.normal(size=(n // 2, d)) * 0.7 + 4])
    prior = as_jax_prior(make_prior(covariance_type, k, d, mean_prior, rng))
    result = fit_gaussian_mixture(
        jnp.asarray(x),
        k,
        covariance_type=covariance_type,
        init_params="kmeans",
        max_iter=5000,
        tol=1e-15,
        reg_covar=1e-12,
        prior=prior,
    )
    xj = jnp.asarray(x)

    def negative(vector):
        return -log_joint(xj, unpack(vector, covariance_type, k, d), prior, covariance_type)

    value_and_grad = jax.jit(jax.value_and_grad(negative))
    em_vector = pack(result.params, covariance_type)
    # The EM fixed point is a stationary point of the log joint ...
    _, gradient = value_and_grad(em_vector)
    assert np.max(np.abs(gradient)) < 1e-5
    # ... and a direct numerical maximization from a perturbed start finds the same point.
    start = np.asarray(em_vector) + rng.normal(scale=0.2, size=em_vector.shape)
    optimum = scipy.optimize.minimize(
        lambda v: tuple(np.asarray(a, float) for a in value_and_grad(jnp.asarray(v))),
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15},
    )
    numerical = unpack(jnp.asarray(optimum.x), covariance_type, k, d)
    assert -optimum.fun == pytest.approx(result.objective, rel=1e-9)
    order = np.argsort(np.asarray(numerical.means)[:, 0])
    em_order = np.argsort(result.params.means[:, 0])
    assert relative_error(np.asarray(numerical.means)[order], result.params.means[em_order]) < 1e-4
    assert (
        relative_error(np.asarray(numerical.weights)[order], result.params.weights[em_order]) < 1e-4
    )
