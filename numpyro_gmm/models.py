"""Gaussian-mixture models as real NumPyro model functions.

``gaussian_mixture(K, covariance_type)`` returns ``model(x=None, n_samples=None)`` that runs
unchanged under NUTS, SVI and ``Predictive``. Its sites:

===============  ==================================  ==============================================
site             shape                               prior
===============  ==================================  ==============================================
``weights``      (K,)                                ``Dirichlet(weight_concentration)``
``covariances``  (K, D, D) (full)                    ``InverseWishart(df, scale)``
``covariance``   (D, D) (tied)                       ``InverseWishart(df, scale)``
``variances``    (K, D) (diag) or (K,) (spherical)   ``InverseGamma(concentration, rate)``
``locs``         (K, D)                              ``Normal(mean_loc, Sigma_k / mean_precision)``
``obs``          (N, D), observed                    ``MixtureSameFamily`` of Gaussians
===============  ==================================  ==============================================

The priors are conjugate, so :func:`numpyro_gmm.fit` uses closed-form MAP M-steps for these
models. **Default hyperparameters** are weakly informative and, like scikit-learn's
``BayesianGaussianMixture``, set from the data the model is called with (empirical Bayes):
``mean_loc`` = the data mean, ``covariance_scale`` = the data covariance divided by
``K^(2/D)`` (the covariance of one of ``K`` equal clusters filling the data's ellipsoid),
``covariance_df = D + 2`` and ``mean_precision = 0.01`` -- the default prior of Fraley and
Raftery (2007), "Bayesian regularization for normal mixture estimation and model-based
clustering" (mclust's ``priorControl()``) -- and for diag / spherical variances
``variance_concentration = 1`` with ``variance_rate`` half that scale's diagonal (its mean for
spherical), ``weight_concentration = 1`` (a flat prior on the weights). A constant column gets
variance 1 in the scale, and the scale is shrunk by ``1e-3`` towards its diagonal so that it is
positive definite for collinear data. To simulate without data
(``x=None``), give ``mean_loc``, the scale (``covariance_scale`` or ``variance_rate``) and
``n_features``.
"""

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from numpyro_gmm._types import CovarianceType
from numpyro_gmm.mixture.covariance import COVARIANCE_SITES, dispatch, is_matrix_type

__all__ = ["gaussian_mixture", "GaussianMixtureSpec", "COVARIANCE_SITES"]


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
        if n_features is not None:
            _check_feature_hyperparameters(self, n_features)
        if x is None and (
            self.mean_loc is None
            or n_features is None
            or (self.covariance_scale is None and self.variance_rate is None)
        ):
            raise ValueError(
                "Without data the model needs mean_loc, n_features and covariance_scale (full, "
                "tied) or variance_rate (diag, spherical) to define its priors."
            )
        spread = None if x is None else _column_spread(x)
        mean_loc = jnp.mean(x, axis=0) if self.mean_loc is None else jnp.asarray(self.mean_loc)
        hyper = {
            "weight_concentration": jnp.full(self.n_components, self.weight_concentration),
            "mean_loc": jnp.broadcast_to(mean_loc, (n_features,)),
            "mean_precision": jnp.asarray(self.mean_precision),
        }
        if is_matrix_type(self.covariance_type):
            scale = (
                _data_scatter(x) / _cluster_shrink(self.n_components, n_features)
                if self.covariance_scale is None
                else jnp.asarray(self.covariance_scale)
            )
            df = n_features + 2.0 if self.covariance_df is None else self.covariance_df
            hyper.update(covariance_df=jnp.asarray(df), covariance_scale=scale)
        else:
            if self.variance_rate is None:
                # Half the scale: an Inverse-Wishart's one-dimensional marginal has rate
                # scale / 2.
                half_scale = 0.5 * spread / _cluster_shrink(self.n_components, n_features)
                default_rate = dispatch(
                    self.covariance_type,
                    {"diag": lambda: half_scale, "spherical": lambda: jnp.mean(half_scale)},
                )
                rate = default_rate()
            else:
                rate = jnp.asarray(self.variance_rate)
            hyper.update(
                variance_concentration=jnp.asarray(self.variance_concentration),
                variance_rate=rate,
            )
        return hyper


