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
from numpyro_gmm.mixture.covariance import check_covariance_type, dispatch, is_matrix_type
from numpyro_gmm.mixture.estep import SufficientStats
from numpyro_gmm.mixture.params import (
    GMMParams,
    full_precisions,
    precisions_cholesky_from_covariances,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior

__all__ = ["m_step", "map_weights"]


def map_weights(counts: Array, weight_concentration: Array | None = None) -> Array:
    """Mixing weights maximizing ``sum_k N_k log pi_k + log Dirichlet(pi | alpha)``.

    ``pi_k = max(N_k + alpha_k - 1, 0) / sum_j max(N_j + alpha_j - 1, 0)``; with no prior
    (``None``) the maximum-likelihood ``N_k / N``.
    """
    if weight_concentration is None:
        return counts / jnp.sum(counts)
    unnormalized = jnp.maximum(counts + weight_concentration - 1.0, 0.0)
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

    def per_component() -> Array:
        cross = stats.first[:, :, None] * offsets[:, None, :]
        return (
            stats.counts[:, None, None] * offsets[:, :, None] * offsets[:, None, :]
            - cross
            - jnp.swapaxes(cross, -1, -2)
        )

    def diagonal() -> Array:
        return stats.second - 2.0 * stats.first * offsets + stats.counts[:, None] * offsets**2

    scatter = dispatch(
        covariance_type,
        {
            "full": lambda: stats.second + per_component(),
            "tied": lambda: stats.second + jnp.sum(per_component(), axis=0),
            "diag": diagonal,
            "spherical": lambda: jnp.sum(diagonal(), axis=-1),
        },
    )
    return scatter()


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

        def outer() -> Array:
            return kappa * offsets[:, :, None] * offsets[:, None, :]

        mean_terms = dispatch(
            covariance_type,
            {
                "full": lambda: (outer(), jnp.ones((), means.dtype)),
                "tied": lambda: (
                    jnp.sum(outer(), axis=0),
                    jnp.asarray(n_components, means.dtype),
                ),
                "diag": lambda: (kappa * offsets**2, jnp.ones((), means.dtype)),
                "spherical": lambda: (
                    kappa * jnp.sum(offsets**2, axis=-1),
                    jnp.asarray(n_features, means.dtype),
                ),
            },
        )
        numerator, denominator = mean_terms()
    if prior.covariance_scale is not None:
        numerator = numerator + prior.covariance_scale
        denominator = denominator + prior.covariance_df + n_features + 1
    if prior.variance_rate is not None:
        numerator = numerator + 2.0 * prior.variance_rate
        denominator = denominator + 2.0 * prior.variance_concentration + 2.0
    return numerator, denominator


def _data_counts(counts: Array, n_features: int, covariance_type: CovarianceType) -> Array:
    """Per-covariance denominators contributed by the data, broadcastable to the scatter."""
    data_counts = dispatch(
        covariance_type,
        {
            "full": lambda: counts[:, None, None],
            "tied": lambda: jnp.sum(counts),
            "diag": lambda: counts[:, None],
            "spherical": lambda: n_features * counts,
        },
    )
    return data_counts()


def _add_to_diagonal(covariances: Array, value: Array, covariance_type: CovarianceType) -> Array:
    if is_matrix_type(covariance_type):
        return covariances + value * jnp.eye(covariances.shape[-1], dtype=covariances.dtype)
    return covariances + value


def m_step(
    stats: SufficientStats,
    shift: Array,
    previous: GMMParams | None,
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    prior: GaussianMixturePrior | None = None,
    active: Array | None = None,
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
    active : Array (K,) of bool, optional
        Components that take part. The others are padding (a program compiled for more
        components than the model has): weight exactly 0, mean unchanged, unit covariance
        (plus ``reg_covar``), so they never take responsibility and the active components'
        update equals the unpadded one. Maximum likelihood only.

    Returns
    -------
    params : GMMParams
        New parameters; non-finite precision factors signal a covariance that is not
        positive definite (callers check).
    covariances : Array
        The new covariances, shaped per covariance type.
    """
    check_covariance_type(covariance_type)
    if active is not None and prior is not None and any(v is not None for v in prior):
        raise ValueError("Inactive (padding) components are supported without priors only.")
    prior = GaussianMixturePrior() if prior is None else prior
    counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
    if active is not None:
        counts = jnp.where(active, counts, 0.0)
    n_features = shift.shape[-1]
    offsets = _mean_offsets(stats, counts, shift, previous, covariance_type, prior)
    if active is not None:  # no data: the mean stays where it is (0 / 0 above)
        offsets = jnp.where(active[:, None], offsets, 0.0)
    means = shift + offsets
    prior_numerator, prior_denominator = _prior_terms(means, covariance_type, prior)
    covariances = (_scatter(stats, offsets, covariance_type) + prior_numerator) / (
        _data_counts(counts, n_features, covariance_type) + prior_denominator
    )
    if active is not None and covariance_type != "tied":  # 0 / 0 above; any valid value
        identity = (
            jnp.eye(n_features, dtype=covariances.dtype)
            if covariance_type == "full"
            else jnp.ones((), covariances.dtype)
        )
        mask = active.reshape((-1,) + (1,) * (covariances.ndim - 1))
        covariances = jnp.where(mask, covariances, identity)
    covariances = _add_to_diagonal(covariances, reg_covar, covariance_type)
    params = GMMParams(
        weights=map_weights(counts, prior.weight_concentration),
        means=means,
        precisions_cholesky=precisions_cholesky_from_covariances(covariances, covariance_type),
    )
    return params, covariances
