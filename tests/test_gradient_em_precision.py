"""Float32 accuracy of gradient EM's matmul E-step for data far from the origin.

:func:`numpyro_gmm.kernels.gradient_em.spherical_mean_statistics` forms squared distances as
``|y|^2 - 2 y . m + |m|^2``. Expanded about the origin this cancels catastrophically in
float32 once the data sit far from it; the kernel now expands about a common reference point
(the weighted mean of the means). These tests compare the float32 statistics with a float64
reference computed independently (explicit differences, numpy / scipy) on the *same*
float32-rounded data and parameters, so that only the arithmetic of the E-step is measured,
not the rounding of the inputs.

Measured float32 errors (N = 3000, three unit-variance clusters 8 apart in 3-D, chunks of 512
rows; max abs error, ll as relative error), offsets 0 / 1e2 / 1e3 / 3e3:

====================  ==========================================  ===========================
statistic             origin expansion (before)                   shifted expansion (after)
====================  ==========================================  ===========================
counts                5.8e-5 / 3.9e-4 / 0.14 / 0.76                5e-5 to 1.1e-4
first moments         2.8e-4 / 8.0e-3 / 0.73 / 3.3                 3e-4 to 6.1e-4
log-likelihood (rel)  6.6e-9 / 2.2e-5 / 1.3e-3 / 6.1e-3            7e-9 to 1.1e-7
per-row resp. (600)   5.0e-7 / 1.5e-5 / 7.7e-4 / 7.0e-3            4e-7 to 4.6e-7
per-row log p(x_n)    9.0e-6 / 3.0e-3 / 0.32 / 3.0                 6e-6 to 7.2e-6
====================  ==========================================  ===========================

After the shift the errors no longer grow with the offset: they are the float32 floor of
summing N responsibility-weighted terms (about ``eps N`` in the counts, ``eps N |mu - c|``
in the first moments, ``eps`` relative in the log-likelihood). The tolerances below sit about
ten times above that floor and far below the pre-fix errors at 1e3 and 3e3.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from numpyro_gmm.kernels import gradient_em
from numpyro_gmm.mixture.params import GMMParams

N_SAMPLES = 3000
CHUNK_SIZE = 512
EPS32 = float(np.finfo(np.float32).eps)
CENTRES = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])
OFFSETS = [0.0, 1e2, 1e3, 3e3]

# Tolerances (about 10x the measured float32 floor of the shifted expansion, see above).
COUNTS_ATOL = 1e-6 * N_SAMPLES  # floor ~4e-8 N
FIRST_ATOL = 2e-6 * N_SAMPLES  # floor ~2e-7 N  (eps N |mu - c| with |mu - c| ~ 5)
LOG_LIKELIHOOD_RTOL = 1e-6  # floor ~1e-7 (about one eps)
RESPONSIBILITY_ATOL = 5e-6  # per row; floor ~5e-7
LOG_DENSITY_ATOL = 5e-5  # per row, |log p(x_n)| up to ~30; floor ~7e-6 (a few eps |log p|)


def _problem(offset, n_samples=N_SAMPLES):
    """Three well separated unit-variance clusters shifted by ``offset``, rounded to float32.

    The means are perturbed away from the centres so that the responsibilities are not
    trivially one-hot near the cluster boundaries.
    """
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(CENTRES), n_samples)
    x = CENTRES[labels] + rng.normal(size=(n_samples, 3)) + offset
    means = CENTRES + offset + 0.7 * rng.normal(size=CENTRES.shape)
    weights = np.array([0.3, 0.3, 0.4])
    return x.astype(np.float32), weights.astype(np.float32), means.astype(np.float32)


def _reference_statistics(x, weights, means, variance=1.0):
    """Float64 E-step with explicit differences: responsibilities, counts, first, ll."""
    x, weights, means = (np.asarray(a, np.float64) for a in (x, weights, means))
    differences = x[:, None, :] - means[None, :, :]
    squared = np.sum(differences**2, axis=-1)
    d = x.shape[1]
    log_joint = np.log(weights) - 0.5 * squared / variance - 0.5 * d * np.log(2 * np.pi * variance)
    log_norm = logsumexp(log_joint, axis=1)
    responsibilities = np.exp(log_joint - log_norm[:, None])
    first = np.einsum("nk,nkd->kd", responsibilities, differences)
    return responsibilities, responsibilities.sum(axis=0), first, log_norm


def _params(weights, means, dtype):
    k = means.shape[0]
    return GMMParams(
        weights=jnp.asarray(weights, dtype),
        means=jnp.asarray(means, dtype),
        precisions_cholesky=jnp.ones(k, dtype),
    )


@pytest.mark.parametrize("offset", OFFSETS)
def test_fast_spherical_statistics_are_accurate_far_from_the_origin(offset):
    x, weights, means = _problem(offset)
    params = _params(weights, means, jnp.float32)
    stats = jax.jit(gradient_em.spherical_mean_statistics, static_argnums=2)(
        jnp.asarray(x), params, CHUNK_SIZE
    )
    assert stats.counts.dtype == jnp.float32 and stats.first.dtype == jnp.float32
    _, counts, first, log_norm = _reference_statistics(x, weights, means)
    log_likelihood = log_norm.sum()

    counts_error = np.max(np.abs(np.asarray(stats.counts, np.float64) - counts))
    first_error = np.max(np.abs(np.asarray(stats.first, np.float64) - first))
    ll_error = abs(float(stats.log_likelihood) - log_likelihood) / abs(log_likelihood)
    assert counts_error <= COUNTS_ATOL, counts_error
    assert first_error <= FIRST_ATOL, first_error
    assert ll_error <= LOG_LIKELIHOOD_RTOL, ll_error


@pytest.mark.parametrize("offset", OFFSETS)
def test_fast_spherical_responsibilities_per_row(offset):
    """Per-row responsibilities and log-densities: the statistics of one-row data sets."""
    x, weights, means = _problem(offset, n_samples=600)
    params = _params(weights, means, jnp.float32)

    def one_row(row):
        return gradient_em.spherical_mean_statistics(row[None, :], params, 1)

    stats = jax.jit(jax.vmap(one_row))(jnp.asarray(x))
    responsibilities, _, first, log_norm = _reference_statistics(x, weights, means)

    responsibility_error = np.max(np.abs(np.asarray(stats.counts, np.float64) - responsibilities))
    log_norm_error = np.max(np.abs(np.asarray(stats.log_likelihood, np.float64) - log_norm))
    assert responsibility_error <= RESPONSIBILITY_ATOL, responsibility_error
    assert log_norm_error <= LOG_DENSITY_ATOL, log_norm_error


def _fit(x, params, n_steps):
    step = gradient_em.build_kernel("spherical", 1e-6, CHUNK_SIZE)

    def body(state, _):
        state, info = step(jax.random.key(0), state, x)
        return state, info.objective

    state, objectives = jax.lax.scan(body, gradient_em.init(params), None, length=n_steps)
    return gradient_em.get_params(state), objectives


def test_float32_fit_far_from_the_origin_matches_float64():
    """A whole gradient-EM fit at offset 1e3: float32 means within a few ulps of 1e3."""
    offset, n_steps = 1e3, 200
    x, weights, means = _problem(offset)
    initial_weights = np.full(3, 1.0 / 3.0, np.float32)
    fit32 = jax.jit(_fit, static_argnums=2)
    params32, objectives32 = fit32(
        jnp.asarray(x), _params(initial_weights, means, jnp.float32), n_steps
    )
    assert params32.means.dtype == jnp.float32
    with jax.enable_x64(True):
        fit64 = jax.jit(_fit, static_argnums=2)
        params64, objectives64 = fit64(
            jnp.asarray(x, jnp.float64),
            _params(initial_weights, means, jnp.float64),
            n_steps,
        )
        params64 = jax.tree.map(np.asarray, params64)
        objectives64 = np.asarray(objectives64)
    assert params64.means.dtype == np.float64
    # The float64 fit has converged (and found the three clusters).
    assert np.max(np.abs(params64.means - (CENTRES + offset))) < 0.2
    ulp = float(np.spacing(np.float32(offset)))  # 6.1e-5 at 1e3
    means_error = np.max(np.abs(np.asarray(params32.means, np.float64) - params64.means))
    # Measured: 1.5 ulp with the shifted expansion, 3.5 ulp with the origin expansion (whose
    # final objective is also off by 7e-4 relative, against 4e-8 now).
    assert means_error <= 3 * ulp, (means_error / ulp, ulp)
    np.testing.assert_allclose(np.asarray(params32.weights), params64.weights, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(objectives32)[-1], objectives64[-1], rtol=LOG_LIKELIHOOD_RTOL
    )
