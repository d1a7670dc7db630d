"""Expectation-maximization for Gaussian mixtures, ML or MAP (closed form).

One step runs the chunked E-step at the current parameters and the closed-form M-step:

.. math::

    r_{nk} \\propto \\pi_k \\mathcal{N}(x_n | \\mu_k, \\Sigma_k), \\qquad
    \\theta^{t+1} = \\arg\\max_\\theta \\sum_{nk} r_{nk} \\log \\pi_k \\mathcal{N}(x_n|\\theta_k)
    + \\log p(\\theta).

**Objective convention.** ``EMInfo.objective`` scores the parameters that *entered* the step
(scikit-learn's ``lower_bound_`` convention): the log joint
``sum_n log p(x_n | theta^t) + log p(theta^t)``, with no Jacobian term. Monotonicity of EM
means the sequence of objectives never decreases.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from numpyro_gmm._types import Array, CovarianceType, PRNGKey
from numpyro_gmm.mixture.estep import sufficient_statistics
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import GMMParams, all_finite
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior

__all__ = [
    "EMState",
    "EMInfo",
    "GeneralizedEMState",
    "init",
    "build_kernel",
    "build_generalized_kernel",
    "get_params",
]


class EMState(NamedTuple):
    """State carried between EM steps.

    Attributes
    ----------
    params : GMMParams
        Current parameters.
    """

    params: GMMParams


class EMInfo(NamedTuple):
    """Diagnostics of one EM step (not carried).

    Attributes
    ----------
    objective : Array, shape ()
        Log joint of the parameters that entered the step.
    counts : Array, shape (K,)
        Effective number of points per component under those parameters.
    is_finite : Array, shape (), bool
        Whether every new parameter is finite (false when a covariance is not positive
        definite: the driver then keeps the previous parameters and stops).
    """

    objective: Array
    counts: Array
    is_finite: Array


def init(params: GMMParams) -> EMState:
    """Initial EM state from initial parameters."""
    return EMState(params=params)


def get_params(state: EMState) -> GMMParams:
    """The parameters held by an EM state."""
    return state.params


def build_kernel(
    covariance_type: CovarianceType,
    reg_covar: Array | float,
    chunk_size: int,
    prior: GaussianMixturePrior | None = None,
):
    """Return the pure step function ``step(rng_key, state, x) -> (EMState, EMInfo)``.

    Parameters
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    reg_covar : float
        Non-negative value added to the diagonal of every covariance.
    chunk_size : int
        Rows per chunk of the E-step (bounds peak memory).
    prior : GaussianMixturePrior, optional
        Conjugate priors for MAP-EM; ``None`` gives maximum likelihood.
    """

    def step(rng_key: PRNGKey, state: EMState, x: Array) -> tuple[EMState, EMInfo]:
        del rng_key  # EM is deterministic; the key keeps one signature for every kernel.
        params = state.params
        stats = sufficient_statistics(x, params, covariance_type, chunk_size)
        objective = stats.log_likelihood
        if prior is not None:
            objective = objective + log_prior(params, prior, covariance_type)
        new_params, _ = m_step(stats, params.means, params, covariance_type, reg_covar, prior)
        info = EMInfo(objective=objective, counts=stats.counts, is_finite=all_finite(new_params))
        return EMState(params=new_params), info

    return step


class GeneralizedEMState(NamedTuple):
    """State of generalized EM over an arbitrary parameter pytree.

    Attributes
    ----------
    params : pytree
        Unconstrained parameters.
    """

    params: Any


def build_generalized_kernel(
    log_probs_and_prior_fn: Callable[[Any, Any], tuple[Array, Array]],
    *,
    m_steps: int = 10,
):
    """Generalized EM: closed-form E-step, a few L-BFGS steps on ``Q`` as the M-step.

    For parameters ``u`` (unconstrained, any pytree),

    .. math::

        Q(u \\mid u^t) = \\sum_{n,k} r_{nk}(u^t) \\, \\ell_{nk}(u) + \\log p(u),

    where ``(ell, log_prior) = log_probs_and_prior_fn(u, data)``, ``ell`` being the (N, K)
    matrix of ``log pi_k + log p_k(x_n | u)``. The M-step runs ``m_steps`` iterations of
    optax's L-BFGS (zoom line search) from ``u^t`` and keeps the result only if ``Q`` did not
    decrease, so the log joint never decreases (generalized EM, Dempster, Laird and Rubin
    1977). The reported objective is the log joint of the entering parameters.

    Returns
    -------
    callable
        ``step(rng_key, state, data) -> (GeneralizedEMState, EMInfo)``.
    """
    optimizer = optax.lbfgs()

    def step(rng_key: PRNGKey, state: GeneralizedEMState, data) -> tuple:
        del rng_key
        params = state.params
        log_prob, log_prior_value = log_probs_and_prior_fn(params, data)
        log_norm = jax.nn.logsumexp(log_prob, axis=1)
        responsibilities = jax.lax.stop_gradient(jnp.exp(log_prob - log_norm[:, None]))
        objective = jnp.sum(log_norm) + log_prior_value

        def negative_q(candidate):
            candidate_log_prob, candidate_prior = log_probs_and_prior_fn(candidate, data)
            return -(jnp.sum(responsibilities * candidate_log_prob) + candidate_prior)

        value_and_grad = optax.value_and_grad_from_state(negative_q)

        def lbfgs_step(carry, _):
            candidate, opt_state = carry
            value, grad = value_and_grad(candidate, state=opt_state)
            updates, opt_state = optimizer.update(
                grad, opt_state, candidate, value=value, grad=grad, value_fn=negative_q
            )
            return (optax.apply_updates(candidate, updates), opt_state), None

        (candidate, _), _ = jax.lax.scan(
            lbfgs_step, (params, optimizer.init(params)), None, length=m_steps
        )
        improved = jnp.isfinite(negative_q(candidate)) & (
            negative_q(candidate) <= negative_q(params)
        )
        new_params = jax.tree.map(lambda new, old: jnp.where(improved, new, old), candidate, params)
        info = EMInfo(
            objective=objective,
            counts=jnp.sum(responsibilities, axis=0),
            is_finite=all_finite(new_params),
        )
        return GeneralizedEMState(new_params), info

    return step
