"""Log-densities, the E-step and sufficient statistics, chunked over rows.

The statistics of a chunk are centred at a per-component shift ``c_k`` (the means of the
parameters that enter the step). Centring at the current means keeps float32 accurate when the
data sit far from the origin, and it lets one pass over the data give both the responsibilities
and every sum the M-step needs:

.. math::

    N_k = \\sum_n r_{nk}, \\quad
    S^{(1)}_k = \\sum_n r_{nk} (x_n - c_k), \\quad
    S^{(2)}_k = \\sum_n r_{nk} (x_n - c_k)(x_n - c_k)^T
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.mixture.chunking import chunked_sum
from numpyro_gmm.mixture.covariance import check_covariance_type, dispatch, is_matrix_type
from numpyro_gmm.mixture.params import GMMParams, log_det_precisions_cholesky

__all__ = [
    "SufficientStats",
    "component_log_prob",
    "log_prob_from_differences",
    "chunk_statistics",
    "recentre",
    "sufficient_statistics",
    "statistics_from_responsibilities",
]


class SufficientStats(NamedTuple):
    """Responsibility-weighted sums over the data, centred at a per-component shift.

    Attributes
    ----------
    counts : Array, shape (K,)
        ``N_k = sum_n w_n r_nk``.
    first : Array, shape (K, D)
        ``sum_n w_n r_nk (x_n - c_k)``.
    second : Array
        ``(K, D, D)`` for full, ``(D, D)`` (summed over components) for tied, and the
        diagonal ``(K, D)`` for diag and spherical.
    log_likelihood : Array, shape ()
        ``sum_n w_n log p(x_n)`` under the parameters used for the responsibilities (0 when
        the responsibilities do not come from a mixture).
    """

    counts: Array
    first: Array
    second: Array
    log_likelihood: Array


def log_prob_from_differences(
    differences: Array, precisions_cholesky: Array, covariance_type: CovarianceType
) -> Array:
    """Gaussian log-density per component from ``differences = x - mu_k``, shape (K, C, D).

    Returns an array of shape (K, C).
    """
    n_features = differences.shape[-1]

    def triangular(differences: Array, factor: Array) -> Array:
        return differences @ factor

    whiten = dispatch(
        covariance_type,
        {
            "full": triangular,
            "tied": triangular,
            "diag": lambda differences, factor: differences * factor[:, None, :],
            "spherical": lambda differences, factor: differences * factor[:, None, None],
        },
    )
    whitened = whiten(differences, precisions_cholesky)
    log_det = log_det_precisions_cholesky(precisions_cholesky, covariance_type, n_features)
    log_det = jnp.broadcast_to(log_det, (differences.shape[0],))
    mahalanobis = jnp.sum(whitened**2, axis=-1)
    return -0.5 * (n_features * math.log(2 * math.pi) + mahalanobis) + log_det[:, None]


def _differences(x: Array, shift: Array) -> Array:
    return x[None, :, :] - shift[:, None, :]


def component_log_prob(x: Array, params: GMMParams, covariance_type: CovarianceType) -> Array:
    """``log pi_k + log N(x_n | mu_k, Sigma_k)`` for every row and component, shape (N, K)."""
    log_prob = log_prob_from_differences(
        _differences(x, params.means), params.precisions_cholesky, covariance_type
    )
    return (log_prob + jnp.log(params.weights)[:, None]).T


def _second_moments(
    responsibilities: Array, differences: Array, covariance_type: CovarianceType
) -> Array:
    weighted = responsibilities[:, :, None] * differences

    def tied() -> Array:
        n_features = differences.shape[-1]
        flat_weighted = weighted.reshape(-1, n_features)
        return flat_weighted.T @ differences.reshape(-1, n_features)

    def diagonal() -> Array:
        return jnp.sum(weighted * differences, axis=1)

    second_moments = dispatch(
        covariance_type,
        {
            "full": lambda: jnp.swapaxes(weighted, -1, -2) @ differences,
            "tied": tied,
            "diag": diagonal,
            "spherical": diagonal,
        },
    )
    return second_moments()


def _chunk_statistics(
    responsibilities: Array,
    differences: Array,
    log_likelihood: Array,
    covariance_type: CovarianceType,
) -> SufficientStats:
    return SufficientStats(
        counts=jnp.sum(responsibilities, axis=1),
        first=jnp.einsum("kc,kcd->kd", responsibilities, differences),
        second=_second_moments(responsibilities, differences, covariance_type),
        log_likelihood=log_likelihood,
    )


def chunk_statistics(
    rows: Array, row_weights: Array, params: GMMParams, covariance_type: CovarianceType
) -> SufficientStats:
    """E-step and sufficient statistics of one block of rows, centred at ``params.means``.

    ``row_weights`` (C,) multiplies every row's contribution (0 for padding rows). This is
    the per-chunk body of :func:`sufficient_statistics`, also used on its own by streaming
    EM (:mod:`numpyro_gmm.streaming`), whose chunks come from outside the device.
    """
    differences = _differences(rows, params.means)
    log_prob = (
        log_prob_from_differences(differences, params.precisions_cholesky, covariance_type)
        + jnp.log(params.weights)[:, None]
    )
    log_norm = jax.nn.logsumexp(log_prob, axis=0)
    responsibilities = jnp.exp(log_prob - log_norm) * row_weights
    return _chunk_statistics(
        responsibilities, differences, jnp.sum(row_weights * log_norm), covariance_type
    )


def sufficient_statistics(
    x: Array,
    params: GMMParams,
    covariance_type: CovarianceType,
    chunk_size: int,
) -> SufficientStats:
    """E-step and sufficient statistics in one chunked pass, centred at ``params.means``.

    Responsibilities are computed in log space (``logsumexp``) and never materialized
    for more than one chunk of rows at a time.
    """
    check_covariance_type(covariance_type)

    def chunk_fn(rows: Array, row_weights: Array, row_index: Array) -> SufficientStats:
        del row_index
        return chunk_statistics(rows, row_weights, params, covariance_type)

    return chunked_sum(chunk_fn, x, chunk_size)


def recentre(
    stats: SufficientStats, old_shift: Array, new_shift: Array, covariance_type: CovarianceType
) -> SufficientStats:
    """The same sums centred at ``new_shift`` instead of ``old_shift``.

    With ``d_k = c_k - c'_k``: ``S1' = S1 + N d``, ``S2' = S2 + S1 d^T + d S1^T + N d d^T``
    (its diagonal for diag / spherical, summed over components for tied). Used to average
    statistics gathered at different parameters (stepwise EM).
    """
    delta = old_shift - new_shift
    counts = stats.counts
    first = stats.first + counts[:, None] * delta
    if is_matrix_type(covariance_type):
        cross = stats.first[:, :, None] * delta[:, None, :]
        per_component = (
            cross
            + jnp.swapaxes(cross, -1, -2)
            + counts[:, None, None] * delta[:, :, None] * delta[:, None, :]
        )
        # The tied statistics are summed over components.
        reduce = dispatch(
            covariance_type,
            {"full": lambda terms: terms, "tied": lambda terms: jnp.sum(terms, axis=0)},
        )
        second = stats.second + reduce(per_component)
    else:
        second = stats.second + 2.0 * stats.first * delta + counts[:, None] * delta**2
    return SufficientStats(counts, first, second, stats.log_likelihood)


def statistics_from_responsibilities(
    x: Array,
    responsibilities_fn,
    shift: Array,
    covariance_type: CovarianceType,
    chunk_size: int,
) -> SufficientStats:
    """Sufficient statistics for given responsibilities (used by initializations).

    Parameters
    ----------
    responsibilities_fn : callable
        ``responsibilities_fn(rows, row_index) -> (K, C)`` responsibilities of a chunk.
    shift : Array, shape (K, D)
        Centre of each component's sums.
    """
    check_covariance_type(covariance_type)

    def chunk_fn(rows: Array, row_weights: Array, row_index: Array) -> SufficientStats:
        responsibilities = responsibilities_fn(rows, row_index) * row_weights
        differences = _differences(rows, shift)
        return _chunk_statistics(
            responsibilities, differences, jnp.zeros((), rows.dtype), covariance_type
        )

    return chunked_sum(chunk_fn, x, chunk_size)
