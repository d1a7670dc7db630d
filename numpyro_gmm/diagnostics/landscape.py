"""Landscape diagnostic of a fitted location mixture (ALGORITHMS.md §3).

Chen, Song, Xi & Zhang (arXiv 2009.13040) show that, with enough separation, every local
minimum of the population negative log-likelihood of an equal-weight location mixture with
known ``sigma^2 I`` is a non-overlapping combination of groups of three kinds: *matched* (one
fitted mean on one true mean), *one-fits-many* (one fitted mean near the centroid of several
true means) and *many-fit-one* (several fitted means near one true mean).
:func:`landscape_diagnostic` labels a fit that way against reference means (the truth, or the
best fit found).

The diagnostic, with ``K`` fitted means ``beta``, ``K*`` reference means ``theta``, ``sigma``,
reference weights ``w`` and fitted weights ``pi``:

1. fitted components with weight ``< 1 / (10 K)`` are ORPHAN and take no further part;
2. ``R[i, s] = E_{x ~ N(theta_s, sigma^2 I)} psi_i(x)`` with
   ``psi_i(x) = pi_i N(x | beta_i, sigma^2 I) / sum_k pi_k N(x | beta_k, sigma^2 I)``, by
   Gauss-Hermite quadrature in one and two dimensions and by Monte Carlo above;
3. ``M[i, s] = w_s R[i, s] / sum_s' w_s' R[i, s']``;
   edge ``(i, s)`` iff ``M[i, s] >= 0.5 max_s' M[i, s']`` or ``R[i, s] >= 0.5 max_i' R[i', s]``;
4. **(choice)** a reference mean farther than ``reach = max(Delta, 4 sigma)`` from every
   non-orphan fitted mean is UNCOVERED and loses its edges. The edge rule alone always links
   a reference mean to the fitted mean that takes its responsibility, however far, so it
   cannot by itself say that nothing fits there; ``reach`` is far enough that a
   one-fits-many mean half-way between true means stays linked to them;
5. groups are the connected components of the bipartite graph, classified with
   ``tol = min(Delta / 4, 2 sigma)`` (``Delta`` the minimum separation of the reference
   means; infinite for one reference mean):

   ========================  ==========================================  ===============
   fitted / reference        condition                                   kind
   ========================  ==========================================  ===============
   1 / 1                     distance ``<= tol``                         MATCHED
   1 / >= 2                  distance to the ``w``-weighted centroid     ONE_FITS_MANY
                             ``<= tol``
   >= 2 / 1                  every distance ``<= tol``                   MANY_FIT_ONE
   0 / 1                     (step 4)                                    UNCOVERED
   anything else                                                         UNSTRUCTURED
   ========================  ==========================================  ===============

The thresholds (0.5, ``1 / (10 K)``, ``tol``, ``reach``) are engineering choices.
"""

import enum
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.sparse import csr_array
from scipy.sparse.csgraph import connected_components
from scipy.special import logsumexp

__all__ = ["GroupKind", "Group", "LandscapeDiagnostic", "landscape_diagnostic"]


class GroupKind(enum.StrEnum):
    """Kind of a group of the landscape diagnostic."""

    MATCHED = "matched"
    ONE_FITS_MANY = "one-fits-many"
    MANY_FIT_ONE = "many-fit-one"
    UNCOVERED = "uncovered"
    UNSTRUCTURED = "unstructured"
    ORPHAN = "orphan"


@dataclass(frozen=True)
class Group:
    """One group of the diagnostic.

    Attributes
    ----------
    kind : GroupKind
    fitted : tuple of int
        Indices of the fitted means in the group.
    reference : tuple of int
        Indices of the reference means in the group.
    distance : float
        MATCHED: distance of the pair; ONE_FITS_MANY: distance of the fitted mean to the
        weighted centroid of the reference means; MANY_FIT_ONE: largest distance of a fitted
        mean to the reference mean; UNCOVERED: distance to the nearest non-orphan fitted
        mean; ORPHAN: distance to the nearest reference mean; UNSTRUCTURED: largest distance
        of a member to the nearest member of the other side (infinite if one side is empty).
    """

    kind: GroupKind
    fitted: tuple[int, ...]
    reference: tuple[int, ...]
    distance: float

    def __str__(self) -> str:
        return (
            f"{self.kind.name}(fitted={list(self.fitted)}, reference={list(self.reference)}, "
            f"distance={self.distance:.4g})"
        )


