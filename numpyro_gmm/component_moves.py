"""Moves between mixtures of the same size, on the host: moment-matched merges and
principal-axis splits of components with full ``(K, D, D)`` covariances.

They serve the prune-and-merge of over-parameterized gradient EM
(:mod:`numpyro_gmm.overparameterized`) and the split-merge search
(:mod:`numpyro_gmm.split_merge`); a covariance type's own storage is recovered with
:func:`from_full`.
"""

import numpy as np

from numpyro_gmm._types import CovarianceType
from numpyro_gmm.mixture.covariance import dispatch

__all__ = ["from_full", "moment_match", "split_along_principal_axis"]


def moment_match(weights, means, full) -> tuple[float, np.ndarray, np.ndarray]:
    """Weight, mean and covariance of a sub-mixture (its first two moments)."""
    total = weights.sum()
    mean = weights @ means / total
    offsets = means - mean
    spread = np.einsum("k,kd,ke->de", weights, offsets, offsets)
    return total, mean, (np.einsum("k,kde->de", weights, full) + spread) / total


def split_along_principal_axis(
    weight: float, mean: np.ndarray, covariance: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Split one component into two that keep its first two moments.

    Along the eigenvector ``v`` of the largest eigenvalue ``lambda``: two halves of the weight
    with means ``mu -+ sqrt(lambda) v / 2`` and covariance ``Sigma - lambda v v^T / 4``.

    Returns
    -------
    half_weight, first_mean, second_mean, child_covariance
    """
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    lam, v = eigenvalues[-1], eigenvectors[:, -1]
    offset = 0.5 * np.sqrt(max(lam, 0.0)) * v
    child = covariance - 0.25 * lam * np.outer(v, v)
    return weight / 2, mean - offset, mean + offset, child


def from_full(full: np.ndarray, covariance_type: CovarianceType, tied: np.ndarray) -> np.ndarray:
    """Full ``(K, D, D)`` covariances as ``covariance_type`` stores them (``tied`` keeps the
    shared matrix: it cannot hold a per-component spread)."""
    d = full.shape[-1]
    return dispatch(
        covariance_type,
        {
            "full": lambda: full,
            "tied": lambda: tied.copy(),
            "diag": lambda: np.diagonal(full, axis1=-2, axis2=-1).copy(),
            "spherical": lambda: np.trace(full, axis1=-2, axis2=-1) / d,
        },
    )()
