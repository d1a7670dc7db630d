"""Diagnostics of fitted location mixtures against the landscape theory of ALGORITHMS.md §3.

After Chen, Song, Xi & Zhang (arXiv 2009.13040): with enough separation, every local minimum
of the population negative log-likelihood of an equal-weight location mixture is made of
*matched*, *one-fits-many* and *many-fit-one* groups.

- :mod:`~numpyro_gmm.diagnostics.landscape`: :func:`landscape_diagnostic` labels a fit that way
  against reference means (the truth, or the best fit found); the algorithm is in its docstring.
- :mod:`~numpyro_gmm.diagnostics.atlas`: :func:`restart_atlas` groups restarts into distinct
  optima and explains each against the best.
- :mod:`~numpyro_gmm.diagnostics.population`: :func:`population_gradient_descent` reproduces
  the paper's worked 1-D example; :func:`population_kl` is the population NLL gap.
"""

from numpyro_gmm.diagnostics.atlas import Optimum, RestartAtlas, match_means, restart_atlas
from numpyro_gmm.diagnostics.landscape import (
    Group,
    GroupKind,
    LandscapeDiagnostic,
    landscape_diagnostic,
)
from numpyro_gmm.diagnostics.population import (
    PopulationDescent,
    population_gradient_descent,
    population_kl,
)

__all__ = [
    "GroupKind",
    "Group",
    "LandscapeDiagnostic",
    "landscape_diagnostic",
    "Optimum",
    "RestartAtlas",
    "restart_atlas",
    "PopulationDescent",
    "population_gradient_descent",
    "population_kl",
    "match_means",
]
