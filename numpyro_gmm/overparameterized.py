"""Prune-and-merge for over-parameterized gradient EM (ALGORITHMS.md §2), host side.

The method ``"gradient_em"`` (:mod:`numpyro_gmm.pipeline`) fits
``n = default_n_components(m) = ceil(3 m ln m)`` components with the gradient-EM kernel
(:mod:`numpyro_gmm.kernels.gradient_em`) from ``n`` random data points, then
:func:`prune_and_merge` drops components whose weight is below ``1 / (10 n)`` and merges the
survivors whose means lie within a radius, moment-matching each group, and EM polishes the
merged components.

**m' may differ from m.** What the theory says converges is the *distribution*: surplus
components either lose their weight or sit on a true mean next to others. The merge reports
how many components it finds (``m'``): when ``m' < m`` some true component was never reached
(or two true means lie within the merge radius); when ``m' > m`` two fitted components of one
true component stayed farther apart than the radius (or a cluster really is two).

A model with ``m`` components has ``m`` components by definition, so the pipeline then lands
on ``m`` with :func:`to_n_components` (greedy moment-matched merges of the closest pair in
Runnalls' KL bound while ``m' > m``, moment-preserving splits of the widest component along
its principal axis while ``m' < m``) before the polish, and reports ``m'`` as found.
"""

import math
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components

from numpyro_gmm._types import CovarianceType
from numpyro_gmm.component_moves import from_full, moment_match, split_along_principal_axis
from numpyro_gmm.mixture.covariance import expand_to_full

__all__ = [
    "DEFAULT_MERGE_SCALE",
    "MergeReport",
    "default_n_components",
    "prune_and_merge",
    "to_n_components",
]

DEFAULT_MERGE_SCALE: float = 2.5
"""Default merge radius in fitted standard deviations (see :func:`prune_and_merge`)."""


def default_n_components(m: int) -> int:
    """Number of components to fit for a target of ``m``: ``max(m, ceil(3 m ln m))``.

    ``n >= 3 m ln m`` random data points hit each of ``m`` equal-weight components at least
    once with probability ``>= 1 - 1/m`` (coupon collecting). ``m = 5, 10, 25`` give 25, 70,
    242. For ``m = 1`` the formula gives 0 and one component is all there is to find, so the
    value is 1; ``m = 2`` gives 5.

    Parameters
    ----------
    m : int
        Target number of components, at least 1.

    Returns
    -------
    int
    """
    if int(m) != m or m < 1:
        raise ValueError(f"m must be a positive integer, got {m!r}.")
    m = int(m)
    return max(m, math.ceil(3 * m * math.log(m)))


@dataclass(frozen=True)
class MergeReport:
    """What :func:`prune_and_merge` did.

    Attributes
    ----------
    n_components_found : int
        ``m'``, the number of merged components.
    groups : list of list of int
        For each merged component (in output order), the original components merged into it.
    pruned : list of int
        Original components dropped for a weight below ``weight_threshold``.
    assignment : np.ndarray, shape (n,)
        Merged index of every original component, ``-1`` for pruned ones.
    weight_threshold, merge_radius : float
        The thresholds used (``merge_radius`` is the base radius; with ``n_samples`` each
        pair's radius also counts the sampling error of the means).
    pruned_weight : float
        Total weight of the pruned components (the merged weights are renormalized to 1).
    """

    n_components_found: int
    groups: list[list[int]]
    pruned: list[int]
    assignment: np.ndarray
    weight_threshold: float
    merge_radius: float
    pruned_weight: float

    @property
    def merged(self) -> list[list[int]]:
        """The groups that hold more than one original component."""
        return [group for group in self.groups if len(group) > 1]

    def __str__(self) -> str:
        lines = [
            f"{self.n_components_found} component(s) found "
            f"(merge radius {self.merge_radius:.4g}, weight threshold {self.weight_threshold:.4g})",
            f"pruned {len(self.pruned)} component(s) {self.pruned} "
            f"(total weight {self.pruned_weight:.4g})",
        ]
        for index, group in enumerate(self.groups):
            lines.append(f"  component {index} <- {group}")
        return "\n".join(lines)


def _merge_cost(weights, means, full, i: int, j: int) -> float:
    """Runnalls' upper bound on the KL divergence that merging components i and j costs:
    ``((w_i + w_j) log|S_ij| - w_i log|S_i| - w_j log|S_j|) / 2``."""
    pair = [i, j]
    total, _, merged = moment_match(weights[pair], means[pair], full[pair])
    log_det = [np.linalg.slogdet(m)[1] for m in (merged, full[i], full[j])]
    return 0.5 * (total * log_det[0] - weights[i] * log_det[1] - weights[j] * log_det[2])


