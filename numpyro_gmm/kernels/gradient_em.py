"""Gradient EM for (over-parameterized) Gaussian mixtures (ALGORITHMS.md §2).

The setting of the theory (Zhou, Xu, Fazel & Du 2025, arXiv 2506.06584) is a mixture whose
components all have the *known* identity covariance. One step computes the responsibilities
``psi_i(x)`` at the entering parameters, then

.. math::

    \\mu_i \\leftarrow \\mu_i + \\eta \\, \\frac{1}{N} \\sum_n \\psi_i(x_n) (x_n - \\mu_i),
    \\qquad
    \\pi_i \\leftarrow \\frac{1}{N} \\sum_n \\psi_i(x_n),

a gradient step of size ``eta`` on the means of ``Q`` (equivalently of the per-sample
log-likelihood, for identity covariances) and an EM step on the weights. The sums are the
centred first moments of :func:`~numpyro_gmm.mixture.estep.sufficient_statistics`, so a step
is one chunked pass over the rows. For fixed spherical covariances (the theory's setting) the
pass is :func:`spherical_mean_statistics`, which skips the second moments and forms the
squared distances with matrix products.

**How "identity" is represented (choice).** With ``learn_covariance=False`` (the default) the
kernel never changes ``params.precisions_cholesky``: whatever covariances enter are held fixed.
The theory's setting is ``covariance_type="spherical"`` with ``precisions_cholesky = 1``
(variance 1), which is what :func:`numpyro_gmm.overparameterized.fit_gradient_em` passes; any
other fixed covariance works the same way (the mean step is then the EM direction
``Sigma_i (gradient)``, a preconditioned gradient step).

**Step size (choice).** ``step_size=1.0`` by default. With learned weights a component ``i``
moves by ``eta * pi_i`` of the way to its EM mean, so ``eta <= 1`` never overshoots the EM
step whatever the weights, while the paper's own experiments use ``eta = 0.05`` with fresh
minibatches. On the benchmark of ``benchmarks/OVERPARAMETERIZED.md`` (full-batch, ``n =
ceil(3 m ln m)``) steps from 0.5 to 2 all reach the same recovery rate; 1.0 is the largest
value that is safe for any weights, and smaller values only need proportionally more steps.

**Mean update variants.** ``mean_update="em"`` divides the step of component ``i`` by its new
weight ``pi_i`` (a per-component preconditioner). With ``step_size=1`` that is *exactly* the
EM update of the means with the covariances held fixed, ``mu_i = sum_n psi_i x_n / sum_n
psi_i``: the benchmark uses it as "EM with known identity covariance". (The plain gradient
step with ``step_size=1`` is *not* EM: it moves only ``pi_i`` of the way.)

**Learned covariances (choice, extension).** With ``learn_covariance=True`` the covariances
take a damped EM step: ``Sigma_i <- (1 - gamma) Sigma_i + gamma Sigma_i^EM`` where
``Sigma^EM`` is the closed-form (MAP-)M-step covariance at the current responsibilities (about
the EM means, with ``reg_covar`` on the diagonal) and ``gamma = covariance_step_size``
(default 0.5). A convex combination of positive-definite matrices stays positive definite.

**Priors.** The weights take the MAP step of the Dirichlet prior when there is one; a mean
prior adds ``eta * grad log p(mu) / N`` to the mean step (a gradient step on the per-sample
log joint); the covariance priors enter through the M-step covariance.

**Objective convention.** ``GradientEMInfo.objective`` is the log joint (log-likelihood plus
log prior, no Jacobian) of the parameters that *entered* the step, summed over the data, as
for :mod:`numpyro_gmm.kernels.em`. Gradient EM need not increase it monotonically.
"""

