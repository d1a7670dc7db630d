"""Recognize a conjugate Gaussian mixture in any NumPyro model, for closed-form MAP-EM.

A style-A model (``MixtureSameFamily`` likelihood) is conjugate when, checked by value on two
prior draws of the model's own trace:

- the mixing probabilities *are* a latent site with a ``Dirichlet`` prior (concentration
  >= 1, so the mode is interior);
- the component means *are* a latent site with a Normal / MultivariateNormal prior whose
  covariance is either ``Sigma_k / kappa0`` (coupled, Normal-Inverse-Wishart) or a constant
  ``V0`` (independent), with a constant mean ``m0``;
- the component covariances *are* a latent site with an ``InverseWishart`` prior (full: one
  per component; tied: one shared), or the component variances *are* a latent site with an
  ``InverseGamma`` prior (diag: per component and feature; spherical: per component);
- there are no other latent sites, and every hyperparameter is the same in both draws.

Component families: ``MultivariateNormal``, ``Normal(...).to_event(1)``, and univariate
``Normal`` (one feature). Anything else returns ``None`` and the model runs generalized EM.
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from numpyro_gmm.mixture.covariance import covariance_shape, expand_to_full, is_matrix_type
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.numpyro_bridge.reader import MixtureModel, draw_trace, unwrap

__all__ = ["ConjugateMixture", "match_conjugate"]


class ConjugateMixture(NamedTuple):
    """How a conjugate NumPyro mixture maps onto the closed-form engine.

    Attributes
    ----------
    covariance_type : {"full", "tied", "diag", "spherical"}
    prior : GaussianMixturePrior
        Hyperparameters read from the model (numpy).
    weights_site, locs_site, covariance_site : str
        Latent sites holding the weights, the component means and the covariances (or
        variances).
    site_shapes : dict
        Shape of each of those sites' values (to map engine arrays back).
    """

    covariance_type: str
    prior: GaussianMixturePrior
    weights_site: str
    locs_site: str
    covariance_site: str
    site_shapes: dict

    def to_sites(self, weights, means, covariances) -> dict:
        """Engine parameters -> the model's latent sites (constrained values)."""
        return {
            self.weights_site: np.reshape(weights, self.site_shapes[self.weights_site]),
            self.locs_site: np.reshape(means, self.site_shapes[self.locs_site]),
            self.covariance_site: np.reshape(covariances, self.site_shapes[self.covariance_site]),
        }

    def from_sites(self, values: dict) -> tuple:
        """The model's latent sites -> engine (weights, means (K, D), covariances)."""
        n_features = np.shape(self.prior.mean_loc)[-1]
        means = np.reshape(values[self.locs_site], (-1, n_features))
        shape = covariance_shape(self.covariance_type, -1, n_features)
        return values[self.weights_site], means, np.reshape(values[self.covariance_site], shape)


class _NoMatch(Exception):
    pass


def _require(condition) -> None:
    if not bool(condition):
        raise _NoMatch


def _same(a, b) -> bool:
    """Equal up to float32 rounding, relative to the values' own magnitude.

    A fixed absolute tolerance would call every value of data on a 1e-8 scale "the same"
    (and mismatch the sites), so the tolerance scales with the largest magnitude present.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        return False
    magnitude = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
    return bool(np.allclose(a, b, rtol=1e-5, atol=1e-8 * magnitude))


def _components(fn, n_components):
    """(means (K, D), covariances (K, D, D) or variances (K, D), kind) of the components."""
    if isinstance(fn, dist.MultivariateNormal):
        n_features = fn.event_shape[-1]
        means = jnp.broadcast_to(fn.loc, (n_components, n_features))
        return (
            means,
            jnp.broadcast_to(fn.covariance_matrix, (n_components, n_features, n_features)),
            "matrix",
        )
    if isinstance(fn, dist.Independent) and isinstance(fn.base_dist, dist.Normal):
        base = fn.base_dist
        shape = jnp.broadcast_shapes(jnp.shape(base.loc), jnp.shape(base.scale))
        return (
            jnp.broadcast_to(base.loc, shape),
            jnp.broadcast_to(base.scale, shape) ** 2,
            "variances",
        )
    if isinstance(fn, dist.Normal):
        shape = (n_components, 1)
        return (
            jnp.broadcast_to(fn.loc, (n_components,)).reshape(shape),
            (jnp.broadcast_to(fn.scale, (n_components,)) ** 2).reshape(shape),
            "variances",
        )
    raise _NoMatch


def _site_with_value(trace, names, value, prior_type):
    for name in names:
        site_value = trace[name]["value"]
        if np.size(site_value) == np.size(value) and _same(np.ravel(site_value), np.ravel(value)):
            if isinstance(unwrap(trace[name]["fn"]), prior_type):
                return name
    raise _NoMatch


def _mean_prior(fn, n_components, n_features):
    """(m0 (K, D), prior covariance (K, D, D)) of the means' prior."""
    fn = unwrap(fn)
    if isinstance(fn, dist.MultivariateNormal):
        return (
            jnp.broadcast_to(fn.loc, (n_components, n_features)),
            jnp.broadcast_to(fn.covariance_matrix, (n_components, n_features, n_features)),
        )
    if isinstance(fn, dist.Normal):
        loc = jnp.broadcast_to(fn.loc, (n_components, n_features))
        variance = jnp.broadcast_to(fn.scale, (n_components, n_features)) ** 2
        return loc, variance[..., None] * jnp.eye(n_features)
    raise _NoMatch


