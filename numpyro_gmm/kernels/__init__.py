"""Inference kernels: one module per algorithm, each a pure ``init`` / ``build_kernel`` /
``get_params`` triple.

A module ``numpyro_gmm.kernels.NAME`` that defines those three functions *is* the kernel of
method ``NAME``: :func:`get_kernel` finds it, and the engine (:mod:`numpyro_gmm.fitting`) runs
it through the shared driver.
"""

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, NamedTuple

from numpyro_gmm.mixture.params import GMMParams

__all__ = ["Kernel", "available_methods", "get_kernel"]


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


def available_methods() -> tuple[str, ...]:
    """Names of the kernel modules in this package."""
    names = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if all(hasattr(module, name) for name in _PROTOCOL):
            names.append(info.name)
    return tuple(sorted(names))


def get_kernel(method: str) -> Kernel:
    """The :class:`Kernel` of ``method`` (a module of this package)."""
    try:
        module = importlib.import_module(f"{__name__}.{method}")
    except ModuleNotFoundError:
        module = None
    if module is None or not all(hasattr(module, name) for name in _PROTOCOL):
        raise ValueError(f"Unknown method {method!r}; use one of {available_methods()}.")
    return Kernel(*(getattr(module, name) for name in _PROTOCOL))
