"""Reads NumPyro mixture models: finds the mixture site and its latent parameters, and builds
the objective (the log joint, no Jacobian) and the per-component log-likelihoods as pure JAX
functions of the latent sites."""

from numpyro_gmm.numpyro_bridge.reader import MixtureModel, UnsupportedModelError, read_model

__all__ = ["MixtureModel", "UnsupportedModelError", "read_model"]
