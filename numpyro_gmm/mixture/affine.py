"""Per-feature affine changes of coordinates ``z = (x - shift) / scale`` for mixtures and
their conjugate priors.

Methods that are not affine-equivariant (BigLearn-EM mixes coordinates with random rotations)
run in standardized coordinates. The conjugate families are closed under these maps
(``S^{-1} Sigma S^{-1} ~ InverseWishart(nu0, S^{-1} Psi0 S^{-1})``,
``sigma^2 / s^2 ~ InverseGamma(a, b / s^2)``), and the log joint changes by a constant, so
the MAP in one coordinate system maps exactly onto the MAP in the other.

``scale`` is a (D,) vector; a spherical covariance needs the same scale for every feature.
"""

import numpy as np

from numpyro_gmm._types import CovarianceType
from numpyro_gmm.mixture.covariance import check_covariance_type, dispatch
from numpyro_gmm.mixture.params import GMMParams
from numpyro_gmm.mixture.priors import GaussianMixturePrior

__all__ = [
    "standardization",
    "to_standard",
    "from_standard",
    "covariances_from_standard",
    "prior_to_standard",
]


def standardization(x: np.ndarray, covariance_type: CovarianceType) -> tuple:
    """``(shift, scale)`` that give ``z`` zero mean and unit spread per feature.

    Spherical covariances get one common scale (the mean standard deviation); constant
    features keep scale 1.
    """
    check_covariance_type(covariance_type)
    shift = np.mean(x, axis=0)
    scale = np.std(x, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    if covariance_type == "spherical":
        scale = np.full_like(scale, np.mean(scale))
    return shift, scale


def _outer(scale: np.ndarray) -> np.ndarray:
    return scale[:, None] * scale[None, :]


def _map_params(params: GMMParams, shift, scale, covariance_type, forward: bool) -> GMMParams:
    factor = scale if forward else 1.0 / scale
    means = (params.means - shift) / scale if forward else params.means * scale + shift
    precision_factor = np.asarray(params.precisions_cholesky)

    def by_rows(upper: np.ndarray) -> np.ndarray:
        # P' = S P S, so the upper factor scales by rows: U' = S U.
        return factor[:, None] * upper

    scale_factor = dispatch(
        covariance_type,
        {
            "full": by_rows,
            "tied": by_rows,
            "diag": lambda inverse_sd: inverse_sd * factor,
            "spherical": lambda inverse_sd: inverse_sd * factor[0],
        },
    )
    return GMMParams(np.asarray(params.weights), means, scale_factor(precision_factor))


def to_standard(params: GMMParams, shift, scale, covariance_type) -> GMMParams:
    """Parameters of ``x`` -> parameters of ``z = (x - shift) / scale``."""
    return _map_params(params, shift, scale, covariance_type, forward=True)


def from_standard(params: GMMParams, shift, scale, covariance_type) -> GMMParams:
    """Parameters of ``z`` -> parameters of ``x = z * scale + shift``."""
    return _map_params(params, shift, scale, covariance_type, forward=False)


def covariances_from_standard(covariances, scale, covariance_type) -> np.ndarray:
    """Covariances of ``z`` -> covariances of ``x``."""
    factor = dispatch(
        covariance_type,
        {
            "full": lambda: _outer(scale),
            "tied": lambda: _outer(scale),
            "diag": lambda: scale**2,
            "spherical": lambda: scale[0] ** 2,
        },
    )
    return np.asarray(covariances) * factor()


def prior_to_standard(
    prior: GaussianMixturePrior | None, shift, scale, covariance_type
) -> GaussianMixturePrior | None:
    """Hyperparameters for ``z``: the image of the prior under the change of coordinates."""
    check_covariance_type(covariance_type)
    if prior is None:
        return None
    changes = {}
    if prior.mean_loc is not None:
        changes["mean_loc"] = (np.asarray(prior.mean_loc) - shift) / scale
    if prior.mean_covariance is not None:
        changes["mean_covariance"] = np.asarray(prior.mean_covariance) / _outer(scale)
    if prior.covariance_scale is not None:
        changes["covariance_scale"] = np.asarray(prior.covariance_scale) / _outer(scale)
    if prior.variance_rate is not None:
        # An Inverse-Gamma prior applies to variances only (diag, spherical).
        squared = dispatch(
            covariance_type, {"diag": lambda: scale**2, "spherical": lambda: scale[0] ** 2}
        )()
        changes["variance_rate"] = np.asarray(prior.variance_rate) / squared
    return prior._replace(**changes)
