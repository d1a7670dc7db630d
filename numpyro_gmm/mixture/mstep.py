"""M-steps: maximum likelihood and the MAP mode under the conjugate priors of ``priors.py``.

Given statistics centred at ``c_k`` (:class:`~numpyro_gmm.mixture.estep.SufficientStats`) and
new means ``mu_k = c_k + e_k``, the scatter about the new mean is

.. math::

    W_k = S^{(2)}_k - S^{(1)}_k e_k^T - e_k S^{(1)T}_k + N_k e_k e_k^T .

The covariance updates all have the form ``(W + prior terms) / (count + prior count)``:

=============  ======================================================  ==========================
type           numerator                                               denominator
=============  ======================================================  ==========================
full           ``W_k + c kappa0 o_k o_k^T + Psi0``                     ``N_k + c + nu0 + D + 1``
tied           ``sum_k (W_k + c kappa0 o_k o_k^T) + Psi0``             ``N + c K + nu0 + D + 1``
diag           ``diag W_k + c kappa0 o_k^2 + 2 b``                     ``N_k + c + 2 a + 2``
spherical      ``tr W_k + c kappa0 |o_k|^2 + 2 b``                     ``D N_k + c D + 2 a + 2``
=============  ======================================================  ==========================

with ``o_k = mu_k - m0``, ``c = 1`` under the coupled (Normal-Inverse-Wishart) mean prior and 0
otherwise, and the Inverse-Wishart / Inverse-Gamma terms present only when that prior is.
With flat priors these reduce to scikit-learn's estimators, including its ``10 * eps`` added
to ``N_k``. ``reg_covar`` is added to the diagonal last. With the independent mean prior the
means are updated first, with the covariances of the previous step, and the covariances then
use the new means: a conditional maximization, so the log joint still cannot decrease.
"""

import jax.numpy as jnp

