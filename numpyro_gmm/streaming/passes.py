"""The device programs of streaming EM: per-block statistics, the exact M-step, the stepwise
update.

Each block is a ``(block_size, D)`` array whose rows past ``n_valid`` are padding (weight 0);
on the device it is summed in chunks of ``chunk_size`` rows
(:func:`~numpyro_gmm.mixture.chunking.chunked_sum`), so peak memory is about one block plus
``O(chunk_size * K * D)``, whatever ``N``. Both algorithms are (MAP-)EM with the package's
closed-form M-step (:func:`~numpyro_gmm.mixture.mstep.m_step`, priors included).

**Exact EM.** Each pass streams every block and adds its sufficient statistics at the current
parameters (:func:`_accumulate`), then takes one M-step (:func:`_exact_m_step`). It is
full-batch EM, computed out of core: the same iterates up to the order of floating-point
additions.

**Stepwise EM** (Cappé & Moulines 2009, Liang & Klein 2009; :func:`_stepwise_update`). After
each block ``b`` of ``n_b`` rows, the running per-point statistics ``s`` move towards the
block's,

.. math::

    s \\leftarrow (1 - \\gamma_t)\\, s + \\gamma_t \\, \\frac{1}{n_b} S_b(\\theta), \\qquad
    \\gamma_t = (t + t_0)^{-\\kappa}, \\quad t = 0, 1, 2, \\ldots

and the M-step runs on ``N s`` (``N`` the number of rows, so that priors weigh as in the
full-batch posterior; for a source of unknown size, the rows seen so far). Defaults
``kappa = 0.6`` and ``t0 = 1``: ``gamma_0 = 1`` (the first block replaces the empty
statistics), ``kappa`` in ``(0.5, 1]`` is the range in which the steps sum to infinity while
their squares do not (the Robbins–Monro conditions of the convergence results); Liang & Klein
found ``kappa`` about 0.5–0.7 with blocks of thousands of rows to match or beat batch EM after
one or two passes. The statistics of different blocks are centred at different means; they
are re-centred exactly before averaging (:func:`~numpyro_gmm.mixture.estep.recentre`).

Every update keeps the previous parameters when the new ones are not finite (a covariance
that stopped being positive definite) and returns a flag, which the engine turns into an
error.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_gmm.mixture.chunking import chunked_sum
from numpyro_gmm.mixture.covariance import dispatch
from numpyro_gmm.mixture.estep import SufficientStats, chunk_statistics, recentre
from numpyro_gmm.mixture.init import initialize
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import all_finite, covariances_from_precisions_cholesky
from numpyro_gmm.mixture.priors import log_prior

__all__ = ["DEFAULT_KAPPA", "DEFAULT_T0", "step_sizes"]

DEFAULT_KAPPA: float = 0.6
"""Decay exponent ``kappa`` of the stepwise step size ``(t + t0)^(-kappa)``."""
DEFAULT_T0: float = 1.0
"""Offset ``t0`` of the stepwise step size; 1 makes the first step 1."""


def step_sizes(n_steps: int, kappa: float = DEFAULT_KAPPA, t0: float = DEFAULT_T0) -> np.ndarray:
    """The stepwise-EM schedule ``gamma_t = (t + t0)^(-kappa)`` for ``t = 0 .. n_steps - 1``."""
    return (np.arange(n_steps) + t0) ** (-kappa)


def zero_statistics(n_components, n_features, covariance_type, dtype) -> SufficientStats:
    """Empty sums, shaped for ``covariance_type``."""
    # diag and spherical both keep per-feature sums of squares; spherical averages them later.
    second_shape = dispatch(
        covariance_type,
        {
            "full": (n_components, n_features, n_features),
            "tied": (n_features, n_features),
            "diag": (n_components, n_features),
            "spherical": (n_components, n_features),
        },
    )
    return SufficientStats(
        counts=jnp.zeros(n_components, dtype),
        first=jnp.zeros((n_components, n_features), dtype),
        second=jnp.zeros(second_shape, dtype),
        log_likelihood=jnp.zeros((), dtype),
    )


def _block_statistics(rows, n_valid, params, covariance_type, chunk_size) -> SufficientStats:
    """Statistics of one padded block, centred at ``params.means`` (rows >= n_valid: weight 0)."""

    def chunk_fn(chunk, weights, row_index):
        weights = weights * (row_index < n_valid).astype(chunk.dtype)
        return chunk_statistics(chunk, weights, params, covariance_type)

    return chunked_sum(chunk_fn, rows, chunk_size)


@functools.partial(jax.jit, static_argnames=("covariance_type", "chunk_size"), donate_argnums=0)
def accumulate(total, rows, n_valid, params, covariance_type, chunk_size):
    """``total`` plus the statistics of one block (exact EM)."""
    block = _block_statistics(rows, n_valid, params, covariance_type, chunk_size)
    return jax.tree.map(jnp.add, total, block)


def _objective(log_likelihood, params, prior, covariance_type):
    if prior is None:
        return log_likelihood
    return log_likelihood + log_prior(params, prior, covariance_type)


@functools.partial(jax.jit, static_argnames="covariance_type")
def exact_m_step(stats, params, reg_covar, prior, covariance_type):
    """M-step from the statistics of a full pass; keeps ``params`` if the new ones are not
    finite. Returns (params, covariances, log joint of the entering params, finite flag)."""
    new_params, covariances = m_step(stats, params.means, params, covariance_type, reg_covar, prior)
    finite = all_finite(new_params)
    new_params = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_params, params)
    objective = _objective(stats.log_likelihood, params, prior, covariance_type)
    return new_params, covariances, objective, finite


@functools.partial(jax.jit, static_argnames=("covariance_type", "chunk_size"))
def stepwise_update(
    running,
    shift,
    rows,
    n_valid,
    params,
    gamma,
    scale,
    reg_covar,
    prior,
    covariance_type,
    chunk_size,
):
    """One stepwise-EM update (module equations). ``running`` is centred at ``shift``.

    Returns (running statistics, their new centre, params, finite flag).
    """
    block = _block_statistics(rows, n_valid, params, covariance_type, chunk_size)
    block = jax.tree.map(lambda leaf: leaf / n_valid, block)
    running = recentre(running, shift, params.means, covariance_type)
    running = jax.tree.map(lambda s, b: (1.0 - gamma) * s + gamma * b, running, block)
    scaled = jax.tree.map(lambda leaf: leaf * scale, running)
    new_params, _ = m_step(scaled, params.means, params, covariance_type, reg_covar, prior)
    finite = all_finite(new_params)
    new_params = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_params, params)
    return running, params.means, new_params, finite


initialize_program = jax.jit(
    initialize, static_argnames=("n_components", "method", "covariance_type", "rows")
)
"""The package's initialization (:func:`~numpyro_gmm.mixture.init.initialize`), jitted."""


@functools.partial(jax.jit, static_argnames="covariance_type")
def covariances_of(params, covariance_type):
    """Covariances of ``params``, shaped per covariance type."""
    return covariances_from_precisions_cholesky(params.precisions_cholesky, covariance_type)