#: Weight of the diagonal in the default prior scale: keeps it positive definite when the
#: data's covariance is singular (collinear columns, fewer rows than columns).
_DIAGONAL_SHRINKAGE = 1e-3


def _column_spread(x):
    """Each column's variance, 1 for a constant column (a zero prior scale is degenerate)."""
    spread = jnp.var(x, axis=0)
    return jnp.where(spread > 0, spread, 1.0)


def _data_scatter(x):
    """The data's covariance with constant columns at 1, shrunk slightly to its diagonal."""
    spread = _column_spread(x)
    covariance = jnp.atleast_2d(jnp.cov(x, rowvar=False, bias=True))
    covariance = covariance + jnp.diag(spread - jnp.diagonal(covariance))
    return (1 - _DIAGONAL_SHRINKAGE) * covariance + _DIAGONAL_SHRINKAGE * jnp.diag(spread)


def _cluster_shrink(n_components: int, n_features: int) -> float:
    """``K^(2/D)``: the data's covariance over this is the size of one of K equal clusters."""
    return float(n_components) ** (2.0 / n_features)


def _finite_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {value!r}.") from None
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity; give finite values.")
    return array


def _check_positive(value, name: str, hint: str) -> None:
    if np.any(_finite_array(value, name) <= 0):
        raise ValueError(f"{name} must be > 0, got {value!r}; {hint}")


def _check_hyperparameters(spec: GaussianMixtureSpec) -> None:
    """Hyperparameters that do not depend on the number of features, checked at build time."""
    _check_positive(
        spec.weight_concentration,
        "weight_concentration",
        "use 1 for a flat prior on the weights (>= 1 for MAP fitting).",
    )
    _check_positive(
        spec.mean_precision, "mean_precision", "smaller values give a vaguer prior on the means."
    )
    _check_positive(
        spec.variance_concentration,
        "variance_concentration",
        "the default 1 is weakly informative.",
    )
    if spec.variance_rate is not None:
        _check_positive(
            spec.variance_rate, "variance_rate", "it is a prior guess of the variances' scale."
        )
    if spec.mean_loc is not None:
        _finite_array(spec.mean_loc, "mean_loc")
    if spec.covariance_df is not None:
        _finite_array(spec.covariance_df, "covariance_df")
    if spec.covariance_scale is not None:
        _finite_array(spec.covariance_scale, "covariance_scale")
    if spec.n_features is not None and (
        not isinstance(spec.n_features, numbers.Integral) or spec.n_features < 1
    ):
        raise ValueError(f"n_features must be an integer >= 1, got {spec.n_features!r}.")


def _check_feature_hyperparameters(spec: GaussianMixtureSpec, n_features: int) -> None:
    """Shapes and ranges of the user's hyperparameters once the number of features is known.

    Only values given to the builder are checked (they are concrete); those derived from the
    data are valid by construction.
    """
    d = n_features
    if spec.mean_loc is not None and np.shape(spec.mean_loc) not in ((), (d,)):
        raise ValueError(
            f"mean_loc should be a scalar or have shape ({d},), got shape "
            f"{np.shape(spec.mean_loc)}; give one prior mean per feature."
        )
    if spec.covariance_df is not None and not float(spec.covariance_df) > d - 1:
        raise ValueError(
            f"covariance_df must be > n_features - 1 = {d - 1} for an Inverse-Wishart prior, "
            f"got {spec.covariance_df!r}; the default is n_features + 2 = {d + 2}."
        )
    if spec.covariance_scale is not None:
        scale = np.asarray(spec.covariance_scale, dtype=float)
        if scale.shape != (d, d):
            raise ValueError(f"covariance_scale should have shape ({d}, {d}), got {scale.shape}.")
        if not np.allclose(scale, scale.T) or np.any(np.linalg.eigvalsh(scale) <= 0):
            raise ValueError(
                "covariance_scale must be symmetric positive definite (e.g. a diagonal matrix "
                "of prior variances)."
            )
    if spec.variance_rate is not None:
        allowed = dispatch(
            spec.covariance_type,
            {"full": ((),), "tied": ((),), "diag": ((), (d,)), "spherical": ((),)},
        )
        if np.shape(spec.variance_rate) not in allowed:
            raise ValueError(
                f"variance_rate should have shape {' or '.join(map(str, allowed))} for "
                f"covariance_type={spec.covariance_type!r}, got {np.shape(spec.variance_rate)}."
            )