from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.mixture.estep import SufficientStats
from numpyro_gmm.mixture.params import (
    GMMParams,
    full_precisions,
    precisions_cholesky_from_covariances,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior

__all__ = ["m_step"]


def _weights(counts: Array, prior: GaussianMixturePrior) -> Array:
    if prior.weight_concentration is None:
        return counts / jnp.sum(counts)
    unnormalized = jnp.maximum(counts + prior.weight_concentration - 1.0, 0.0)
    return unnormalized / jnp.sum(unnormalized)


def _mean_offsets(
    stats: SufficientStats,
    counts: Array,
    shift: Array,
    previous: GMMParams,
    covariance_type: CovarianceType,
    prior: GaussianMixturePrior,
) -> Array:
    """Return ``e_k = mu_k - c_k`` for the new means."""
    if prior.mean_loc is None:
        return stats.first / counts[:, None]
    prior_offsets = prior.mean_loc - shift
    if prior.mean_precision is not None:
        kappa = prior.mean_precision
        return (stats.first + kappa * prior_offsets) / (counts + kappa)[:, None]
    n_components, n_features = shift.shape
    precisions = full_precisions(
        previous.precisions_cholesky, covariance_type, n_components, n_features
    )
    prior_precision = jnp.linalg.inv(prior.mean_covariance)
    system = counts[:, None, None] * precisions + prior_precision
    rhs = jnp.einsum("kde,ke->kd", precisions, stats.first) + prior_offsets @ prior_precision.T
    return jnp.linalg.solve(system, rhs[..., None])[..., 0]


def _scatter(stats: SufficientStats, offsets: Array, covariance_type: CovarianceType) -> Array:
    """Responsibility-weighted scatter about the new means, shaped per covariance type."""
    if covariance_type in ("full", "tied"):
        cross = stats.first[:, :, None] * offsets[:, None, :]
        per_component = (
            stats.counts[:, None, None] * offsets[:, :, None] * offsets[:, None, :]
            - cross
            - jnp.swapaxes(cross, -1, -2)
        )
        if covariance_type == "full":
            return stats.second + per_component
        return stats.second + jnp.sum(per_component, axis=0)
    diagonal = stats.second - 2.0 * stats.first * offsets + stats.counts[:, None] * offsets**2
    if covariance_type == "diag":
        return diagonal
    return jnp.sum(diagonal, axis=-1)


def _prior_terms(
    means: Array, covariance_type: CovarianceType, prior: GaussianMixturePrior
) -> tuple[Array, Array]:
    """Numerator and denominator contributions of the priors (see the module table)."""
    n_components, n_features = means.shape
    numerator = jnp.zeros((), means.dtype)
    denominator = jnp.zeros((), means.dtype)
    if prior.mean_precision is not None:
        kappa = prior.mean_precision
        offsets = means - prior.mean_loc
        if covariance_type in ("full", "tied"):
            outer = kappa * offsets[:, :, None] * offsets[:, None, :]
            if covariance_type == "tied":
                numerator = jnp.sum(outer, axis=0)
                denominator = jnp.asarray(n_components, means.dtype)
            else:
                numerator = outer
                denominator = jnp.ones((), means.dtype)
        elif covariance_type == "diag":
            numerator = kappa * offsets**2
            denominator = jnp.ones((), means.dtype)
        else:
            numerator = kappa * jnp.sum(offsets**2, axis=-1)
            denominator = jnp.asarray(n_features, means.dtype)
    if prior.covariance_scale is not None:
        numerator = numerator + prior.covariance_scale
        denominator = denominator + prior.covariance_df + n_features + 1
    if prior.variance_rate is not None:
        numerator = numerator + 2.0 * prior.variance_rate
        denominator = denominator + 2.0 * prior.variance_concentration + 2.0
    return numerator, denominator


def _data_counts(counts: Array, n_features: int, covariance_type: CovarianceType) -> Array:
    """Per-covariance denominators contributed by the data, broadcastable to the scatter."""
    if covariance_type == "full":
        return counts[:, None, None]
    if covariance_type == "tied":
        return jnp.sum(counts)
    if covariance_type == "diag":
        return counts[:, None]
    return n_features * counts


def _add_to_diagonal(covariances: Array, value: Array, covariance_type: CovarianceType) -> Array:
    if covariance_type in ("full", "tied"):
        return covariances + value * jnp.eye(covariances.shape[-1], dtype=covariances.dtype)
    return covariances + value


def m_step(
    stats: SufficientStats,
    shift: Array,
    previous: GMMParams | None,
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    prior: GaussianMixturePrior | None = None,
) -> tuple[GMMParams, Array]:
    """Closed-form M-step (ML when ``prior`` is ``None``), returning params and covariances.

    Parameters
    ----------
    stats : SufficientStats
        Statistics centred at ``shift``.
    shift : Array, shape (K, D)
        The centre ``c_k`` of the statistics (the means that entered the E-step).
    previous : GMMParams or None
        Parameters that entered the E-step; only the independent mean prior reads them
        (``None`` is allowed otherwise).
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Added to the diagonal of every covariance.
    prior : GaussianMixturePrior, optional
        Conjugate priors; flat blocks are maximum likelihood.

    Returns
    -------
    params : GMMParams
        New parameters; non-finite precision factors signal a covariance that is not
        positive definite (callers check).
    covariances : Array
        The new covariances, shaped per covariance type.
    """
    prior = GaussianMixturePrior() if prior is None else prior
    counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    n_features = shift.shape[-1]
    offsets = _mean_offsets(stats, counts, shift, previous, covariance_type, prior)
    means = shift + offsets
    prior_numerator, prior_denominator = _prior_terms(means, covariance_type, prior)
    covariances = (_scatter(stats, offsets, covariance_type) + prior_numerator) / (
        _data_counts(counts, n_features, covariance_type) + prior_denominator
    )
    covariances = _add_to_diagonal(covariances, reg_covar, covariance_type)
    params = GMMParams(
        weights=_weights(counts, prior),
        means=means,
        precisions_cholesky=precisions_cholesky_from_covariances(covariances, covariance_type),
    )
    return params, covariances