def to_n_components(
    weights, means, covariances, covariance_type: CovarianceType, n_components: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Merge or split components until there are ``n_components`` of them.

    While there are too many, the pair whose moment-matched merge has the smallest Runnalls
    cost (an upper bound on the KL divergence it adds) is merged. While there are too few,
    the component with the largest ``w_k lambda_k`` (weight times its largest covariance
    eigenvalue) is split along that eigenvector ``v``: two halves of its weight with means
    ``mu +- sqrt(lambda) v / 2`` and covariance ``Sigma - lambda v v^T / 4``, which keeps
    its first two moments. EM (the polish) then refits them.

    Returns
    -------
    weights, means, covariances, changes
        The adjusted mixture (covariances shaped per ``covariance_type``) and one line per
        merge or split, for the report.
    """
    weights = np.asarray(weights, float).copy()
    means = np.asarray(means, float).copy()
    tied = np.asarray(covariances, float)
    n, d = means.shape
    full = np.asarray(expand_to_full(tied, covariance_type, n, d), float).copy()
    changes: list[str] = []
    while weights.size > n_components:
        pairs = [(i, j) for i in range(weights.size) for j in range(i + 1, weights.size)]
        i, j = min(pairs, key=lambda pair: _merge_cost(weights, means, full, *pair))
        w, mu, sigma = moment_match(weights[[i, j]], means[[i, j]], full[[i, j]])
        changes.append(f"merged components {i} and {j}")
        keep = np.setdiff1d(np.arange(weights.size), [j])
        weights[i], means[i], full[i] = w, mu, sigma
        weights, means, full = weights[keep], means[keep], full[keep]
    while weights.size < n_components:
        k = int(np.argmax(weights * np.linalg.eigvalsh(full)[:, -1]))
        half, first, second, child = split_along_principal_axis(weights[k], means[k], full[k])
        changes.append(f"split component {k} along its principal axis")
        weights[k], means[k], full[k] = half, first, child
        weights = np.append(weights, half)
        means = np.vstack([means, second])
        full = np.concatenate([full, child[None]])
    return weights, means, from_full(full, covariance_type, tied), changes


def _component_scales(covariances_full: np.ndarray) -> np.ndarray:
    """Root mean per-dimension variance ``sqrt(tr Sigma_k / D)`` of every component."""
    d = covariances_full.shape[-1]
    return np.sqrt(np.trace(covariances_full, axis1=-2, axis2=-1) / d)


def _nearest_heavier_links(links: np.ndarray, distances: np.ndarray, weights: np.ndarray):
    """Keep, for every component, only its link to the nearest linked heavier component."""
    size = weights.size
    rank = np.empty(size, int)
    rank[np.lexsort((-np.arange(size), weights))] = np.arange(size)  # ties: lower index heavier
    heavier = rank[None, :] > rank[:, None]
    candidates = np.where(links & heavier, distances, np.inf)
    sparse = np.zeros_like(links)
    has_parent = np.isfinite(candidates).any(axis=1)
    parents = np.argmin(candidates, axis=1)
    sparse[np.flatnonzero(has_parent), parents[has_parent]] = True
    return sparse


def prune_and_merge(
    weights,
    means,
    covariances,
    covariance_type: CovarianceType,
    *,
    weight_threshold: float | None = None,
    merge_radius: float | None = None,
    n_samples: int | None = None,
    linkage: str = "single",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, MergeReport]:
    """Map an over-parameterized fit to the components it found (ALGORITHMS.md §2, choice).

    1. **Prune** components with weight ``< weight_threshold`` (default ``1 / (10 n)``). If
       that would drop every component, the heaviest is kept.
    2. **Merge** the survivors by single linkage: two components are linked when the
       Euclidean distance of their means is at most their linking radius; each connected
       group becomes one component. With ``merge_radius`` given, that radius is used for
       every pair. By default it is ``2.5`` standard deviations,
       ``r = 2.5 * s`` with ``s^2 = sum_k w_k tr(Sigma_k) / (D sum_k w_k)`` the pooled
       per-dimension variance of the survivors (``r = 2.5`` for the unit covariance of the
       theory's setting). When ``n_samples`` is given, the radius of a pair also counts the
       sampling error of the two fitted means, ``r_ij = 2.5 * sqrt(s^2 + tr(Sigma_i) / N_i
       + tr(Sigma_j) / N_j)`` with ``N_i = w_i n_samples`` (choice): a surplus component
       fitted to a handful of a cluster's points sits about ``sqrt(D / N_i)`` from the
       cluster's mean, which in high dimension exceeds any fixed number of standard
       deviations, while true means ``c sqrt(D)`` apart stay unlinked.
    3. **Moment matching.** A group ``G`` becomes weight ``W = sum_G w_k``, mean
       ``mu = sum_G w_k mu_k / W`` and covariance
       ``Sigma = sum_G w_k (Sigma_k + (mu_k - mu)(mu_k - mu)^T) / W``, the first two moments
       of the group's sub-mixture: exact for ``"full"``, its diagonal for ``"diag"``, the mean
       per-dimension variance (``tr Sigma / D``) for ``"spherical"``. A ``"tied"`` model keeps
       its shared covariance (it cannot hold a per-component spread).
    4. The merged weights are renormalized to sum to one, and the merged components are
       ordered by decreasing weight.

    Parameters
    ----------
    weights : array_like, shape (n,)
    means : array_like, shape (n, D)
    covariances : array_like
        Shaped per ``covariance_type`` (as :class:`~numpyro_gmm.fitting.FitResult`).
    covariance_type : {"full", "tied", "diag", "spherical"}
    weight_threshold : float, optional
        Pruning threshold on the weights.
    merge_radius : float, optional
        Linking distance between means, the same for every pair.
    n_samples : int, optional
        Number of data points of the fit; with the default radius, adds the sampling error
        of the means to each pair's radius.

    Returns
    -------
    weights : np.ndarray, shape (m',)
    means : np.ndarray, shape (m', D)
    covariances : np.ndarray
        Shaped per ``covariance_type`` with ``m'`` components.
    report : MergeReport
    """
    weights = np.asarray(weights, float)
    means = np.asarray(means, float)
    n, d = means.shape
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {weights.shape}.")
    full = np.asarray(expand_to_full(np.asarray(covariances, float), covariance_type, n, d))
    if weight_threshold is None:
        weight_threshold = 1.0 / (10.0 * n)
    kept = np.flatnonzero(weights >= weight_threshold)
    if kept.size == 0:
        kept = np.array([int(np.argmax(weights))])
    pruned = np.setdiff1d(np.arange(n), kept)
    kept_weights = weights[kept]
    traces = np.trace(full[kept], axis1=-2, axis2=-1)
    if merge_radius is None:
        pooled = float(np.sum(kept_weights * traces) / (np.sum(kept_weights) * d))
        merge_radius = DEFAULT_MERGE_SCALE * math.sqrt(pooled)
        radii = np.full((kept.size, kept.size), merge_radius)
        if n_samples is not None:
            error = traces / np.maximum(kept_weights * n_samples, 1e-12)
            radii = DEFAULT_MERGE_SCALE * np.sqrt(pooled + error[:, None] + error[None, :])
    else:
        radii = np.full((kept.size, kept.size), float(merge_radius))
    distances = np.linalg.norm(means[kept, None, :] - means[None, kept, :], axis=-1)
    links = distances <= radii
    if linkage == "nearest_heavier":
        links = _nearest_heavier_links(links, distances, kept_weights)
    elif linkage != "single":
        raise ValueError(f"linkage must be 'single' or 'nearest_heavier', got {linkage!r}.")
    _, labels = connected_components(csr_array(links), directed=False)
    n_groups = int(labels.max()) + 1
    group_weights = np.array([kept_weights[labels == g].sum() for g in range(n_groups)])
    order = np.argsort(-group_weights, kind="stable")
    out_weights = np.empty(n_groups)
    out_means = np.empty((n_groups, d))
    out_full = np.empty((n_groups, d, d))
    groups: list[list[int]] = []
    assignment = np.full(n, -1)
    for new_index, g in enumerate(order):
        members = kept[labels == g]
        out_weights[new_index], out_means[new_index], out_full[new_index] = moment_match(
            weights[members], means[members], full[members]
        )
        groups.append(sorted(members.tolist()))
        assignment[members] = new_index
    out_weights /= out_weights.sum()
    out_covariances = from_full(out_full, covariance_type, np.asarray(covariances, float))
    report = MergeReport(
        n_components_found=n_groups,
        groups=groups,
        pruned=pruned.tolist(),
        assignment=assignment,
        weight_threshold=float(weight_threshold),
        merge_radius=float(merge_radius),
        pruned_weight=float(weights[pruned].sum()),
    )
    return out_weights, out_means, out_covariances, report
