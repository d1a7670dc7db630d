"""Population negative log-likelihood of a location mixture (ALGORITHMS.md §3).

:func:`population_kl` is the population NLL gap of a fit over the truth, and
:func:`population_gradient_descent` descends that NLL to reproduce the worked 1-D example of
Chen, Song, Xi & Zhang (arXiv 2009.13040), whose bad local minimum
:func:`~numpyro_gmm.diagnostics.landscape_diagnostic` then explains.
"""

import math
from dataclasses import dataclass

import numpy as np

from numpyro_gmm.diagnostics.landscape import _as_2d, _log_psi, _normalized, _standard_nodes

__all__ = ["PopulationDescent", "population_gradient_descent", "population_kl"]


def population_kl(
    fitted_means,
    true_means,
    sigma: float,
    *,
    fitted_weights=None,
    true_weights=None,
    method: str = "auto",
    n_quad: int = 64,
    n_mc: int = 20000,
    rng: int | np.random.Generator | None = None,
) -> float:
    """``KL(p_true || p_fit)`` of two location mixtures with covariance ``sigma^2 I``.

    Equal to the population negative log-likelihood of the fit minus that of the truth.
    Expectations by Gauss-Hermite quadrature (``D <= 2``) or Monte Carlo.
    """
    beta = _as_2d(fitted_means, "fitted_means")
    theta = _as_2d(true_means, "true_means")
    pi = _normalized(fitted_weights, beta.shape[0], "fitted_weights")
    w = _normalized(true_weights, theta.shape[0], "true_weights")
    nodes, node_weights = _standard_nodes(theta.shape[1], method, n_quad, n_mc, rng)
    points = theta[:, None, :] + sigma * nodes[None, :, :]
    _, log_fit = _log_psi(points, beta, np.log(pi), sigma)
    _, log_true = _log_psi(points, theta, np.log(w), sigma)
    return float(np.einsum("s,q,sq->", w, node_weights, log_true - log_fit))


@dataclass
class PopulationDescent:
    """Result of :func:`population_gradient_descent`.

    Attributes
    ----------
    means : np.ndarray, shape (K, D)
        Final fitted means.
    n_iter : int
    converged : bool
        The largest step fell below ``tol``.
    kl : float
        ``KL(p_true || p_fit)`` at the final means: the population NLL gap over the truth.
    """

    means: np.ndarray
    n_iter: int
    converged: bool
    kl: float


def population_gradient_descent(
    initial_means,
    true_means,
    sigma: float,
    *,
    true_weights=None,
    step_size: float | None = None,
    max_iter: int = 200_000,
    tol: float = 1e-12,
    method: str = "auto",
    n_quad: int = 64,
    n_mc: int = 20000,
    rng: int | np.random.Generator | None = None,
) -> PopulationDescent:
    """Gradient descent on the population NLL of an equal-weight location mixture.

    The model is ``p_beta(x) = (1/K) sum_k N(x | beta_k, sigma^2 I)`` with ``sigma`` known;
    the data distribution is the true mixture (weights ``true_weights``, default equal).
    The gradient is ``-E_x[psi_k(x) (x - beta_k)] / sigma^2``; expectations by Gauss-Hermite
    quadrature (``D <= 2``) or common Monte Carlo draws (so the descent is deterministic).

    Parameters
    ----------
    initial_means : array_like, shape (K, D) or (K,)
    true_means : array_like, shape (K*, D) or (K*,)
    sigma : float
    true_weights : array_like, optional
    step_size : float, optional
        Default ``K sigma^2``: the step of component ``k`` is then
        ``K E[psi_k(x) (x - beta_k)]``, about the EM step when the shares are equal.
    max_iter : int
    tol : float
        Stop when the largest coordinate of a step is below ``tol``.
    method, n_quad, n_mc, rng
        Quadrature options, as in :func:`landscape_diagnostic`.

    Returns
    -------
    PopulationDescent
    """
    beta = _as_2d(initial_means, "initial_means").copy()
    theta = _as_2d(true_means, "true_means")
    n_fitted = beta.shape[0]
    w = _normalized(true_weights, theta.shape[0], "true_weights")
    if step_size is None:
        step_size = n_fitted * sigma**2
    nodes, node_weights = _standard_nodes(theta.shape[1], method, n_quad, n_mc, rng)
    points = (theta[:, None, :] + sigma * nodes[None, :, :]).reshape(-1, theta.shape[1])
    point_weights = (w[:, None] * node_weights[None, :]).ravel()
    log_pi = np.full(n_fitted, -math.log(n_fitted))
    converged = False
    iteration = 0
    for iteration in range(1, max_iter + 1):  # noqa: B007
        log_psi, _ = _log_psi(points, beta, log_pi, sigma)
        psi = np.exp(log_psi) * point_weights[:, None]  # (P, K)
        direction = psi.T @ points - psi.sum(axis=0)[:, None] * beta
        step = step_size * direction / sigma**2
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            converged = True
            break
    kl = population_kl(
        beta, theta, sigma, true_weights=w, method=method, n_quad=n_quad, n_mc=n_mc, rng=rng
    )
    return PopulationDescent(means=beta, n_iter=iteration, converged=converged, kl=kl)
