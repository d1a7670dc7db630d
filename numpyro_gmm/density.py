"""Densities of given Gaussian-mixture parameters, on the host.

For parameters in scikit-learn's layout (weights, means, covariances per covariance type)
from any source, computed with the engine's own E-step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp

from numpyro_gmm.fitting import weighted_log_prob
from numpyro_gmm.mixture.covariance import check_covariance_type, covariance_shape
from numpyro_gmm.mixture.params import (
    GMMParams,
    full_covariances,
    precisions_cholesky_from_covariances,
)
from numpyro_gmm.validation import working_dtype

__all__ = ["expand_covariances", "pointwise_log_likelihood", "weighted_component_log_pdf"]


def check_params(
    weights: Any, means: Any, covariances: Any, covariance_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert parameters to float64 numpy arrays and check their shapes."""
    check_covariance_type(covariance_type)
    w = np.asarray(weights, dtype=np.float64)
    mu = np.asarray(means, dtype=np.float64)
    cov = np.asarray(covariances, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must have shape (n_components,); got shape {w.shape}")
    if mu.ndim != 2 or mu.shape[0] != w.shape[0]:
        raise ValueError(
            f"means must have shape (n_components, n_features) = ({w.shape[0]}, D); "
            f"got shape {mu.shape}"
        )
    expected = covariance_shape(covariance_type, *mu.shape)
    if cov.shape != expected:
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} must have shape "
            f"{expected}; got shape {cov.shape}"
        )
    return w, mu, cov


def expand_covariances(
    covariances: Any, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand covariances of any covariance type to full ``(K, D, D)`` matrices.

    Parameters
    ----------
    covariances : array_like
        Covariances in scikit-learn's layout: ``(K, D, D)`` for ``"full"``, ``(D, D)`` for
        ``"tied"``, ``(K, D)`` for ``"diag"`` (variances) and ``(K,)`` for ``"spherical"``
        (one variance per component).
    covariance_type : {"full", "tied", "diag", "spherical"}
        Layout of ``covariances``.
    n_components : int
        Number of components ``K``.
    n_features : int
        Number of features ``D``.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(K, D, D)`` (a new array).

    Raises
    ------
    ValueError
        If ``covariances`` does not have the shape its covariance type requires.
    """
    k, d = int(n_components), int(n_features)
    _, _, cov = check_params(np.ones(k), np.zeros((k, d)), covariances, covariance_type)
    return np.array(full_covariances(cov, covariance_type, k, d), dtype=np.float64)


def weighted_component_log_pdf(
    x: np.ndarray, w: np.ndarray, mu: np.ndarray, cov: np.ndarray, covariance_type: str
) -> np.ndarray:
    """``log w_k + log N(x_n | mu_k, Sigma_k)``, shape (N, K), from the engine's own E-step."""
    dtype = working_dtype(x.dtype)
    factor = np.asarray(precisions_cholesky_from_covariances(cov.astype(dtype), covariance_type))
    finite = np.isfinite(factor.reshape(factor.shape[0], -1)).all(axis=1)
    if not finite.all():
        which = (
            "the tied covariance"
            if covariance_type == "tied"
            else (f"the covariance of component {int(np.flatnonzero(~finite)[0])}")
        )
        raise ValueError(
            f"{which} is not positive definite; increase reg_covar or check the fitted parameters"
        )
    params = GMMParams(w.astype(dtype), mu.astype(dtype), factor)
    return weighted_log_prob(x.astype(dtype), params, covariance_type)


def pointwise_log_likelihood(
    x: Any, weights: Any, means: Any, covariances: Any, covariance_type: str
) -> np.ndarray:
    """Pointwise marginal log-likelihood of a Gaussian mixture.

    Computes ``log sum_k w_k N(x_n | mu_k, Sigma_k)`` for every row of ``x`` with a
    log-sum-exp over components, with the engine's E-step (float32 unless JAX's x64 mode is
    on); the result is returned as float64.

    Parameters
    ----------
    x : array_like
        Data of shape ``(N, D)``; a 1-D array is read as ``(N, 1)``.
    weights : array_like
        Mixture weights, shape ``(K,)``.
    means : array_like
        Component means, shape ``(K, D)``.
    covariances : array_like
        Covariances in scikit-learn's layout for ``covariance_type``.
    covariance_type : {"full", "tied", "diag", "spherical"}
        Layout of ``covariances``.

    Returns
    -------
    numpy.ndarray
        Float64 array of shape ``(N,)``.
    """
    w, mu, cov = check_params(weights, means, covariances, covariance_type)
    xx = np.asarray(x, dtype=np.float64)
    if xx.ndim == 1:
        xx = xx[:, None]
    if xx.ndim != 2 or xx.shape[1] != mu.shape[1]:
        raise ValueError(
            f"x must have shape (n_samples, {mu.shape[1]}) to match the means; got {xx.shape}"
        )
    with np.errstate(divide="ignore"):
        log_prob = weighted_component_log_pdf(xx, w, mu, cov, covariance_type)
    return logsumexp(log_prob.astype(np.float64), axis=1)