_ORDER = {kind: index for index, kind in enumerate(GroupKind)}


@dataclass
class LandscapeDiagnostic:
    """Result of :func:`landscape_diagnostic`.

    Attributes
    ----------
    groups : list of Group
        Every fitted and every reference mean belongs to exactly one group.
    responsibilities : np.ndarray, shape (K, K*)
        ``R[i, s]`` (NaN rows for orphans).
    shares : np.ndarray, shape (K, K*)
        ``M[i, s]`` (NaN rows for orphans).
    edges : np.ndarray, shape (K, K*), bool
        The bipartite graph after steps 3 and 4.
    separation : float
        ``Delta``, the minimum distance between reference means.
    tol, reach, sigma : float
        Thresholds used.
    """

    groups: list[Group]
    responsibilities: np.ndarray = field(repr=False)
    shares: np.ndarray = field(repr=False)
    edges: np.ndarray = field(repr=False)
    separation: float
    tol: float
    reach: float
    sigma: float

    def count(self, kind: GroupKind | str) -> int:
        """Number of groups of ``kind``."""
        return sum(group.kind == GroupKind(kind) for group in self.groups)

    def kinds(self) -> Counter:
        """Number of groups of every kind present."""
        return Counter(group.kind for group in self.groups)

    def of_kind(self, kind: GroupKind | str) -> list[Group]:
        """The groups of ``kind``."""
        return [group for group in self.groups if group.kind == GroupKind(kind)]

    @property
    def all_matched(self) -> bool:
        """Every group is MATCHED (the fit sits on the reference)."""
        return all(group.kind == GroupKind.MATCHED for group in self.groups)

    @property
    def is_structured(self) -> bool:
        """Every group is MATCHED, ONE_FITS_MANY or MANY_FIT_ONE (the paper's local minima)."""
        allowed = {GroupKind.MATCHED, GroupKind.ONE_FITS_MANY, GroupKind.MANY_FIT_ONE}
        return all(group.kind in allowed for group in self.groups)

    def summary(self) -> str:
        """One line: ``MATCHED x2 + ONE_FITS_MANY{0,1} + ...``."""
        parts = []
        matched = self.count(GroupKind.MATCHED)
        if matched:
            parts.append(f"MATCHED x{matched}")
        for group in self.groups:
            if group.kind != GroupKind.MATCHED:
                if group.kind in (GroupKind.ORPHAN,):
                    members = group.fitted
                else:
                    members = group.reference or group.fitted
                parts.append(f"{group.kind.name}{{{','.join(map(str, members))}}}")
        return " + ".join(parts) if parts else "(empty)"

    def __str__(self) -> str:
        lines = [
            f"Landscape diagnostic: {self.summary()}",
            f"  Delta = {self.separation:.4g}, sigma = {self.sigma:.4g}, tol = {self.tol:.4g}, "
            f"reach = {self.reach:.4g}",
        ]
        lines.extend(f"  {group}" for group in self.groups)
        return "\n".join(lines)


def _as_2d(means, name: str) -> np.ndarray:
    array = np.asarray(means, float)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (K, D) (or (K,) in 1-D), got {array.shape}.")
    return array


def _normalized(weights, size: int, name: str) -> np.ndarray:
    if weights is None:
        return np.full(size, 1.0 / size)
    weights = np.asarray(weights, float)
    if weights.shape != (size,) or np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError(f"{name} must be {size} non-negative numbers, got {weights}.")
    return weights / weights.sum()


