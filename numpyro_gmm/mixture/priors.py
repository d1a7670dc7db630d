"""Conjugate priors for MAP-EM and their log densities.

All densities are on the constrained parameters (weights on the simplex, means, covariances
or variances), with no Jacobian term: this is the log joint that MAP-EM increases and that
NumPyro's ``log_density`` (and SVI with ``AutoDelta``) evaluates.

=========================  =========================================================
block                      prior
=========================  =========================================================
weights                    ``Dirichlet(weight_concentration)``
means (coupled, NIW)       ``Normal(mean_loc, Sigma_k / mean_precision)``
means (independent)        ``MultivariateNormal(mean_loc, mean_covariance)``
full / tied covariances    ``InverseWishart(covariance_df, covariance_scale)``
diag / spherical variances ``InverseGamma(variance_concentration, variance_rate)``
=========================  =========================================================

A block whose fields are ``None`` has a flat prior (its M-step is maximum likelihood).
"""

import math
from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.special import gammaln, multigammaln

from numpyro_gmm._types import Array, CovarianceType
from numpyro_gmm.mixture.covariance import check_covariance_type
from numpyro_gmm.mixture.params import (
    GMMParams,
    covariances_from_precisions_cholesky,
    full_precisions,
    log_det_precisions_cholesky,
)

__all__ = ["GaussianMixturePrior", "log_prior", "inverse_wishart_log_prob"]


class GaussianMixturePrior(NamedTuple):
    """Hyperparameters of the conjugate priors; ``None`` means a flat prior for that block.

    Attributes
    ----------
    weight_concentration : Array (K,) or None
        Dirichlet concentration ``alpha``. The closed-form mode needs ``alpha_k >= 1``.
    mean_loc : Array (D,) or None
        Prior mean ``m0`` of the component means.
    mean_precision : Array () or None
        ``kappa0`` of the Normal-Inverse-Wishart coupling ``mu_k ~ N(m0, Sigma_k / kappa0)``.
    mean_covariance : Array (D, D) or None
        ``V0`` of the independent prior ``mu_k ~ N(m0, V0)``.
    covariance_df : Array () or None
        Inverse-Wishart degrees of freedom ``nu0 > D - 1`` (full and tied).
    covariance_scale : Array (D, D) or None
        Inverse-Wishart scale matrix ``Psi0`` (full and tied).
    variance_concentration : Array () or None
        Inverse-Gamma shape ``a`` (diag and spherical).
    variance_rate : Array () or (D,) or None
        Inverse-Gamma rate ``b`` (diag and spherical).
    """

    weight_concentration: Array | None = None
    mean_loc: Array | None = None
    mean_precision: Array | None = None
    mean_covariance: Array | None = None
    covariance_df: Array | None = None
    covariance_scale: Array | None = None
    variance_concentration: Array | None = None
    variance_rate: Array | None = None


def _log_dirichlet(weights: Array, concentration: Array) -> Array:
    return (
        gammaln(jnp.sum(concentration))
        - jnp.sum(gammaln(concentration))
        + jnp.sum((concentration - 1.0) * jnp.log(weights))
    )


def inverse_wishart_log_prob(
    covariance_precision: Array, log_det_covariance: Array, df: Array, scale: Array
) -> Array:
    """``log InverseWishart(Sigma | df, scale)`` given ``Sigma^{-1}`` and ``log det Sigma``."""
    n_features = scale.shape[-1]
    _, log_det_scale = jnp.linalg.slogdet(scale)
    trace_term = jnp.trace(scale @ covariance_precision, axis1=-2, axis2=-1)
    return (
        0.5 * df * log_det_scale
        - 0.5 * df * n_features * math.log(2.0)
        - multigammaln(0.5 * df, n_features)
        - 0.5 * (df + n_features + 1) * log_det_covariance
        - 0.5 * trace_term
    )


def _log_inverse_gamma(variance: Array, concentration: Array, rate: Array) -> Array:
    return (
        concentration * jnp.log(rate)
        - gammaln(concentration)
        - (concentration + 1.0) * jnp.log(variance)
        - rate / variance
    )


def _log_mean_prior(params: GMMParams, prior: GaussianMixturePrior, precisions: Array) -> Array:
    """Log density of the means; ``precisions`` are the full (K, D, D) precision matrices."""
    n_features = params.means.shape[-1]
    offsets = params.means - prior.mean_loc
    if prior.mean_precision is not None:
        kappa = prior.mean_precision
        # N(mu | m0, Sigma/kappa): precision kappa * P, log det = D log kappa + log det P.
        _, log_det_precision = jnp.linalg.slogdet(precisions)
        quadratic = jnp.einsum("kd,kde,ke->k", offsets, precisions, offsets)
        return jnp.sum(
            -0.5 * n_features * math.log(2 * math.pi)
            + 0.5 * (n_features * jnp.log(kappa) + log_det_precision)
            - 0.5 * kappa * quadratic
        )
    lower = jnp.linalg.cholesky(prior.mean_covariance)
    whitened = jnp.linalg.solve(lower, offsets.T)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(lower)))
    return jnp.sum(
        -0.5 * n_features * math.log(2 * math.pi) - 0.5 * log_det - 0.5 * jnp.sum(whitened**2, 0)
    )


def log_prior(
    params: GMMParams, prior: GaussianMixturePrior, covariance_type: CovarianceType
) -> Array:
    """Sum of the log prior densities of ``params`` (0 for flat blocks)."""
    check_covariance_type(covariance_type)
    n_components, n_features = params.means.shape
    total = jnp.zeros((), params.means.dtype)
    if prior.weight_concentration is not None:
        total = total + _log_dirichlet(params.weights, prior.weight_concentration)
    needs_precisions = prior.mean_loc is not None or prior.covariance_scale is not None
    if needs_precisions:
        precisions = full_precisions(
            params.precisions_cholesky, covariance_type, n_components, n_features
        )
    if prior.mean_loc is not None:
        total = total + _log_mean_prior(params, prior, precisions)
    if prior.covariance_scale is not None:
        log_det_covariance = -2.0 * log_det_precisions_cholesky(
            params.precisions_cholesky, covariance_type, n_features
        )
        if covariance_type == "tied":  # one shared matrix: one density (type checked above)
            precisions = precisions[0]
        total = total + jnp.sum(
            inverse_wishart_log_prob(
                precisions, log_det_covariance, prior.covariance_df, prior.covariance_scale
            )
        )
    if prior.variance_rate is not None:
        variances = covariances_from_precisions_cholesky(
            params.precisions_cholesky, covariance_type
        )
        total = total + jnp.sum(
            _log_inverse_gamma(variances, prior.variance_concentration, prior.variance_rate)
        )
    return total
