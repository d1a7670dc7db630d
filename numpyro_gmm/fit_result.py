"""The one result type of every fit, and the one rule that chooses its restart.

Every entry point (the scikit-learn facade, the command line, :func:`numpyro_gmm.fit`,
streaming and multi-device fits) ends in a :class:`FitResult`. The chosen restart is decided
once, by :func:`choose_restart`, and stored: nothing downstream re-derives it from the
objectives, so no field can describe a restart whose parameters were not returned.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from numpyro_gmm import errors
from numpyro_gmm.errors import EmptyComponentWarning, FitFailedError

__all__ = ["FitResult", "Restarts", "choose_restart", "last_values", "warn_about"]


class Restarts(NamedTuple):
    """Outcome of every restart, arrays of shape (R,).

    Attributes
    ----------
    objective : np.ndarray
        Log joint (log-likelihood plus log prior, summed over the data) of each restart's
        final parameters.
    n_iter : np.ndarray
        Steps of the method's loop (and of the polish, when one ran) taken by each restart.
    converged : np.ndarray of bool
        The restart's last loop (the polish, when one ran) stopped on ``tol``.
    failed : np.ndarray of bool
        The restart produced non-finite or not positive definite parameters; it is never
        chosen.
    """

    objective: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    failed: np.ndarray

    @classmethod
    def single(cls, objective: float, n_iter: int, converged: bool, failed: bool = False):
        """The outcome of a fit with one restart."""
        return cls(
            np.asarray([objective], np.float64),
            np.asarray([n_iter], np.int64),
            np.asarray([converged], bool),
            np.asarray([failed], bool),
        )


def last_values(trace: np.ndarray) -> np.ndarray:
    """Per restart, the last finite value of its trace (``-inf`` where it has none): the
    lower bound of the parameters entering its last iteration, scikit-learn's
    ``lower_bound_``."""
    trace = np.asarray(trace, np.float64)
    if trace.shape[1] == 0:  # max_iter = 0
        return np.full(trace.shape[0], -np.inf)
    finite = np.isfinite(trace)
    last = trace.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)
    values = trace[np.arange(trace.shape[0]), last]
    return np.where(finite.any(axis=1), values, -np.inf)


def choose_restart(restarts: Restarts, score: np.ndarray | None = None) -> int:
    """Index of the restart with the highest ``score`` among those that did not fail.

    ``score`` defaults to ``restarts.objective``, the log joint of each restart's returned
    parameters; scikit-learn's rule, the lower bound entering the last iteration, is
    ``score=last_values(trace)`` (the two agree on restarts that converged).

    Raises
    ------
    FitFailedError
        If every restart failed.
    """
    failed = np.asarray(restarts.failed, bool) | ~np.isfinite(restarts.objective)
    if failed.all():
        raise FitFailedError(
            "Fitting the mixture model failed because some components have ill-defined "
            "empirical covariance (for instance caused by singleton or collapsed samples). "
            "Try to decrease the number of components, increase reg_covar, or scale the "
            "input data. In float32, float64 data (or JAX's x64 mode) may also help."
        )
    score = restarts.objective if score is None else np.asarray(score, np.float64)
    # Among equal scores (e.g. no iteration ran), the highest objective.
    ranked = np.lexsort(
        (np.where(failed, -np.inf, restarts.objective), np.where(failed, -np.inf, score))
    )
    return int(ranked[-1])


@dataclass(frozen=True)
class FitResult:
    """Everything a fit produced, as numpy arrays on the host.

    Attributes
    ----------
    params : GMMParams or dict
        Parameters of the chosen restart: :class:`~numpyro_gmm.mixture.params.GMMParams` for
        Gaussian mixtures, a dict of unconstrained-free site values for generalized EM.
    objective : float
        Log joint of ``params`` (``restarts.objective[best_restart]``, except for
        ``"gradient_em"``, whose restarts are its ``n``-component explorations).
    best_restart : int
        The restart whose parameters are returned (:func:`choose_restart`).
    restarts : Restarts
    trace : np.ndarray, shape (R, max_iter)
        Per-sample objective of every step of the method's loop (the state entering the step),
        NaN after a restart stopped.
    method : str
        The method (recipe) that produced the fit.
    covariance_type : str or None
    covariances : np.ndarray or None
        Covariances of ``params``, shaped per covariance type (Gaussian mixtures).
    counts : np.ndarray or None, shape (K,)
        Effective number of points per component of the chosen restart.
    polish_trace : np.ndarray or None, shape (R, polish_iter)
        The same as ``trace`` for the polish stage, when one ran.
    n_samples : int
        Rows of the data.
    options : dict
        The method's options as run (JSON-friendly values).
    extras : dict
        Method-specific results (gradient EM: ``n_components_fit``, ``n_components_found``,
        ``merge_report``; standardized methods: ``standardization``).
    """

    params: Any
    objective: float
    best_restart: int
    restarts: Restarts
    trace: np.ndarray
    method: str = "em"
    covariance_type: str | None = None
    covariances: np.ndarray | None = None
    counts: np.ndarray | None = None
    polish_trace: np.ndarray | None = None
    n_samples: int = 0
    options: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Whether the chosen restart converged."""
        return bool(self.restarts.converged[self.best_restart])

    @property
    def n_iter(self) -> int:
        """Steps taken by the chosen restart."""
        return int(self.restarts.n_iter[self.best_restart])

    @property
    def n_components(self) -> int:
        """Number of components of ``params``."""
        return int(np.shape(self.params.weights)[0])

    def best_trace(self) -> np.ndarray:
        """Per-sample objective of every step of the chosen restart: loop, then polish."""
        pieces = [self.trace[self.best_restart]]
        if self.polish_trace is not None:
            pieces.append(self.polish_trace[self.best_restart])
        trace = np.concatenate([np.asarray(p, np.float64).ravel() for p in pieces])
        return trace[np.isfinite(trace)]

    def replace(self, **changes: Any) -> FitResult:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


def warn_about(result: FitResult, *, max_iter: int, stacklevel: int = 3) -> None:
    """The warnings every fit gives: failed restarts, no convergence, empty components."""
    failed = np.asarray(result.restarts.failed, bool)
    if failed.any():
        warnings.warn(
            f"{int(failed.sum())} of {failed.size} restarts stopped early because their "
            "parameters or objective became non-finite (e.g. a singular covariance or a "
            "component's scale at 0 or infinity); they were left out. Scale the data, or for "
            "Gaussian fits increase reg_covar, to avoid this.",
            errors.ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if max_iter > 0 and not result.converged:
        warnings.warn(
            "Best performing initialization did not converge. Try different init parameters, "
            "or increase max_iter, tol, or check for degenerate data.",
            errors.ConvergenceWarning,
            stacklevel=stacklevel,
        )
    if result.counts is None:
        return
    counts = np.asarray(result.counts)
    empty = np.flatnonzero(counts < 1.0)
    if empty.size:
        warnings.warn(
            f"Component(s) {empty.tolist()} explain less than one data point "
            f"(effective counts {np.round(counts[empty], 4).tolist()}); their parameters "
            "stay finite but are not identified by the data. Consider fewer components.",
            EmptyComponentWarning,
            stacklevel=stacklevel,
        )
