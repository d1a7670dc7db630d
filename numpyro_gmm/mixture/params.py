"""Parameter containers and conversions for the four covariance structures.

Shapes, for ``K`` components in ``D`` dimensions (the same table as scikit-learn):

================  ===================  ==============================================
covariance_type   covariances          precisions_cholesky
================  ===================  ==============================================
``"full"``        ``(K, D, D)``        ``(K, D, D)`` upper-triangular ``U_k``
``"tied"``        ``(D, D)``           ``(D, D)`` upper-triangular ``U``
``"diag"``        ``(K, D)``           ``(K, D)``, ``1 / sqrt(variance)``
``"spherical"``   ``(K,)``             ``(K,)``, ``1 / sqrt(variance)``
================  ===================  ==============================================

The precision is ``U U^T`` and ``U = C^{-T}`` where ``Sigma = C C^T`` is the lower Cholesky
factor of the covariance, as in scikit-learn's ``precisions_cholesky_``. The Mahalanobis
distance is then ``||(x - mu) U||^2`` and ``log det Sigma^{-1/2} = sum(log diag U)``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from numpyro_gmm._types import Array, ArrayLike, CovarianceType
from numpyro_gmm.mixture.covariance import dispatch, expand_to_full, is_matrix_type

__all__ = [
    "GMMParams",
    "precisions_cholesky_from_covariances",
    "covariances_from_precisions_cholesky",
    "precisions_cholesky_from_precisions",
    "precisions_from_precisions_cholesky",
    "log_det_precisions_cholesky",
    "full_precisions",
    "full_covariances",
    "n_parameters",
    "all_finite",
]


class GMMParams(NamedTuple):
    """Parameters of a Gaussian mixture; the covariance type is static configuration.

    Attributes
    ----------
    weights : Array, shape (K,)
        Mixing weights on the simplex.
    means : Array, shape (K, D)
        Component means.
    precisions_cholesky : Array
        Cholesky factors of the precisions, shaped per covariance type (module table).
    """

    weights: Array
    means: Array
    precisions_cholesky: Array


def _eye_like(matrix: Array) -> Array:
    return jnp.eye(matrix.shape[-1], dtype=matrix.dtype)


def precisions_cholesky_from_covariances(
    covariances: ArrayLike, covariance_type: CovarianceType
) -> Array:
    """Return ``U = chol(Sigma)^{-T}`` (or ``1/sqrt(var)``) from covariances.

    A covariance that is not positive definite gives non-finite entries (JAX's Cholesky
    returns NaN); callers turn that into a flag, never into a silent result.
    """
    covariances = jnp.asarray(covariances)
    if is_matrix_type(covariance_type):
        lower = jnp.linalg.cholesky(covariances)
        eye = jnp.broadcast_to(_eye_like(covariances), covariances.shape)
        return jnp.swapaxes(solve_triangular(lower, eye, lower=True), -1, -2)
    # A non-positive variance must not become a finite precision.
    return jnp.where(covariances > 0, jnp.sqrt(1.0 / covariances), jnp.nan)


def covariances_from_precisions_cholesky(
    precisions_cholesky: ArrayLike, covariance_type: CovarianceType
) -> Array:
    """Invert :func:`precisions_cholesky_from_covariances`: ``Sigma = U^{-T} U^{-1}``."""
    factor = jnp.asarray(precisions_cholesky)
    if is_matrix_type(covariance_type):
        eye = jnp.broadcast_to(_eye_like(factor), factor.shape)
        inverse = solve_triangular(factor, eye, lower=False)
        return jnp.swapaxes(inverse, -1, -2) @ inverse
    return 1.0 / factor**2


def precisions_from_precisions_cholesky(
    precisions_cholesky: ArrayLike, covariance_type: CovarianceType
) -> Array:
    """Return the precisions ``U U^T`` (or ``U^2``) in the covariance type's shape.

    A numpy factor gives a numpy result computed on the host (no device program to compile).
    """
    factor = precisions_cholesky
    if not isinstance(factor, np.ndarray | jax.Array):
        factor = jnp.asarray(factor)
    if is_matrix_type(covariance_type):
        return factor @ factor.swapaxes(-1, -2)
    return factor**2


def precisions_cholesky_from_precisions(
    precisions: ArrayLike, covariance_type: CovarianceType
) -> Array:
    """Return the upper factor ``U`` with ``U U^T = P`` from precision matrices ``P``."""
    precisions = jnp.asarray(precisions)
    if is_matrix_type(covariance_type):
        lower = jnp.linalg.cholesky(precisions)
        eye = jnp.broadcast_to(_eye_like(precisions), precisions.shape)
        # Sigma = P^{-1} = L^{-T} L^{-1}, so the covariance's lower factor is C = L^{-T}
        # (upper), and U = C^{-T} = L: re-triangularize through the covariance.
        lower_inverse = solve_triangular(lower, eye, lower=True)
        covariances = jnp.swapaxes(lower_inverse, -1, -2) @ lower_inverse
        return precisions_cholesky_from_covariances(covariances, covariance_type)
    return jnp.where(precisions > 0, jnp.sqrt(precisions), jnp.nan)


def log_det_precisions_cholesky(
    precisions_cholesky: ArrayLike, covariance_type: CovarianceType, n_features: int
) -> Array:
    """Return ``log det U`` per component: ``-0.5 log det Sigma_k``, shape (K,) or ()."""
    factor = jnp.asarray(precisions_cholesky)

    def triangular(factor: Array) -> Array:
        return jnp.sum(jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1)), axis=-1)

    log_det = dispatch(
        covariance_type,
        {
            "full": triangular,
            "tied": triangular,
            "diag": lambda factor: jnp.sum(jnp.log(factor), axis=-1),
            "spherical": lambda factor: n_features * jnp.log(factor),
        },
    )
    return log_det(factor)


def full_precisions(
    precisions_cholesky: ArrayLike,
    covariance_type: CovarianceType,
    n_components: int,
    n_features: int,
) -> Array:
    """Return the precisions expanded to full ``(K, D, D)`` matrices for any covariance type."""
    precisions = precisions_from_precisions_cholesky(precisions_cholesky, covariance_type)
    return expand_to_full(precisions, covariance_type, n_components, n_features)


def full_covariances(
    covariances: ArrayLike,
    covariance_type: CovarianceType,
    n_components: int,
    n_features: int,
) -> Array:
    """Return covariances expanded to full ``(K, D, D)`` matrices for any covariance type.

    A JAX array for any input (see :func:`~numpyro_gmm.mixture.covariance.expand_to_full`,
    which also takes numpy arrays and returns numpy).
    """
    return expand_to_full(jnp.asarray(covariances), covariance_type, n_components, n_features)


def n_parameters(n_components: int, n_features: int, covariance_type: CovarianceType) -> int:
    """Number of free parameters (as scikit-learn counts them for BIC/AIC)."""
    covariance_parameters = dispatch(
        covariance_type,
        {
            "full": n_components * n_features * (n_features + 1) // 2,
            "tied": n_features * (n_features + 1) // 2,
            "diag": n_components * n_features,
            "spherical": n_components,
        },
    )
    return covariance_parameters + n_components * n_features + n_components - 1


def all_finite(tree) -> Array:
    """Whether every leaf of a pytree of arrays is finite (a traced boolean)."""
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))
