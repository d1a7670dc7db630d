"""Inference kernels: one module per algorithm, each a pure ``init`` / ``build_kernel`` /
``get_params`` triple.

A module ``numpyro_gmm.kernels.NAME`` that defines those three functions *is* kernel
``NAME``: :func:`get_kernel` finds it, and the engine (:mod:`numpyro_gmm.fitting`) runs it
through the shared driver. Kernels over Gaussian-mixture parameters (``em``, ``gradient_em``,
``biglearn_em``) take ``build_kernel(covariance_type, reg_covar, rows, prior, **options)``;
a module that sets ``PARAMETERS = "pytree"`` (``generalized_em``) works on any parameter
pytree and is run by the same driver from :mod:`numpyro_gmm.infer`.

Vocabulary: a *kernel* is such a module; its ``build_kernel`` returns a pure *step*
``step(rng_key, state, data) -> (state, info)``; a *method* is a recipe of stages around one
kernel (:mod:`numpyro_gmm.pipeline`).
"""

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, NamedTuple

from numpyro_gmm.mixture.params import GMMParams

__all__ = ["Kernel", "available_kernels", "get_kernel"]


class Kernel(NamedTuple):
    """An algorithm as the engine sees it.

    Attributes
    ----------
    init : callable
        ``init(params: GMMParams) -> state``.
    build_kernel : callable
        ``build_kernel(covariance_type, reg_covar, chunk_size, prior=None, **options)`` returning
        the pure ``step(rng_key, state, x) -> (state, info)``; ``info`` has ``objective`` (for
        the state that entered the step, summed over the data) and ``is_finite``.
    get_params : callable
        ``get_params(state) -> GMMParams``.
    """

    init: Callable[[GMMParams], Any]
    build_kernel: Callable[..., Callable]
    get_params: Callable[[Any], GMMParams]


_PROTOCOL = ("init", "build_kernel", "get_params")


def _is_kernel(module, parameters: str) -> bool:
    return all(hasattr(module, name) for name in _PROTOCOL) and (
        getattr(module, "PARAMETERS", "gaussian_mixture") == parameters
    )


def available_kernels(parameters: str = "gaussian_mixture") -> tuple[str, ...]:
    """Names of the kernel modules of this package over ``parameters``."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if _is_kernel(module, parameters):
            names.append(info.name)
    return tuple(sorted(names))


def get_kernel(name: str, parameters: str = "gaussian_mixture") -> Kernel:
    """The :class:`Kernel` ``name`` (a module of this package) over ``parameters``."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        module = None
    if module is None or not _is_kernel(module, parameters):
        raise ValueError(f"Unknown kernel {name!r}; use one of {available_kernels(parameters)}.")
    return Kernel(*(getattr(module, attr) for attr in _PROTOCOL))
