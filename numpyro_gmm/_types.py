"""Type aliases shared across the package."""

from typing import Literal, get_args

import jax

__all__ = ["Array", "ArrayLike", "PRNGKey", "CovarianceType", "COVARIANCE_TYPES"]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
CovarianceType = Literal["full", "tied", "diag", "spherical"]
#: The covariance type names, in the order of :data:`CovarianceType` (their one definition;
#: :mod:`numpyro_gmm.mixture.covariance` holds the shapes and dispatch over them).
COVARIANCE_TYPES: tuple[str, ...] = get_args(CovarianceType)
