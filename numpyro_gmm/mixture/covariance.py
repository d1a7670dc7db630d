"""The covariance types, in one table: names, shapes, and dispatch that refuses unknown names.

For ``K`` components in ``D`` dimensions (the same table as scikit-learn):

================  ===================================================
covariance_type   covariances and precision Cholesky factors
================  ===================================================
``"full"``        ``(K, D, D)``
``"tied"``        ``(D, D)``, shared by all components
``"diag"``        ``(K, D)``, the diagonal of each component's matrix
``"spherical"``   ``(K,)``, one variance per component
================  ===================================================

Code that behaves differently per covariance type selects its branch with :func:`dispatch`
(a complete table, so a misspelt name raises instead of falling through to a default), or
checks the name with :func:`check_covariance_type` on entry.
"""

import difflib
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_gmm._types import COVARIANCE_TYPES, CovarianceType

__all__ = [
    "COVARIANCE_SITES",
    "COVARIANCE_TYPES",
    "check_covariance_type",
    "covariance_shape",
    "dispatch",
    "expand_to_full",
    "is_matrix_type",
]

#: Name of the covariance site of :func:`numpyro_gmm.models.gaussian_mixture` (and of the
#: covariance variable of every DataTree of a Gaussian mixture), by covariance type.
COVARIANCE_SITES: dict[str, str] = {
    "full": "covariances",
    "tied": "covariance",
    "diag": "variances",
    "spherical": "variances",
}


def check_covariance_type(covariance_type: str) -> str:
    """Return ``covariance_type`` if it is one of :data:`COVARIANCE_TYPES`, else raise.

    Raises
    ------
    ValueError
        Naming the valid types and the closest one to a typo.
    """
    if isinstance(covariance_type, str) and covariance_type in COVARIANCE_TYPES:
        return covariance_type
    close = difflib.get_close_matches(str(covariance_type), COVARIANCE_TYPES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"Unknown covariance_type {covariance_type!r}; use one of "
        f"{', '.join(map(repr, COVARIANCE_TYPES))}.{hint}"
    )


def dispatch[T](covariance_type: CovarianceType, table: Mapping[str, T]) -> T:
    """Return ``table[covariance_type]``, refusing unknown names.

    ``table`` should name every covariance type; an entry that a table leaves out (a function
    that supports only some types) raises too, never falls back to another entry.

    Raises
    ------
    ValueError
        The message of :func:`check_covariance_type` for an unknown name, or one naming the
        supported types when ``table`` has no entry for a valid one.
    """
    check_covariance_type(covariance_type)
    try:
        return table[covariance_type]
    except KeyError:
        raise ValueError(
            f"covariance_type {covariance_type!r} is not supported here; use one of "
            f"{', '.join(map(repr, table))}."
        ) from None


def is_matrix_type(covariance_type: CovarianceType) -> bool:
    """Whether covariances of this type are matrices (full, tied) rather than variances."""
    return dispatch(
        covariance_type, {"full": True, "tied": True, "diag": False, "spherical": False}
    )


def covariance_shape(
    covariance_type: CovarianceType, n_components: int, n_features: int
) -> tuple[int, ...]:
    """Shape of the covariances (and of the precision Cholesky factors) of one mixture.

    ``n_components = -1`` gives a shape for ``reshape`` that infers the number of components.
    """
    k, d = n_components, n_features
    return dispatch(
        covariance_type, {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
    )


def expand_to_full(
    values,
    covariance_type: CovarianceType,
    n_components: int,
    n_features: int | None = None,
):
    """Covariances (or precisions) of any type as full ``(K, D, D)`` matrices.

    Works on numpy arrays (returning numpy; a tied matrix is copied into a new writable array)
    and on JAX arrays, traced ones included (returning JAX). The identity has the dtype of
    ``values``, so float32 stays float32. ``n_features`` is needed only for spherical values,
    whose shape ``(K,)`` does not carry it.
    """
    check_covariance_type(covariance_type)
    xp = jnp if isinstance(values, jax.Array) else np
    values = xp.asarray(values)
    if n_features is None:
        if covariance_type == "spherical":
            raise ValueError("expand_to_full needs n_features for spherical covariances.")
        n_features = values.shape[-1]

    def eye():
        return xp.eye(n_features, dtype=values.dtype)

    def tied(matrix):
        full = xp.broadcast_to(matrix, (n_components, n_features, n_features))
        return full.copy() if xp is np else full

    expand = dispatch(
        covariance_type,
        {
            "full": lambda matrices: matrices,
            "tied": tied,
            "diag": lambda diagonals: diagonals[:, :, None] * eye(),
            "spherical": lambda variances: variances[:, None, None] * eye(),
        },
    )
    return expand(values)
