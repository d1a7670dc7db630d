"""numpyro_gmm: MAP fitting of NumPyro mixture models by EM and its escapes from bad optima.

Public names are imported on first use, so that ``import numpyro_gmm.mixture`` or
``import numpyro_gmm.kernels`` (pure JAX) does not load NumPyro, xarray, ArviZ or matplotlib.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("numpyro_gmm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# JAX's persistent compilation cache in the user's cache directory, unless
# NUMPYRO_GMM_COMPILATION_CACHE=0 (see numpyro_gmm.compilation_cache).
from numpyro_gmm.compilation_cache import configure_from_environment as _configure_cache  # noqa: E402

_configure_cache()

# Public name -> module that defines it (a module's own name for subpackages).
_PUBLIC = {
    "ConvergenceWarning": "numpyro_gmm.errors",
    "EmptyComponentWarning": "numpyro_gmm.errors",
    "FitFailedError": "numpyro_gmm.errors",
    "FitWarning": "numpyro_gmm.errors",
    "NotFittedError": "numpyro_gmm.errors",
    "RegularizationWarning": "numpyro_gmm.errors",
    "FitResult": "numpyro_gmm.fit_result",
    "GaussianMixture": "numpyro_gmm.sklearn",
    "GaussianMixturePrior": "numpyro_gmm.mixture.priors",
    "MAPResult": "numpyro_gmm.map_result",
    "compare_to_posterior": "numpyro_gmm.compare",
    "data_mesh": "numpyro_gmm.parallel",
    "fit": "numpyro_gmm.infer",
    "fit_mixture": "numpyro_gmm.pipeline",
    "fit_streaming": "numpyro_gmm.streaming",
    "load_gaussian_mixture": "numpyro_gmm.saved_fit",
    "load_map_result": "numpyro_gmm.saved_fit",
    "loo_laplace": "numpyro_gmm.laplace",
    "relabel": "numpyro_gmm.relabelling",
    "relabel_draws": "numpyro_gmm.relabelling",
}
_SUBMODULES = (
    "compilation_cache",
    "models",
    "parallel",
    "streaming",
    "diagnostics",
    "datasets",
    "plotting",
)

__all__ = ["__version__", *sorted(_PUBLIC), *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; nothing is imported at run time
    from numpyro_gmm import datasets, diagnostics, models, parallel, plotting, streaming  # noqa: F401
    from numpyro_gmm.compare import compare_to_posterior  # noqa: F401
    from numpyro_gmm.errors import (  # noqa: F401
        ConvergenceWarning,
        EmptyComponentWarning,
        FitFailedError,
        FitWarning,
        NotFittedError,
        RegularizationWarning,
    )
    from numpyro_gmm.fit_result import FitResult  # noqa: F401
    from numpyro_gmm.infer import fit  # noqa: F401
    from numpyro_gmm.laplace import loo_laplace  # noqa: F401
    from numpyro_gmm.map_result import MAPResult  # noqa: F401
    from numpyro_gmm.mixture.priors import GaussianMixturePrior  # noqa: F401
    from numpyro_gmm.parallel import data_mesh  # noqa: F401
    from numpyro_gmm.pipeline import fit_mixture  # noqa: F401
    from numpyro_gmm.relabelling import relabel, relabel_draws  # noqa: F401
    from numpyro_gmm.saved_fit import load_gaussian_mixture, load_map_result  # noqa: F401
    from numpyro_gmm.sklearn import GaussianMixture  # noqa: F401
    from numpyro_gmm.streaming import fit_streaming  # noqa: F401
