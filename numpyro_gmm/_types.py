"""Type aliases shared across the package."""

from typing import Literal

import jax

__all__ = ["Array", "ArrayLike", "PRNGKey", "CovarianceType", "COVARIANCE_TYPES"]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
CovarianceType = Literal["full", "tied", "diag", "spherical"]
COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")
