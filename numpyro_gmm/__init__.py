"""numpyro_gmm: MAP fitting of NumPyro mixture models by EM and its escapes from bad optima."""

from importlib.metadata import PackageNotFoundError, version

from numpyro_gmm import models
from numpyro_gmm.fitting import ConvergenceWarning, EmptyComponentWarning
from numpyro_gmm.infer import fit
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.sklearn import GaussianMixture

try:
    __version__ = version("numpyro_gmm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "GaussianMixture",
    "GaussianMixturePrior",
    "__version__",
    "fit",
    "models",
]