def _inverse_wishart(hyper: dict[str, Any]):
    return dist.InverseWishart(hyper["covariance_df"], scale_matrix=hyper["covariance_scale"])


def _gaussian_components(hyper: dict[str, Any], covariances):
    """``locs`` site and Gaussian components with (K, D, D) covariances (in the plate)."""
    locs = numpyro.sample(
        "locs", dist.MultivariateNormal(hyper["mean_loc"], covariances / hyper["mean_precision"])
    )
    return dist.MultivariateNormal(locs, covariance_matrix=covariances)


def _normal_components(hyper: dict[str, Any], scales, n_components: int):
    """``locs`` site and independent-Normal components with scales (K, D) or (K, 1)."""
    scales = jnp.broadcast_to(scales, (n_components, hyper["mean_loc"].shape[0]))
    locs = numpyro.sample(
        "locs",
        dist.Normal(hyper["mean_loc"], scales / jnp.sqrt(hyper["mean_precision"])).to_event(1),
    )
    return dist.Normal(locs, scales).to_event(1)


def _full_components(hyper: dict[str, Any], n_components: int):
    with numpyro.plate("components", n_components):
        covariances = numpyro.sample("covariances", _inverse_wishart(hyper))
        return _gaussian_components(hyper, covariances)


def _tied_components(hyper: dict[str, Any], n_components: int):
    covariance = numpyro.sample("covariance", _inverse_wishart(hyper))
    with numpyro.plate("components", n_components):
        covariances = jnp.broadcast_to(covariance, (n_components, *covariance.shape))
        return _gaussian_components(hyper, covariances)


def _diag_components(hyper: dict[str, Any], n_components: int):
    with numpyro.plate("components", n_components):
        variances = numpyro.sample(
            "variances",
            dist.InverseGamma(
                hyper["variance_concentration"],
                jnp.broadcast_to(hyper["variance_rate"], hyper["mean_loc"].shape),
            ).to_event(1),
        )
        return _normal_components(hyper, jnp.sqrt(variances), n_components)


def _spherical_components(hyper: dict[str, Any], n_components: int):
    with numpyro.plate("components", n_components):
        variances = numpyro.sample(
            "variances",
            dist.InverseGamma(hyper["variance_concentration"], hyper["variance_rate"]),
        )
        return _normal_components(hyper, jnp.sqrt(variances[:, None]), n_components)


#: Samples the covariance and ``locs`` sites of each covariance type and returns the
#: component distribution (batch shape (K,)).
_COMPONENT_SAMPLERS: dict[str, Callable] = {
    "full": _full_components,
    "tied": _tied_components,
    "diag": _diag_components,
    "spherical": _spherical_components,
}


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
        ``cov(x) / K^(2/D)``, Fraley and Raftery's).
    variance_concentration, variance_rate : float, array-like, optional
        Inverse-Gamma prior of diag / spherical variances (defaults 1 and
        ``var(x) / (2 K^(2/D))``, averaged over features for spherical).
    n_features : int, optional
        Needed only to simulate without data.

    Returns
    -------
    callable
        ``model(x=None, n_samples=None)``; ``x`` of shape (N, D), or (N,) for D = 1. The
        builder's settings are in ``model.spec``.

    Raises
    ------
    ValueError
        For a non-finite or out-of-range hyperparameter (at build time), or one whose shape
        does not fit the number of features (when the model first sees data).
    """
    sample_components = dispatch(covariance_type, _COMPONENT_SAMPLERS)
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
    _check_hyperparameters(spec)
    if n_features is not None:
        _check_feature_hyperparameters(spec, n_features)

    def model(x=None, n_samples: int | None = None):
        x = _as_matrix(x)
        hyper = spec.hyperparameters(x)
        n_rows = x.shape[0] if x is not None else (n_samples or 1)
        weights = numpyro.sample("weights", dist.Dirichlet(hyper["weight_concentration"]))
        components = sample_components(hyper, n_components)
        with numpyro.plate("data", n_rows):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(dist.Categorical(probs=weights), components),
                obs=x,
            )

    model.spec = spec
    return model
