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

from typing import NamedTuple

from numpyro_gmm._types import Array, CovarianceType, PRNGKey
from numpyro_gmm.mixture.estep import sufficient_statistics
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import GMMParams, all_finite
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior

__all__ = ["EMState", "EMInfo", "init", "build_kernel", "get_params"]


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
        # A zero weight marks a padding component (see fitting): it stays inactive. Under
        # maximum likelihood a real component's weight is never exactly zero (N_k + 10 eps).
        active = params.weights > 0 if prior is None else None
        new_params, _ = m_step(
            stats, params.means, params, covariance_type, reg_covar, prior, active
        )
        info = EMInfo(objective=objective, counts=stats.counts, is_finite=all_finite(new_params))
        return EMState(params=new_params), info

    return step
