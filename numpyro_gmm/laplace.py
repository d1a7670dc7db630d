"""Laplace approximation around a MAP, in NumPyro's unconstrained space.

A MAP is one point; model comparison by PSIS-LOO needs draws with importance weights. The
Laplace approximation provides them:

* The target is the posterior density of the **unconstrained** parameters ``u`` (NumPyro's
  ``biject_to(support)`` transforms, as NUTS sees them), i.e. the log joint **with** the
  log-Jacobian of the transform::

      log p(u) = log p(x, T(u)) + log |det dT/du (u)|   (= -potential_energy(u))

* The proposal is ``q = N(u*, (-H)^-1)`` with ``H`` the Hessian of ``log p(u)`` above at
  ``u*``, computed in float64 by automatic differentiation. The MAP maximizes the log joint
  **without** the Jacobian (the package's objective), so ``u_MAP = T^-1(theta_MAP)`` is not
  the mode of ``log p(u)``: the log-Jacobian pulls it (for a variance in log space, by
  ``+u``). By default ``u*`` is that mode, reached by a few Newton steps from ``u_MAP``
  (``center="mode"``); ``center="map"`` uses ``u_MAP`` itself. On the galaxies data the
  mode roughly doubles to quintuples the importance-sampling effective sample size.

The importance ratios ``p / q`` correct for the Gaussian shape in
``arviz.loo_approximate_posterior``; mixtures with small components are far from Gaussian,
so check its Pareto k values. When ``-H`` is not positive definite (a ridge, a boundary), its
eigenvalues are replaced by ``max(|lambda|, 1e-6 max|lambda|)`` and a :class:`LaplaceWarning`
says how many were changed; the draws remain a valid proposal because ``log_q`` is the
density of the clipped Gaussian.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from numpyro_gmm.program_cache import ProgramCache

if TYPE_CHECKING:
    import xarray as xr

    from numpyro_gmm.map_result import MAPResult

__all__ = [
    "LaplaceApproximation",
    "LaplaceDraws",
    "LaplaceWarning",
    "laplace_approximation",
    "loo_laplace",
    "sample_laplace",
]

#: Eigenvalues of the negative Hessian below this fraction of the largest are clipped.
EIGENVALUE_FLOOR = 1e-6

#: How the Laplace density is defined, stored in the DataTree's attrs.
LAPLACE_CONVENTION = (
    "N(u*, (-H)^-1) in NumPyro's unconstrained space; log_p = log joint + log-Jacobian of the "
    "constraining transform; u* its mode found by Newton steps from the MAP (center='mode') "
    "or the MAP itself (center='map'); H the Hessian of log_p at u*"
)


class LaplaceWarning(UserWarning):
    """The negative Hessian at the MAP was not positive definite and was clipped."""


class LaplaceApproximation(NamedTuple):
    """A Gaussian in the unconstrained space around a MAP.

    Attributes
    ----------
    mean : np.ndarray, shape (P,)
        The center ``u*`` (unconstrained, flattened).
    eigenvalues : np.ndarray, shape (P,)
        Eigenvalues of the (clipped) negative Hessian; the precision's spectrum.
    eigenvectors : np.ndarray, shape (P, P)
        Its eigenvectors (columns).
    n_clipped : int
        How many eigenvalues were clipped (0 when ``-H`` was positive definite).
    unravel : callable
        Flat vector (P,) -> dict of unconstrained sites.
    """

    mean: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    n_clipped: int
    unravel: Any

    @property
    def covariance(self) -> np.ndarray:
        """``(-H)^-1`` (clipped), shape (P, P)."""
        return (self.eigenvectors / self.eigenvalues) @ self.eigenvectors.T

    def log_density(self, u: np.ndarray) -> np.ndarray:
        """Log density of the Gaussian at flat points ``u`` of shape (..., P)."""
        z = (np.asarray(u) - self.mean) @ self.eigenvectors * np.sqrt(self.eigenvalues)
        return (
            -0.5 * np.sum(z**2, axis=-1)
            - 0.5 * self.mean.size * math.log(2 * math.pi)
            + 0.5 * np.sum(np.log(self.eigenvalues))
        )


class LaplaceDraws(NamedTuple):
    """Draws of :func:`sample_laplace`, all over a leading draw axis of size S.

    Attributes
    ----------
    params : dict
        Site name -> constrained values, shape (S, ...).
    log_p : np.ndarray, shape (S,)
        Log joint plus log-Jacobian at each draw's unconstrained value (the target).
    log_q : np.ndarray, shape (S,)
        Laplace log density of each draw (the proposal).
    log_joint : np.ndarray, shape (S,)
        Log joint at each draw (constrained, no Jacobian: the package's objective).
    log_likelihood : np.ndarray, shape (S, N)
        Pointwise marginal log-likelihood of each draw.
    approximation : LaplaceApproximation
    """

    params: dict
    log_p: np.ndarray
    log_q: np.ndarray
    log_joint: np.ndarray
    log_likelihood: np.ndarray
    approximation: LaplaceApproximation


def _float64_pieces(result: MAPResult):
    """The MAP (unconstrained, flat, float64), its unravel function and the model's args."""
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    mixture = result.mixture
    args = tuple(
        jnp.asarray(a, jnp.float64)
        if isinstance(a, np.ndarray | jnp.ndarray) and np.issubdtype(a.dtype, np.floating)
        else a
        for a in mixture.args
    )
    params = {name: jnp.asarray(value, jnp.float64) for name, value in result.params.items()}
    flat, unravel = ravel_pytree(mixture.unconstrain(params))
    return flat, unravel, args


# Compiled programs, one per model structure (as in numpyro_gmm.infer): a fresh closure
# would be traced and compiled again on every call.
_PROGRAMS = ProgramCache(maxsize=16)


def _programs(result: MAPResult, unravel, args: tuple):
    """Jitted ``derivatives(u, arrays)`` and ``score(draws, arrays)`` for this model.

    ``derivatives`` gives ``log p(u)`` (log joint + log-Jacobian), its gradient and Hessian;
    ``score`` maps flat draws (S, P) to constrained sites, ``log p``, the log joint and the
    pointwise log-likelihood. Array arguments of the model are passed in (``arrays``), the
    others are closed over.
    """
    import jax.numpy as jnp

    dynamic = tuple(i for i, a in enumerate(args) if isinstance(a, np.ndarray | jnp.ndarray))
    static = tuple((i, a) for i, a in enumerate(args) if i not in dynamic)
    shapes = tuple((name, np.shape(v)) for name, v in sorted(result.params.items()))
    if result.mixture.kwargs:  # keyword arguments may hold data: not cached
        return _build_programs(result.mixture.without_data(), unravel, len(args), dynamic, static)
    key = (*result.mixture.structure_key(), shapes, static)
    return _PROGRAMS.get(
        key,
        lambda: _build_programs(result.mixture.without_data(), unravel, len(args), dynamic, static),
    )


def _build_programs(mixture, unravel, n_args: int, dynamic: tuple, static: tuple):
    import jax
    import jax.numpy as jnp

    transforms = mixture.transforms()

    def full_args(arrays):
        merged = dict(static)
        merged.update(zip(dynamic, arrays, strict=True))
        return tuple(merged[i] for i in range(n_args))

    def log_target(flat, model_args):
        unconstrained = unravel(flat)
        constrained = mixture.constrain(unconstrained)
        log_joint = mixture.log_joint(constrained, model_args)
        log_jacobian = sum(
            jnp.sum(transforms[name].log_abs_det_jacobian(unconstrained[name], constrained[name]))
            for name in transforms
        )
        return log_joint + log_jacobian, log_joint, constrained

    @jax.jit
    def derivatives(flat, arrays):
        model_args = full_args(arrays)

        def value(u):
            return log_target(u, model_args)[0]

        return value(flat), jax.grad(value)(flat), jax.hessian(value)(flat)

    @jax.jit
    def score(draws, arrays):
        model_args = full_args(arrays)

        def one(flat):
            log_p, log_joint, constrained = log_target(flat, model_args)
            log_probs = mixture.component_log_probs(constrained, model_args)
            return constrained, log_p, log_joint, jax.nn.logsumexp(log_probs, axis=1)

        return jax.vmap(one)(draws)

    return derivatives, score


def _dynamic_args(args: tuple) -> tuple:
    """The array arguments of the model (passed to the jitted programs)."""
    import jax.numpy as jnp

    return tuple(a for a in args if isinstance(a, np.ndarray | jnp.ndarray))


def _spectrum(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Eigen-decomposition of ``-H``, eigenvalues clipped to ``max(|lambda|, floor)``."""
    precision = -0.5 * (hessian + hessian.T)
    eigenvalues, eigenvectors = np.linalg.eigh(precision)
    largest = float(np.max(np.abs(eigenvalues)))
    floor = EIGENVALUE_FLOOR * largest if largest > 0 else 1.0
    clipped = np.maximum(np.abs(eigenvalues), floor)
    return clipped, eigenvectors, int(np.sum(eigenvalues < floor)), floor


def laplace_approximation(
    result: MAPResult, *, center: str = "mode", max_newton_steps: int = 50
) -> LaplaceApproximation:
    """Laplace approximation of the posterior around ``result``'s MAP (module docstring).

    Parameters
    ----------
    result : MAPResult
    center : {"mode", "map"}
        ``"mode"`` (default): the mode of the unconstrained posterior density ``log p(u)``,
        found by (modified) Newton steps with backtracking from ``u_MAP``; ``"map"``:
        ``u_MAP`` itself. The mode gives a better importance-sampling proposal (``u_MAP``
        is off the mode of ``log p(u)`` by the log-Jacobian's pull).
    max_newton_steps : int
        Most Newton steps when ``center="mode"``.

    Returns
    -------
    LaplaceApproximation

    Raises
    ------
    ValueError
        If the log density or its Hessian is not finite at the MAP.

    Warns
    -----
    LaplaceWarning
        If ``-H`` at the center is not positive definite and its spectrum was clipped.
    """
    import jax

    if center not in ("mode", "map"):
        raise ValueError(f"center must be 'mode' or 'map', got {center!r}.")
    with jax.enable_x64(True):
        flat, unravel, args = _float64_pieces(result)
        program, _ = _programs(result, unravel, args)
        arrays = _dynamic_args(args)

        def derivatives(u):
            return program(u, arrays)

        u = np.asarray(flat, np.float64)
        f, g, h = (np.asarray(a, np.float64) for a in derivatives(u))
        if not (np.isfinite(f) and np.all(np.isfinite(h)) and np.all(np.isfinite(g))):
            raise ValueError(
                "The log posterior or its Hessian is not finite at the MAP (a parameter at "
                "the edge of its support?); no Laplace approximation is possible."
            )
        for _ in range(max_newton_steps if center == "mode" else 0):
            eigenvalues, eigenvectors, _, _ = _spectrum(h)
            step = eigenvectors @ ((eigenvectors.T @ g) / eigenvalues)
            if float(g @ step) < 1e-12 * (1.0 + abs(float(f))):
                break  # the predicted gain is negligible: at the mode
            size = 1.0
            while size > 1e-6:
                candidate = u + size * step
                f_new, g_new, h_new = (np.asarray(a, np.float64) for a in derivatives(candidate))
                if np.isfinite(f_new) and f_new >= f and np.all(np.isfinite(h_new)):
                    break
                size /= 2
            else:
                break  # no step improves the density: keep the current point
            u, f, g, h = candidate, f_new, g_new, h_new
    eigenvalues, eigenvectors, n_clipped, floor = _spectrum(h)
    if n_clipped:
        warnings.warn(
            f"The negative Hessian of the log posterior at the Laplace center has {n_clipped} "
            f"of {eigenvalues.size} eigenvalues below {floor:.3g}: the center is not a strict "
            "local maximum of the unconstrained posterior density. They were replaced by "
            "max(|lambda|, floor); the importance weights of loo_approximate_posterior "
            "account for it, but check its Pareto k values.",
            LaplaceWarning,
            stacklevel=2,
        )
    return LaplaceApproximation(u, eigenvalues, eigenvectors, n_clipped, unravel)


def sample_laplace(
    result: MAPResult, num_draws: int, rng_key: Any = 0, *, center: str = "mode"
) -> LaplaceDraws:
    """Draw from the Laplace approximation and score every draw.

    Parameters
    ----------
    result : MAPResult
    num_draws : int
        Number of draws ``S``.
    rng_key : int, numpy Generator or JAX PRNG key
        Seed of the draws.
    center : {"mode", "map"}
        See :func:`laplace_approximation`.

    Returns
    -------
    LaplaceDraws
    """
    import jax
    import jax.numpy as jnp

    if not isinstance(num_draws, int | np.integer) or num_draws < 1:
        raise ValueError(f"num_draws must be an integer >= 1, got {num_draws!r}.")
    approximation = laplace_approximation(result, center=center)
    if isinstance(rng_key, int | np.integer):
        normal = np.random.default_rng(int(rng_key)).standard_normal
    elif isinstance(rng_key, np.random.Generator):
        normal = rng_key.standard_normal
    else:

        def normal(shape):
            return np.asarray(jax.random.normal(rng_key, shape), np.float64)

    z = normal((int(num_draws), approximation.mean.size))
    draws = approximation.mean + (z / np.sqrt(approximation.eigenvalues)) @ (
        approximation.eigenvectors.T
    )
    log_q = approximation.log_density(draws)
    with jax.enable_x64(True):
        _, unravel, args = _float64_pieces(result)
        _, score = _programs(result, unravel, args)
        scored = score(jnp.asarray(draws), _dynamic_args(args))
        constrained, log_p, log_joint, pointwise = scored
        params = {name: np.asarray(value) for name, value in constrained.items()}
        log_p, log_joint, pointwise = (np.asarray(a) for a in (log_p, log_joint, pointwise))
    return LaplaceDraws(params, log_p, log_q, log_joint, pointwise, approximation)


def loo_laplace(data: xr.DataTree | MAPResult, **kwargs: Any):
    """PSIS-LOO of a MAP through its Laplace draws (``arviz.loo_approximate_posterior``).

    Parameters
    ----------
    data : xarray.DataTree or MAPResult
        A tree from ``result.to_datatree(laplace_draws=S)`` (its ``sample_stats`` holds
        ``log_p`` and ``log_q``), or a result (then 1000 draws are made with seed 0).
    **kwargs
        Passed to ``arviz.loo_approximate_posterior`` (``pointwise``, ``var_name``, ...).

    Returns
    -------
    arviz_stats.ELPDData
        Usable in ``arviz.compare`` alongside NUTS-based ``arviz.loo`` results.
    """
    import arviz_stats

    if hasattr(data, "mixture"):
        data = data.to_datatree(laplace_draws=1000, rng_key=0)
    stats = data["sample_stats"]
    if "log_p" not in stats or "log_q" not in stats:
        raise ValueError(
            "The tree has no Laplace draws (sample_stats lacks log_p / log_q); build it with "
            "result.to_datatree(laplace_draws=S)."
        )
    return arviz_stats.loo_approximate_posterior(
        data, log_p=stats["log_p"], log_q=stats["log_q"], **kwargs
    )