def _standard_nodes(
    n_features: int, method: str, n_quad: int, n_mc: int, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``z`` (Q, D) and weights (Q,) with ``sum_q w_q f(z_q) ~ E f(Z)``, Z ~ N(0, I)."""
    if method == "auto":
        method = "quadrature" if n_features <= 2 else "monte_carlo"
    if method == "quadrature":
        nodes_1d, weights_1d = hermegauss(n_quad)
        weights_1d = weights_1d / math.sqrt(2 * math.pi)
        grids = np.meshgrid(*([nodes_1d] * n_features), indexing="ij")
        nodes = np.stack([grid.ravel() for grid in grids], axis=-1)
        weight_grids = np.meshgrid(*([weights_1d] * n_features), indexing="ij")
        weights = np.prod(np.stack([grid.ravel() for grid in weight_grids], axis=-1), axis=-1)
        return nodes, weights
    if method == "monte_carlo":
        rng = np.random.default_rng(0) if rng is None else np.random.default_rng(rng)
        return rng.standard_normal((n_mc, n_features)), np.full(n_mc, 1.0 / n_mc)
    raise ValueError(f"method must be 'auto', 'quadrature' or 'monte_carlo', got {method!r}.")


def _log_psi(points: np.ndarray, means: np.ndarray, log_weights: np.ndarray, sigma: float):
    """``log psi_i(x)`` and ``log sum_k pi_k N(x | beta_k, sigma^2 I)`` for points (..., D)."""
    squared = np.sum((points[..., None, :] - means) ** 2, axis=-1)
    n_features = means.shape[-1]
    log_joint = (
        log_weights
        - 0.5 * squared / sigma**2
        - n_features * math.log(sigma)
        - 0.5 * n_features * math.log(2 * math.pi)
    )
    log_norm = logsumexp(log_joint, axis=-1, keepdims=True)
    return log_joint - log_norm, log_norm[..., 0]


def _min_separation(means: np.ndarray) -> float:
    if means.shape[0] < 2:
        return math.inf
    distances = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=-1)
    return float(np.min(distances[~np.eye(means.shape[0], dtype=bool)]))


def landscape_diagnostic(
    fitted_means,
    reference_means,
    sigma: float,
    *,
    reference_weights=None,
    fitted_weights=None,
    method: str = "auto",
    n_quad: int = 48,
    n_mc: int = 4096,
    rng: int | np.random.Generator | None = None,
    reach: float | None = None,
) -> LandscapeDiagnostic:
    """Classify a fit into matched / one-fits-many / many-fit-one groups (module docstring).

    Parameters
    ----------
    fitted_means : array_like, shape (K, D) or (K,)
    reference_means : array_like, shape (K*, D) or (K*,)
        True means, or the means of the best fit found.
    sigma : float
        Known component standard deviation (covariance ``sigma^2 I``).
    reference_weights, fitted_weights : array_like, optional
        Default equal. Fitted weights below ``1 / (10 K)`` make ORPHAN components.
    method : {"auto", "quadrature", "monte_carlo"}
        How ``R`` is computed; ``"auto"`` uses Gauss-Hermite quadrature (``n_quad`` nodes per
        dimension) for ``D <= 2`` and Monte Carlo (``n_mc`` common draws) above.
    n_quad, n_mc : int
    rng : int or Generator, optional
        Seed of the Monte Carlo draws (default 0: deterministic).
    reach : float, optional
        Default ``max(Delta, 4 sigma)`` (``4 sigma`` for a single reference mean).

    Returns
    -------
    LandscapeDiagnostic
    """
    beta = _as_2d(fitted_means, "fitted_means")
    theta = _as_2d(reference_means, "reference_means")
    if beta.shape[1] != theta.shape[1]:
        raise ValueError(
            f"fitted ({beta.shape[1]}) and reference ({theta.shape[1]}) dimensions differ."
        )
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    n_fitted, n_reference = beta.shape[0], theta.shape[0]
    w = _normalized(reference_weights, n_reference, "reference_weights")
    pi = _normalized(fitted_weights, n_fitted, "fitted_weights")
    orphan = pi < 1.0 / (10 * n_fitted)
    active = np.flatnonzero(~orphan)
    delta = _min_separation(theta)
    tol = min(delta / 4, 2 * sigma)
    if reach is None:
        reach = max(delta if math.isfinite(delta) else 0.0, 4 * sigma)

    nodes, node_weights = _standard_nodes(theta.shape[1], method, n_quad, n_mc, rng)
    points = theta[:, None, :] + sigma * nodes[None, :, :]  # (K*, Q, D)
    log_pi = np.log(pi[active] / pi[active].sum())
    log_psi, _ = _log_psi(points, beta[active], log_pi, sigma)  # (K*, Q, K_active)
    r_active = np.einsum("q,sqi->is", node_weights, np.exp(log_psi))
    weighted = w[None, :] * r_active
    m_active = weighted / np.maximum(weighted.sum(axis=1, keepdims=True), 1e-300)
    edges_active = (m_active >= 0.5 * m_active.max(axis=1, keepdims=True)) | (
        r_active >= 0.5 * r_active.max(axis=0, keepdims=True)
    )
    distances = np.linalg.norm(beta[:, None, :] - theta[None, :, :], axis=-1)  # (K, K*)
    nearest_active = distances[active].min(axis=0) if active.size else np.full(n_reference, np.inf)
    uncovered = nearest_active > reach
    edges_active[:, uncovered] = False

    responsibilities = np.full((n_fitted, n_reference), np.nan)
    shares = np.full((n_fitted, n_reference), np.nan)
    edges = np.zeros((n_fitted, n_reference), bool)
    responsibilities[active] = r_active
    shares[active] = m_active
    edges[active] = edges_active

    groups: list[Group] = []
    for i in np.flatnonzero(orphan):
        groups.append(Group(GroupKind.ORPHAN, (int(i),), (), float(distances[i].min())))
    for s in np.flatnonzero(uncovered):
        groups.append(Group(GroupKind.UNCOVERED, (), (int(s),), float(nearest_active[s])))
    # Bipartite graph on active fitted (0..A-1) and covered references (A..A+K*-1).
    n_active = active.size
    adjacency = np.zeros((n_active + n_reference,) * 2, bool)
    adjacency[:n_active, n_active:] = edges_active
    _, labels = connected_components(csr_array(adjacency), directed=False)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        fitted = tuple(int(active[k]) for k in members if k < n_active)
        reference = tuple(int(k - n_active) for k in members if k >= n_active)
        if not fitted and len(reference) == 1 and uncovered[reference[0]]:
            continue  # already reported as UNCOVERED
        groups.append(_classify(fitted, reference, beta, theta, w, tol))
    groups.sort(key=lambda g: (_ORDER[g.kind], min(g.reference or (n_reference,)), g.fitted))
    return LandscapeDiagnostic(
        groups=groups,
        responsibilities=responsibilities,
        shares=shares,
        edges=edges,
        separation=delta,
        tol=tol,
        reach=float(reach),
        sigma=float(sigma),
    )


def _classify(
    fitted: tuple[int, ...],
    reference: tuple[int, ...],
    beta: np.ndarray,
    theta: np.ndarray,
    w: np.ndarray,
    tol: float,
) -> Group:
    if len(fitted) == 1 and len(reference) == 1:
        distance = float(np.linalg.norm(beta[fitted[0]] - theta[reference[0]]))
        kind = GroupKind.MATCHED if distance <= tol else GroupKind.UNSTRUCTURED
        return Group(kind, fitted, reference, distance)
    if len(fitted) == 1 and len(reference) >= 2:
        group_weights = w[list(reference)]
        centroid = group_weights @ theta[list(reference)] / group_weights.sum()
        distance = float(np.linalg.norm(beta[fitted[0]] - centroid))
        if distance <= tol:
            return Group(GroupKind.ONE_FITS_MANY, fitted, reference, distance)
    if len(fitted) >= 2 and len(reference) == 1:
        distance = float(np.max(np.linalg.norm(beta[list(fitted)] - theta[reference[0]], axis=-1)))
        if distance <= tol:
            return Group(GroupKind.MANY_FIT_ONE, fitted, reference, distance)
    if fitted and reference:
        cross = np.linalg.norm(
            beta[list(fitted)][:, None, :] - theta[list(reference)][None, :, :], axis=-1
        )
        distance = float(max(cross.min(axis=1).max(), cross.min(axis=0).max()))
    else:
        distance = math.inf
    return Group(GroupKind.UNSTRUCTURED, fitted, reference, distance)
