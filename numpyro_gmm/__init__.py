"""numpyro_gmm: MAP fitting of NumPyro mixture models by EM and its escapes from bad optima."""

from importlib.metadata import PackageNotFoundError, version

from numpyro_gmm import models, parallel, streaming
from numpyro_gmm.compare import compare_to_posterior
from numpyro_gmm.fitting import ConvergenceWarning, EmptyComponentWarning
from numpyro_gmm.infer import fit
from numpyro_gmm.laplace import loo_laplace
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.parallel import data_mesh
from numpyro_gmm.relabel import relabel, relabel_draws
from numpyro_gmm.sklearn import GaussianMixture
from numpyro_gmm.streaming import StreamingResult, fit_streaming

try:
    __version__ = version("numpyro_gmm")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ConvergenceWarning",
    "EmptyComponentWarning",
    "GaussianMixture",
    "GaussianMixturePrior",
    "StreamingResult",
    "__version__",
    "compare_to_posterior",
    "data_mesh",
    "fit",
    "fit_streaming",
    "loo_laplace",
    "models",
    "parallel",
    "relabel",
    "relabel_draws",
    "streaming",
]
