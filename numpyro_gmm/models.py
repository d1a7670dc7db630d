"""Gaussian-mixture models as real NumPyro model functions.

``gaussian_mixture(K, covariance_type)`` returns ``model(x=None, n_samples=None)`` that runs
unchanged under NUTS, SVI and ``Predictive``. Its sites:

===============  ================================  =====================================
site             shape                             prior
===============  ================================  =====================================
``weights``      (K,)                              ``Dirichlet(weight_concentration)``
``covariances``  (K, D, D) (full)                  ``InverseWishart(df, scale)``
``covariance``   (D, D) (tied)                     ``InverseWishart(df, scale)``
``variances``    (K, D) (diag) or (K,) (spherical) ``InverseGamma(concentration, rate)``
``locs``         (K, D)                            ``Normal(mean_loc, Sigma_k / mean_precision)``
``obs``          (N, D), observed                  ``MixtureSameFamily`` of Gaussians
===============  ================================  =====================================

The priors are conjugate, so :func:`numpyro_gmm.fit` uses closed-form MAP M-steps for these
models. **Default hyperparameters** are weakly informative and, like scikit-learn's
``BayesianGaussianMixture``, set from the data the model is called with (empirical Bayes):
``mean_loc`` = the data mean, ``covariance_scale`` = ``0.1 *`` the diagonal of the data
covariance (``variance_rate`` the same per feature, or its mean for spherical),
``covariance_df = D + 2``, ``variance_concentration = 1``, ``mean_precision = 0.01`` and
``weight_concentration = 1`` (a flat prior on the weights). To simulate without data
(``x=None``), give ``mean_loc``, the scale (``covariance_scale`` or ``variance_rate``) and
``n_features``.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from numpyro_gmm._types import COVARIANCE_TYPES, CovarianceType

__all__ = ["gaussian_mixture", "GaussianMixtureSpec", "COVARIANCE_SITES"]

#: Name of the covariance site of each covariance type.
COVARIANCE_SITES: dict[str, str] = {
    "full": "covariances",
    "tied": "covariance",
    "diag": "variances",
    "spherical": "variances",
}


class GaussianMixtureSpec(NamedTuple):
    """What :func:`gaussian_mixture` was built with; lets the fitter use closed-form steps."""

    n_components: int
    covariance_type: CovarianceType
    weight_concentration: float
    mean_loc: Any
    mean_precision: float
    covariance_df: float | None
    covariance_scale: Any
    variance_concentration: float
    variance_rate: Any
    n_features: int | None

    def hyperparameters(self, x) -> dict[str, Any]:
        """Resolved hyperparameters for data ``x`` of shape (N, D) (or None)."""
        n_features = self.n_features if x is None else x.shape[-1]
        if x is None and (
            self.mean_loc is None
            or n_features is None
            or (self.covariance_scale is None and self.variance_rate is None)
        ):
            raise ValueError(
                "Without data the model needs mean_loc, n_features and covariance_scale (full, "
                "tied) or variance_rate (diag, spherical) to define its priors."
            )
        # A constant column would give a degenerate (zero) prior scale: use 1 there.
        spread = None if x is None else jnp.var(x, axis=0)
        spread = None if spread is None else jnp.where(spread > 0, spread, 1.0)
        mean_loc = jnp.mean(x, axis=0) if self.mean_loc is None else jnp.asarray(self.mean_loc)
        hyper = {
            "weight_concentration": jnp.full(self.n_components, self.weight_concentration),
            "mean_loc": jnp.broadcast_to(mean_loc, (n_features,)),
            "mean_precision": jnp.asarray(self.mean_precision),
        }
        if self.covariance_type in ("full", "tied"):
            scale = (
                jnp.diag(0.1 * spread)
                if self.covariance_scale is None
                else jnp.asarray(self.covariance_scale)
            )
            df = n_features + 2.0 if self.covariance_df is None else self.covariance_df
            hyper.update(covariance_df=jnp.asarray(df), covariance_scale=scale)
        else:
            if self.variance_rate is None:
                rate = 0.1 * spread if self.covariance_type == "diag" else 0.1 * jnp.mean(spread)
            else:
                rate = jnp.asarray(self.variance_rate)
            hyper.update(
                variance_concentration=jnp.asarray(self.variance_concentration),
                variance_rate=rate,
            )
        return hyper


def _as_matrix(x):
    if x is None:
        return None
    x = jnp.asarray(x)
    return x[:, None] if x.ndim == 1 else x


def gaussian_mixture(
    n_components: int,
    covariance_type: CovarianceType = "full",
    *,
    weight_concentration: float = 1.0,
    mean_loc=None,
    mean_precision: float = 0.01,
    covariance_df: float | None = None,
    covariance_scale=None,
    variance_concentration: float = 1.0,
    variance_rate=None,
    n_features: int | None = None,
) -> Callable:
    """Build a NumPyro Gaussian-mixture model with conjugate priors.

    Parameters
    ----------
    n_components : int
        Number of components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}
    weight_concentration : float
        Symmetric Dirichlet concentration of the weights (1: flat).
    mean_loc : array-like (D,), optional
        Prior mean of the component means (default: the data mean).
    mean_precision : float
        ``kappa0``: the means are ``Normal(mean_loc, Sigma_k / kappa0)``.
    covariance_df, covariance_scale : float, array-like (D, D), optional
        Inverse-Wishart prior of full / tied covariances (defaults ``D + 2`` and
        ``0.1 * diag(var(x))``).
    variance_concentration, variance_rate : float, array-like, optional
        Inverse-Gamma prior of diag / spherical variances (defaults 1 and ``0.1 * var(x)``).
    n_features : int, optional
        Needed only to simulate without data.

    Returns
    -------
    callable
        ``model(x=None, n_samples=None)``; ``x`` of shape (N, D), or (N,) for D = 1. The
        builder's settings are in ``model.spec``.
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(
            f"Unknown covariance_type {covariance_type!r}; use one of {COVARIANCE_TYPES}."
        )
    if not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}.")
    spec = GaussianMixtureSpec(
        n_components,
        covariance_type,
        weight_concentration,
        mean_loc,
        mean_precision,
        covariance_df,
        covariance_scale,
        variance_concentration,
        variance_rate,
        n_features,
    )

    def model(x=None, n_samples: int | None = None):
        x = _as_matrix(x)
        hyper = spec.hyperparameters(x)
        n_rows = x.shape[0] if x is not None else (n_samples or 1)
        kappa = hyper["mean_precision"]
        weights = numpyro.sample("weights", dist.Dirichlet(hyper["weight_concentration"]))
        if covariance_type == "tied":
            covariance = numpyro.sample(
                "covariance",
                dist.InverseWishart(hyper["covariance_df"], scale_matrix=hyper["covariance_scale"]),
            )
        with numpyro.plate("components", n_components):
            if covariance_type == "full":
                covariances = numpyro.sample(
                    "covariances",
                    dist.InverseWishart(
                        hyper["covariance_df"], scale_matrix=hyper["covariance_scale"]
                    ),
                )
            elif covariance_type == "tied":
                covariances = jnp.broadcast_to(covariance, (n_components, *covariance.shape))
            elif covariance_type == "diag":
                variances = numpyro.sample(
                    "variances",
                    dist.InverseGamma(
                        hyper["variance_concentration"],
                        jnp.broadcast_to(hyper["variance_rate"], hyper["mean_loc"].shape),
                    ).to_event(1),
                )
            else:
                variances = numpyro.sample(
                    "variances",
                    dist.InverseGamma(hyper["variance_concentration"], hyper["variance_rate"]),
                )
            if covariance_type in ("full", "tied"):
                locs = numpyro.sample(
                    "locs", dist.MultivariateNormal(hyper["mean_loc"], covariances / kappa)
                )
                components = dist.MultivariateNormal(locs, covariance_matrix=covariances)
            else:
                scales = jnp.sqrt(variances if covariance_type == "diag" else variances[:, None])
                scales = jnp.broadcast_to(scales, (n_components, hyper["mean_loc"].shape[0]))
                locs = numpyro.sample(
                    "locs", dist.Normal(hyper["mean_loc"], scales / jnp.sqrt(kappa)).to_event(1)
                )
                components = dist.Normal(locs, scales).to_event(1)
        with numpyro.plate("data", n_rows):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(dist.Categorical(probs=weights), components),
                obs=x,
            )

    model.spec = spec
    return model