def _read(mixture: MixtureModel, trace) -> tuple[ConjugateMixture, dict]:
    n_components = mixture.n_components
    mix = unwrap(trace[mixture.mixture_site]["fn"])
    _require(isinstance(mix, dist.MixtureSameFamily))
    means, spread, kind = _components(mix.component_distribution, n_components)
    n_features = means.shape[-1]
    latent = mixture.latent_sites
    weights_site = _site_with_value(trace, latent, mix.mixing_distribution.probs, dist.Dirichlet)
    locs_site = _site_with_value(trace, latent, means, (dist.Normal, dist.MultivariateNormal))
    if kind == "matrix":
        # Tied: one (D, D) covariance site shared by all components. With K = 1 a full
        # covariance site has the same size, so the site's shape decides, not its size.
        if _same(spread, jnp.broadcast_to(spread[0], spread.shape)) and any(
            np.shape(trace[n]["value"]) == (n_features, n_features)
            and isinstance(unwrap(trace[n]["fn"]), dist.InverseWishart)
            for n in latent
        ):
            covariance_type, target = "tied", spread[0]
        else:
            covariance_type, target = "full", spread
        covariance_site = _site_with_value(trace, latent, target, dist.InverseWishart)
        variances = jnp.diagonal(spread, axis1=-2, axis2=-1)
    else:
        variances = spread
        if (
            any(np.size(trace[n]["value"]) == n_components for n in latent)
            and _same(variances, jnp.broadcast_to(variances[:, :1], variances.shape))
            and n_features > 1
        ):
            covariance_type, target = "spherical", variances[:, 0]
        else:
            covariance_type, target = "diag", variances
        covariance_site = _site_with_value(trace, latent, target, dist.InverseGamma)
    _require(set(latent) == {weights_site, locs_site, covariance_site})

    alpha = unwrap(trace[weights_site]["fn"]).concentration
    _require(np.all(np.asarray(alpha) >= 1.0))
    mean_loc, mean_cov = _mean_prior(trace[locs_site]["fn"], n_components, n_features)
    _require(_same(mean_loc, jnp.broadcast_to(mean_loc[0], mean_loc.shape)))
    full_spread = spread if kind == "matrix" else expand_to_full(variances, "diag", n_components)
    ratio = full_spread[0, 0, 0] / mean_cov[0, 0, 0]
    hyper = {"weight_concentration": alpha, "mean_loc": mean_loc[0]}
    if _same(mean_cov * ratio, full_spread):
        hyper["mean_precision"] = ratio
    else:
        _require(_same(mean_cov, jnp.broadcast_to(mean_cov[0], mean_cov.shape)))
        hyper["mean_covariance"] = mean_cov[0]
    cov_fn = unwrap(trace[covariance_site]["fn"])
    if is_matrix_type(covariance_type):
        scale = jnp.reshape(cov_fn.scale_matrix, (-1, n_features, n_features))
        _require(_same(scale, jnp.broadcast_to(scale[0], scale.shape)))
        df = jnp.ravel(jnp.asarray(cov_fn.concentration))
        _require(_same(df, jnp.broadcast_to(df[0], df.shape)))
        hyper.update(covariance_df=df[0], covariance_scale=scale[0])
    else:
        concentration = jnp.ravel(jnp.asarray(cov_fn.concentration))
        _require(_same(concentration, jnp.broadcast_to(concentration[0], concentration.shape)))
        rate = jnp.broadcast_to(cov_fn.rate, jnp.shape(target))
        rate = rate[0] if covariance_type == "diag" else rate[:1]
        per_component = jnp.broadcast_to(cov_fn.rate, jnp.shape(target))
        _require(_same(per_component, jnp.broadcast_to(rate, per_component.shape)))
        hyper.update(
            variance_concentration=concentration[0],
            variance_rate=rate if covariance_type == "diag" else rate[0],
        )
    prior = GaussianMixturePrior(**{k: np.asarray(v, float) for k, v in hyper.items()})
    shapes = {
        name: np.shape(trace[name]["value"]) for name in (weights_site, locs_site, covariance_site)
    }
    match = ConjugateMixture(
        covariance_type, prior, weights_site, locs_site, covariance_site, shapes
    )
    return match, hyper


def match_conjugate(mixture: MixtureModel) -> ConjugateMixture | None:
    """The closed-form mapping of ``mixture``, or ``None`` if it is not conjugate."""
    # Factor terms, other likelihoods and weighted rows have no closed-form M-step.
    if mixture.style != "A" or mixture.extra_sites or mixture.weighs_rows():
        return None
    try:
        reads = []
        for seed in (1, 2):
            trace = draw_trace(mixture.model, seed, *mixture.args, **mixture.kwargs)
            reads.append(_read(mixture, trace))
    except (_NoMatch, AttributeError, TypeError, ValueError, KeyError, IndexError):
        return None
    (first, first_hyper), (second, second_hyper) = reads
    same_structure = first._replace(prior=None) == second._replace(prior=None)
    same_values = first_hyper.keys() == second_hyper.keys() and all(
        _same(first_hyper[k], second_hyper[k]) for k in first_hyper
    )
    return first if same_structure and same_values else None
