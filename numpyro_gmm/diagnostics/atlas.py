"""Restart atlas: distinct optima among restarts, explained against the best (ALGORITHMS.md §3).

:func:`restart_atlas` groups restarts into distinct optima by Hungarian matching of their means
(:func:`match_means`) and labels each with the landscape diagnostic against the best optimum.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from numpyro_gmm.diagnostics.landscape import LandscapeDiagnostic, _as_2d, landscape_diagnostic

__all__ = ["Optimum", "RestartAtlas", "restart_atlas", "match_means"]


def match_means(estimate, reference) -> tuple[np.ndarray, float]:
    """Hungarian matching of two sets of means.

    Returns
    -------
    permutation : np.ndarray, shape (K_ref,)
        ``estimate[permutation]`` is matched to ``reference`` (requires ``K_est >= K_ref``).
    max_distance : float
        Largest distance of a matched pair.
    """
    estimate = _as_2d(estimate, "estimate")
    reference = _as_2d(reference, "reference")
    cost = np.linalg.norm(reference[:, None, :] - estimate[None, :, :], axis=-1)
    rows, columns = linear_sum_assignment(cost)
    permutation = np.empty(reference.shape[0], int)
    permutation[rows] = columns
    return permutation, float(cost[rows, columns].max())


@dataclass
class Optimum:
    """A distinct optimum of :class:`RestartAtlas`.

    Attributes
    ----------
    objective : float
        Best objective among its restarts.
    restarts : list of int
        Restarts that reached it (its representative first).
    means : np.ndarray, shape (K, D)
        Means of the representative, relabelled to match the best optimum.
    weights : np.ndarray, shape (K,)
    diagnostic : LandscapeDiagnostic
        Relative to the best optimum (the reference).
    """

    objective: float
    restarts: list[int]
    means: np.ndarray
    weights: np.ndarray
    diagnostic: LandscapeDiagnostic

    @property
    def n_restarts(self) -> int:
        """How many restarts reached this optimum."""
        return len(self.restarts)


@dataclass
class RestartAtlas:
    """Distinct optima among restarts, best first (:func:`restart_atlas`).

    Attributes
    ----------
    optima : list of Optimum
    tolerance : float
        Largest Hungarian-matched distance between means of one optimum.
    """

    optima: list[Optimum]
    tolerance: float

    @property
    def best(self) -> Optimum:
        """The optimum with the highest objective."""
        return self.optima[0]

    def __str__(self) -> str:
        lines = [
            f"Restart atlas: {len(self.optima)} distinct optimum/optima "
            f"(tolerance {self.tolerance:.3g})",
            f"{'#':>3} {'objective':>14} {'gap':>10} {'restarts':>8}  diagnostic vs best",
        ]
        best = self.best.objective
        for index, optimum in enumerate(self.optima):
            lines.append(
                f"{index:>3} {optimum.objective:>14.6g} {best - optimum.objective:>10.4g} "
                f"{optimum.n_restarts:>8}  {optimum.diagnostic.summary()}"
            )
        return "\n".join(lines)


def restart_atlas(
    restart_means,
    restart_objectives,
    *,
    sigma: float,
    restart_weights=None,
    tolerance: float | None = None,
    **diagnostic_options,
) -> RestartAtlas:
    """Group restarts into distinct optima and explain each against the best.

    Restarts are visited from the best objective down; a restart joins the first optimum
    whose representative's means it matches (Hungarian matching) within ``tolerance``,
    otherwise it starts a new optimum. Each optimum carries the landscape diagnostic of its
    representative with the best optimum as the reference, which explains why it is worse.

    Parameters
    ----------
    restart_means : array_like, shape (R, K, D) (or (R, K) in 1-D)
    restart_objectives : array_like, shape (R,)
        Higher is better (log-likelihood or log joint); non-finite ones are skipped.
    sigma : float
        Component scale for the diagnostic.
    restart_weights : array_like, shape (R, K), optional
        Fitted weights (default equal).
    tolerance : float, optional
        Default ``sigma / 2``.
    **diagnostic_options
        Passed to :func:`landscape_diagnostic`.

    Returns
    -------
    RestartAtlas
    """
    means = np.asarray(restart_means, float)
    if means.ndim == 2:
        means = means[..., None]
    objectives = np.asarray(restart_objectives, float)
    n_restarts, n_components = means.shape[:2]
    if objectives.shape != (n_restarts,):
        raise ValueError(f"restart_objectives must have shape ({n_restarts},).")
    if restart_weights is None:
        weights = np.full((n_restarts, n_components), 1.0 / n_components)
    else:
        weights = np.asarray(restart_weights, float)
    tolerance = sigma / 2 if tolerance is None else float(tolerance)
    order = [int(r) for r in np.argsort(-objectives, kind="stable") if np.isfinite(objectives[r])]
    if not order:
        raise ValueError("No restart has a finite objective.")
    members: list[list[int]] = []
    representatives: list[np.ndarray] = []
    for r in order:
        for index, representative in enumerate(representatives):
            _, distance = match_means(means[r], representative)
            if distance <= tolerance:
                members[index].append(r)
                break
        else:
            members.append([r])
            representatives.append(means[r])
    best = members[0][0]
    optima = []
    for group in members:
        head = group[0]
        permutation, _ = match_means(means[head], means[best])
        diagnostic = landscape_diagnostic(
            means[head][permutation],
            means[best],
            sigma,
            reference_weights=weights[best],
            fitted_weights=weights[head][permutation],
            **diagnostic_options,
        )
        optima.append(
            Optimum(
                objective=float(objectives[head]),
                restarts=group,
                means=means[head][permutation],
                weights=weights[head][permutation],
                diagnostic=diagnostic,
            )
        )
    return RestartAtlas(optima=optima, tolerance=tolerance)
