"""Candidate moves of the split-merge search (method ``"split_merge_em"``), on the host.

EM stops at a local optimum whose usual defect is one of two (the landscape diagnostic,
:mod:`numpyro_gmm.diagnostics.landscape`): several components share one cluster, while
another component covers several clusters or misses a small group of rows. A *move* frees
one slot and spends it elsewhere, keeping the number of components:

- **free**: merge two components whose responsibilities overlap most (the cosine of their
  responsibility columns, the merge criterion of SMEM, Ueda et al. 2000, "SMEM algorithm for
  mixture models") into their moment-matched component, or (option ``n_deletes``) delete
  one of the lightest components (a small component far from the others overlaps none of
  them: no merge frees its slot);
- **spend**: split a component that fits its rows worst (lowest mean log density of the rows
  it is responsible for) along its principal axis, keeping its first two moments; or, when
  the model has a covariance prior, give birth to a component at one of the rows the mixture
  explains worst (the birth move of competitive EM, Zhang et al. 2004), with the covariance
  the prior's mode gives a component of one row.

The pipeline (:func:`numpyro_gmm.pipeline.split_merge_search`) runs a few EM steps from
every candidate, finishes the most promising ones, and keeps a move only when it raises the
log joint: the search never ends below the EM fit it started from.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from numpyro_gmm._types import CovarianceType
from numpyro_gmm.component_moves import from_full, moment_match, split_along_principal_axis
from numpyro_gmm.mixture.covariance import expand_to_full
from numpyro_gmm.mixture.estep import component_log_prob
from numpyro_gmm.mixture.params import GMMParams, precisions_cholesky_from_covariances

__all__ = ["Candidate", "candidate_moves", "precisions_of"]


class Candidate(NamedTuple):
    """A mixture one move away from the current one, and the move in words."""

    move: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray  # shaped per covariance type


def _responsibilities(x, params: GMMParams, covariance_type) -> tuple[np.ndarray, np.ndarray]:
    """Responsibilities (N, K) and each row's log density under the mixture (N,)."""
    # In the parameters' precision: float32 data stay float32 (JAX's x64 may be off).
    dtype = np.asarray(params.means).dtype
    joint = component_log_prob(jnp.asarray(x, dtype), params, covariance_type)
    joint = np.asarray(joint, float)
    log_density = logsumexp(joint, axis=1)
    return np.exp(joint - log_density[:, None]), log_density


def _merge_order(responsibilities: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of components, the most overlapping first."""
    norms = np.linalg.norm(responsibilities, axis=0)
    overlap = responsibilities.T @ responsibilities / np.maximum(np.outer(norms, norms), 1e-300)
    k = overlap.shape[0]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    return sorted(pairs, key=lambda pair: -overlap[pair])


def _split_order(responsibilities: np.ndarray, log_density: np.ndarray) -> list[int]:
    """Components, the one whose rows the mixture explains worst first."""
    mass = np.maximum(responsibilities.sum(axis=0), 1e-300)
    return list(np.argsort(responsibilities.T @ log_density / mass))


def _freed_slots(
    responsibilities: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    full: np.ndarray,
    n_merges: int,
    n_deletes: int,
):
    """The ways to free one slot: ``(words, slot, merged_into, weights, means, full
    covariances)``.

    A merge puts the moment-matched pair in slot ``merged_into``; a deletion (``merged_into``
    ``None``) drops the component, its rows going to the others. Deletions reach what merges
    miss: a small component far from every other one overlaps none of them, so no merge
    frees its slot.
    """
    for i, j in _merge_order(responsibilities)[:n_merges]:
        w, mu, sigma = weights.copy(), means.copy(), full.copy()
        w[i], mu[i], sigma[i] = moment_match(weights[[i, j]], means[[i, j]], full[[i, j]])
        w[j] = 0.0
        yield f"merge {i}+{j}", j, i, w, mu, sigma
    for j in np.argsort(weights, kind="stable")[:n_deletes]:
        w = weights.copy()
        w[j] = 0.0
        yield f"delete {int(j)}", int(j), None, w, means.copy(), full.copy()


def candidate_moves(
    x,
    params: GMMParams,
    covariances,
    covariance_type: CovarianceType,
    *,
    n_merges: int,
    n_deletes: int,
    n_splits: int,
    n_births: int,
    birth_covariance: np.ndarray | None,
) -> list[Candidate]:
    """Every combination of a freed slot (the ``n_merges`` best merges, the deletions of the
    ``n_deletes`` lightest components) with the ``n_splits`` best splits and the births at
    the ``n_births`` worst-explained rows (none when ``birth_covariance`` is ``None``, as
    under maximum likelihood, where a component on one row is a singularity).

    Parameters
    ----------
    x : array (N, D)
    params : GMMParams
        The current mixture; ``covariances`` are its covariances shaped per type.
    birth_covariance : array (D, D), optional
        The covariance of a newborn component.
    """
    responsibilities, log_density = _responsibilities(x, params, covariance_type)
    x = np.asarray(x, float)
    weights = np.asarray(params.weights, float)
    means = np.asarray(params.means, float)
    stored = np.asarray(covariances, float)
    k, d = means.shape
    full = np.asarray(expand_to_full(stored, covariance_type, k, d), float)
    births = [] if birth_covariance is None else list(np.argsort(log_density)[:n_births])
    splits = _split_order(responsibilities, log_density)[:n_splits]
    candidates = []

    def add(move, w, mu, sigma):
        candidates.append(
            Candidate(move, w / w.sum(), mu, from_full(sigma, covariance_type, stored))
        )

    freed = _freed_slots(responsibilities, weights, means, full, n_merges, n_deletes)
    for freeing, j, merged_into, base_w, base_mu, base_full in freed:
        for target in splits:
            if target == j:
                if merged_into is None:
                    continue  # a deleted component is not split
                # Splitting a merged pair's freed slot means splitting the merged component.
                target = merged_into
            target = int(target)
            w, mu, sigma = base_w.copy(), base_mu.copy(), base_full.copy()
            half, first, second, child = split_along_principal_axis(
                w[target], mu[target], sigma[target]
            )
            w[target] = w[j] = half
            mu[target], mu[j] = first, second
            sigma[target] = sigma[j] = child
            add(f"{freeing}, split {target}", w, mu, sigma)
        for row in births:
            w, mu, sigma = base_w.copy(), base_mu.copy(), base_full.copy()
            w[j] = 1.0 / x.shape[0]
            mu[j], sigma[j] = x[row], birth_covariance
            add(f"{freeing}, birth at row {row}", w, mu, sigma)
    return candidates


def precisions_of(candidate: Candidate, covariance_type: CovarianceType, dtype) -> np.ndarray:
    """The candidate's precision factors, as the engine takes initial values."""
    factors = precisions_cholesky_from_covariances(
        jnp.asarray(candidate.covariances, dtype), covariance_type
    )
    return np.asarray(factors)