import math
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from numpyro_gmm._types import Array, CovarianceType, PRNGKey
from numpyro_gmm.mixture.chunking import chunked_sum, n_rows
from numpyro_gmm.mixture.estep import SufficientStats, sufficient_statistics
from numpyro_gmm.mixture.mstep import m_step, map_weights
from numpyro_gmm.mixture.params import (
    GMMParams,
    all_finite,
    covariances_from_precisions_cholesky,
    precisions_cholesky_from_covariances,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior

__all__ = [
    "DEFAULT_STEP_SIZE",
    "GradientEMState",
    "GradientEMInfo",
    "init",
    "build_kernel",
    "get_params",
    "spherical_mean_statistics",
]

DEFAULT_STEP_SIZE: float = 1.0
"""Default ``eta`` of the mean step (see the module docstring for how it was chosen)."""


class GradientEMState(NamedTuple):
    """State carried between gradient-EM steps.

    Attributes
    ----------
    params : GMMParams
        Current weights, means and precision factors. With ``learn_covariance=False`` the
        precision factors are the fixed, known covariances of the model.
    """

    params: GMMParams


class GradientEMInfo(NamedTuple):
    """Diagnostics of one gradient-EM step (not carried).

    Attributes
    ----------
    objective : Array, shape ()
        Log joint, summed over the data, of the parameters that entered the step.
    counts : Array, shape (K,)
        Effective number of points per component under those parameters.
    mean_step_norm : Array, shape ()
        Largest Euclidean length of the update of one mean in this step.
    is_finite : Array, shape (), bool
        Whether every new parameter is finite.
    """

    objective: Array
    counts: Array
    mean_step_norm: Array
    is_finite: Array


def init(params: GMMParams) -> GradientEMState:
    """Initial gradient-EM state from initial parameters (used as they are)."""
    return GradientEMState(params=params)


def get_params(state: GradientEMState) -> GMMParams:
    """The parameters held by a gradient-EM state."""
    return state.params


def _new_weights(counts: Array, prior: GaussianMixturePrior | None) -> Array:
    """EM (or Dirichlet-MAP) weights; ``10 eps`` keeps an empty component's weight positive."""
    counts = counts + 10 * jnp.finfo(counts.dtype).eps
    return map_weights(counts, None if prior is None else prior.weight_concentration)


def spherical_mean_statistics(x: Array, params: GMMParams, chunk_size: int) -> SufficientStats:
    """Counts, centred first moments and log-likelihood of a spherical mixture, by matmuls.

    The same numbers as :func:`~numpyro_gmm.mixture.estep.sufficient_statistics` for
    ``covariance_type="spherical"`` (``first`` centred at ``params.means``) except that
    ``second`` is not computed (zeros). The squared distances come from the expansion
    ``|y|^2 - 2 y . m_k + |m_k|^2`` (clamped at 0) instead of an explicit ``(K, C, D)``
    difference tensor, which makes the step several times faster when the covariances are
    fixed and only the means and weights move.

    **Common shift (precision).** Expanded about the origin, the squared distances would lose
    about ``eps |x|^2`` in the exponent and the first moments ``sum r x - N mu`` about
    ``eps N |x|``: in float32, data a thousand units from the origin lose whole units of the
    exponent. Rows and means are therefore first shifted by one common reference point, the
    weight-averaged mean ``c = sum_k pi_k mu_k / sum_k pi_k`` (``y = x - c``, ``m_k = mu_k -
    c``), which leaves every difference ``y - m_k = x - mu_k`` and hence every statistic
    unchanged in exact arithmetic. What remains is relative to the spread of the data and of
    the means about ``c``, not to their distance from the origin: about ``eps (|x - c|^2 +
    |mu_k - c|^2)`` in the exponent, ``eps N_k |mu_k - c|`` in ``first`` (the cancellation of
    ``sum r y`` against ``N_k m_k``), and ``ulp(|x|) / 2`` per coordinate from rounding
    ``x - c`` itself, the resolution at which the data are stored anyway. The explicit
    difference path of :func:`~numpyro_gmm.mixture.estep.sufficient_statistics` avoids the
    first two terms, at the cost of the ``(K, C, D)`` tensor.
    """
    n_features = x.shape[-1]
    log_weights = jnp.log(params.weights)
    precisions = params.precisions_cholesky**2
    constant = n_features * jnp.log(params.precisions_cholesky) - 0.5 * n_features * math.log(
        2 * math.pi
    )
    # Common reference point (exact in exact arithmetic; any point would do): the weighted
    # mean of the means lies inside the data, so |x - c| is of the order of the data's spread.
    reference = jnp.sum(params.weights[:, None] * params.means, axis=0) / jnp.sum(params.weights)
    shifted_means = params.means - reference
    mean_norms = jnp.sum(shifted_means**2, axis=-1)

    def chunk_fn(rows: Array, row_weights: Array, row_index: Array) -> SufficientStats:
        del row_index
        rows = rows - reference
        squared = jnp.sum(rows**2, axis=-1)[:, None] - 2.0 * rows @ shifted_means.T
        squared = jnp.maximum(squared + mean_norms[None, :], 0.0)
        log_prob = log_weights + constant - 0.5 * precisions * squared
        log_norm = jax.nn.logsumexp(log_prob, axis=-1)
        responsibilities = jnp.exp(log_prob - log_norm[:, None]) * row_weights[:, None]
        counts = jnp.sum(responsibilities, axis=0)
        return SufficientStats(
            counts=counts,
            # sum_n r_nk (x_n - mu_k) = sum_n r_nk (y_n - m_k): centred at the entering means.
            first=responsibilities.T @ rows - counts[:, None] * shifted_means,
            second=jnp.zeros((), rows.dtype),
            log_likelihood=jnp.sum(row_weights * log_norm),
        )

    return chunked_sum(chunk_fn, x, chunk_size)


def build_kernel(
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    chunk_size: int,
    prior: GaussianMixturePrior | None = None,
    *,
    step_size: float = DEFAULT_STEP_SIZE,
    learn_covariance: bool = False,
    covariance_step_size: float = 0.5,
    mean_update: Literal["gradient", "em"] = "gradient",
):
    """Return the pure step ``step(rng_key, state, x) -> (GradientEMState, GradientEMInfo)``.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Added to the diagonal of the M-step covariance (used only with ``learn_covariance``).
    chunk_size : int
        Rows per chunk of the E-step.
    prior : GaussianMixturePrior, optional
        Priors of the log joint (see the module docstring); ``None`` is maximum likelihood.
    step_size : float
        ``eta`` of the mean step (default :data:`DEFAULT_STEP_SIZE`).
    learn_covariance : bool
        ``False`` (the theory's setting): covariances stay as they entered. ``True``: damped
        EM step on the covariances.
    covariance_step_size : float
        Damping ``gamma`` in (0, 1] of the covariance step when ``learn_covariance``.
    mean_update : {"gradient", "em"}
        ``"gradient"``: ``mu_i += eta * mean_x[psi_i (x - mu_i)]`` (ALGORITHMS.md §2).
        ``"em"``: the same divided by ``pi_i``; exact EM for the means when ``eta = 1``.

    Returns
    -------
    callable
        The step function (not jitted; the driver jits it).
    """
    if mean_update not in ("gradient", "em"):
        raise ValueError(f"mean_update must be 'gradient' or 'em', got {mean_update!r}.")
    if not 0.0 < covariance_step_size <= 1.0:
        raise ValueError(f"covariance_step_size must be in (0, 1], got {covariance_step_size}.")
    has_mean_prior = prior is not None and prior.mean_loc is not None
    # Fixed spherical covariances need no second moments: use the matmul E-step.
    fast_path = covariance_type == "spherical" and not learn_covariance

    def step(
        rng_key: PRNGKey, state: GradientEMState, x: Array
    ) -> tuple[GradientEMState, GradientEMInfo]:
        del rng_key  # deterministic (full batch); the key keeps one signature for all kernels.
        params = state.params
        n_samples = n_rows(x, chunk_size)
        if fast_path:
            stats = spherical_mean_statistics(x, params, chunk_size)
        else:
            stats = sufficient_statistics(x, params, covariance_type, chunk_size)
        objective = stats.log_likelihood
        if prior is not None:
            objective = objective + log_prior(params, prior, covariance_type)
        # mean_x[psi_i (x - mu_i)]: the statistics are centred at the entering means.
        direction = stats.first / n_samples
        if has_mean_prior:

            def log_prior_of_means(means: Array) -> Array:
                return log_prior(params._replace(means=means), prior, covariance_type)

            direction = direction + jax.grad(log_prior_of_means)(params.means) / n_samples
        weights = _new_weights(stats.counts, prior)
        if mean_update == "em":
            counts = stats.counts + 10 * jnp.finfo(stats.counts.dtype).eps
            direction = direction * (n_samples / counts)[:, None]
        update = step_size * direction
        means = params.means + update
        precisions_cholesky = params.precisions_cholesky
        if learn_covariance:
            _, target = m_step(stats, params.means, params, covariance_type, reg_covar, prior)
            current = covariances_from_precisions_cholesky(precisions_cholesky, covariance_type)
            damped = (1.0 - covariance_step_size) * current + covariance_step_size * target
            precisions_cholesky = precisions_cholesky_from_covariances(damped, covariance_type)
        new_params = GMMParams(
            weights=weights, means=means, precisions_cholesky=precisions_cholesky
        )
        info = GradientEMInfo(
            objective=objective,
            counts=stats.counts,
            mean_step_norm=jnp.max(jnp.linalg.norm(update, axis=-1)),
            is_finite=all_finite(new_params),
        )
        return GradientEMState(params=new_params), info

    return step
