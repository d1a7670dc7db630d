"""Generalized EM for any mixture model whose parameters are a pytree (e.g. a NumPyro model's
unconstrained latent sites): exact E-step, a few L-BFGS steps on ``Q`` as the M-step.

A kernel like the others (pure ``init`` / ``build_kernel`` / ``get_params``, run by
:mod:`numpyro_gmm.driver`), except that its parameters are not
:class:`~numpyro_gmm.mixture.params.GMMParams` and its step is built from a function of the
parameters and the data: ``log_probs_and_prior_fn(params, data) -> ((N, K) log pi_k +
log p_k(x_n), (N,) row weights, the rest of the log joint)``. :mod:`numpyro_gmm.infer` builds
that function from the model.

**Objective convention.** ``EMInfo.objective`` is the log joint of the parameters that
entered the step, as for closed-form EM.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from numpyro_gmm._types import Array, PRNGKey
from numpyro_gmm.kernels.em import EMInfo
from numpyro_gmm.mixture.params import all_finite

__all__ = ["GeneralizedEMState", "init", "build_kernel", "get_params"]

#: The parameters are a pytree of model sites, not Gaussian-mixture parameters.
PARAMETERS = "pytree"


class GeneralizedEMState(NamedTuple):
    """State of generalized EM over an arbitrary parameter pytree.

    Attributes
    ----------
    params : pytree
        Unconstrained parameters.
    """

    params: Any


def build_kernel(
    log_probs_and_prior_fn: Callable[[Any, Any], tuple[Array, Array, Array]],
    *,
    m_steps: int = 10,
):
    """Generalized EM: closed-form E-step, a few L-BFGS steps on ``Q`` as the M-step.

    For parameters ``u`` (unconstrained, any pytree),

    .. math::

        Q(u \\mid u^t) = \\sum_{n,k} w_n r_{nk}(u^t) \\, \\ell_{nk}(u) + \\log p(u),

    where ``(ell, w, log_prior) = log_probs_and_prior_fn(u, data)``, ``ell`` being the (N, K)
    matrix of ``log pi_k + log p_k(x_n | u)``, ``w`` the rows' weights in the log joint
    (a likelihood's scale and mask) and ``log_prior`` every other term of the log joint
    (priors, factors, other likelihoods): the log joint is
    ``sum_n w_n logsumexp_k ell_nk + log_prior``. The M-step runs ``m_steps`` iterations of
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
        log_prob, row_weights, log_prior_value = log_probs_and_prior_fn(params, data)
        log_norm = jax.nn.logsumexp(log_prob, axis=1)
        posterior = jnp.exp(log_prob - log_norm[:, None])
        # Weighted responsibilities: a row's weight multiplies its whole term of Q.
        responsibilities = jax.lax.stop_gradient(row_weights[:, None] * posterior)
        objective = jnp.sum(row_weights * log_norm) + log_prior_value

        def negative_q(candidate):
            candidate_log_prob, _, candidate_prior = log_probs_and_prior_fn(candidate, data)
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
        # Q at the entering parameters from the E-step's own evaluation of the model.
        entering_q = jnp.sum(responsibilities * log_prob) + log_prior_value
        candidate_q = -negative_q(candidate)
        improved = jnp.isfinite(candidate_q) & (candidate_q >= entering_q)
        new_params = jax.tree.map(lambda new, old: jnp.where(improved, new, old), candidate, params)
        info = EMInfo(
            objective=objective,
            counts=jnp.sum(responsibilities, axis=0),
            is_finite=all_finite(new_params),
        )
        return GeneralizedEMState(new_params), info

    return step


def init(params: Any) -> GeneralizedEMState:
    """Start from ``params`` (unconstrained)."""
    return GeneralizedEMState(params)


def get_params(state: GeneralizedEMState) -> Any:
    """The (unconstrained) parameters of a state."""
    return state.params
