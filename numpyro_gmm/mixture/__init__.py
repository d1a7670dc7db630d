"""Pure JAX mathematics of Gaussian mixtures: parameters, E-step, M-steps, priors, inits."""

from numpyro_gmm.mixture.chunking import chunked_sum, default_chunk_size
from numpyro_gmm.mixture.estep import (
    SufficientStats,
    component_log_prob,
    sufficient_statistics,
)
from numpyro_gmm.mixture.init import INIT_METHODS, initialize
from numpyro_gmm.mixture.mstep import m_step
from numpyro_gmm.mixture.params import (
    GMMParams,
    covariances_from_precisions_cholesky,
    n_parameters,
    precisions_cholesky_from_covariances,
    precisions_cholesky_from_precisions,
)
from numpyro_gmm.mixture.priors import GaussianMixturePrior, log_prior

__all__ = [
    "GMMParams",
    "GaussianMixturePrior",
    "INIT_METHODS",
    "SufficientStats",
    "chunked_sum",
    "component_log_prob",
    "covariances_from_precisions_cholesky",
    "default_chunk_size",
    "initialize",
    "log_prior",
    "m_step",
    "n_parameters",
    "precisions_cholesky_from_covariances",
    "precisions_cholesky_from_precisions",
    "sufficient_statistics",
]
