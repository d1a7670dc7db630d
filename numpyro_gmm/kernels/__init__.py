"""Inference kernels: each module is a pair of pure functions ``init`` and ``build_kernel``."""

from numpyro_gmm.kernels import em

__all__ = ["em"]
