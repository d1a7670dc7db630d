"""The objective is the model's whole log joint: subsampled plates, factors on conjugate models,
deterministic sites and components of different families (the table of user-style models is
tests/test_model_suite.py)."""

import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import numpyro_gmm as ngm
from numpyro_gmm.numpyro_bridge import UnsupportedModelError

N = 240


def _data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-2.0, 0.7, N // 2), rng.normal(2.5, 1.0, N // 2)])


def _priors():
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        scales = numpyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    return weights, locs, scales


def _likelihood(weights, locs, scales):
    return dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales))


def subsampled_model(y):
    weights, locs, scales = _priors()
    with numpyro.plate("data", y.shape[0], subsample_size=N // 3) as rows:
        numpyro.sample("y", _likelihood(weights, locs, scales), obs=y[rows])


def full_data_model(y):
    weights, locs, scales = _priors()
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _likelihood(weights, locs, scales), obs=y)


def conjugate_model_with_factor(y):
    """Conjugate priors (closed-form EM would apply) plus a factor: generalized EM must run."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.full(2, 2.0)))
    with numpyro.plate("components", 2):
        variances = numpyro.sample("var", dist.InverseGamma(2.0, 1.0))
        locs = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.factor("pull_together", -0.5 * (locs[1] - locs[0]) ** 2 / 4.0)
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _likelihood(weights, locs, jnp.sqrt(variances)), obs=y)


def _numpyro_log_joint(model, y, params):
    params = {name: jnp.asarray(value) for name, value in params.items()}
    return float(log_density(model, (y,), {}, params)[0])


def _fit(model, y, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        return ngm.fit(model, y, num_restarts=4, rng_key=0, **options)


def test_a_subsampled_plate_is_fitted_on_all_rows_with_a_warning(x64):
    y = _data()
    with pytest.warns(UserWarning, match=r"subsamples plate\(s\) 'data' \(80 of 240\)"):
        result = ngm.fit(subsampled_model, y, num_restarts=4, rng_key=0)
    full = _fit(full_data_model, y)
    assert result.objective == pytest.approx(full.objective, rel=1e-9)
    assert result.objective == pytest.approx(
        _numpyro_log_joint(full_data_model, jnp.asarray(y), result.params), rel=1e-9
    )
    for name in ("w", "mu", "sigma"):
        np.testing.assert_allclose(result.params[name], full.params[name], rtol=1e-6)
    tree = result.to_datatree()
    assert tree["observed_data"]["y"].shape == (N,)


def test_a_factor_takes_a_conjugate_model_off_the_closed_form_path(x64):
    y = _data()
    result = _fit(conjugate_model_with_factor, y)
    assert result.fit.options["m_step"] == "generalized"
    expected = _numpyro_log_joint(conjugate_model_with_factor, jnp.asarray(y), result.params)
    assert result.objective == pytest.approx(expected, rel=1e-9)
    with pytest.raises(UnsupportedModelError, match="factor.*'pull_together'"):
        ngm.fit(conjugate_model_with_factor, y, method="biglearn_em")


def test_deterministic_sites_are_in_the_map_tree(x64):
    def model(y):
        weights, locs, scales = _priors()
        numpyro.deterministic("gap", locs[1] - locs[0])
        numpyro.deterministic("precisions", 1.0 / scales**2)
        with numpyro.plate("data", y.shape[0]):
            numpyro.sample("y", _likelihood(weights, locs, scales), obs=y)

    result = _fit(model, _data())
    posterior = result.to_datatree()["posterior"]
    np.testing.assert_allclose(
        posterior["gap"].values[0, 0], result.params["mu"][1] - result.params["mu"][0]
    )
    np.testing.assert_allclose(
        posterior["precisions"].values[0, 0], 1.0 / result.params["sigma"] ** 2, rtol=1e-12
    )
    # Laplace draws hold the latent sites (the MAP's deterministic values are not redrawn).
    draws = result.to_datatree(laplace_draws=20)["posterior"]
    assert set(draws.data_vars) == {"w", "mu", "sigma"}


def test_components_of_different_families_fit_and_make_a_tree(x64):
    """A MixtureGeneral of a Normal and a StudentT: its components cannot switch labels, so
    no site needs a component axis for the tree or the Laplace draws."""

    def model(y):
        weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
        loc = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        scale = numpyro.sample("sigma", dist.LogNormal(0.0, 1.0))
        df = numpyro.sample("df", dist.Gamma(5.0, 1.0))
        components = [dist.Normal(loc, scale), dist.StudentT(df, 3.0, 1.0)]
        with numpyro.plate("data", y.shape[0]):
            numpyro.sample("y", dist.MixtureGeneral(dist.Categorical(weights), components), obs=y)

    rng = np.random.default_rng(0)
    y = np.r_[rng.normal(-2.0, 1.0, 100), 3.0 + rng.standard_t(5.0, 100)]
    result = _fit(model, y)
    expected = _numpyro_log_joint(model, jnp.asarray(y), result.params)
    assert result.objective == pytest.approx(expected, rel=1e-9)
    tree = result.to_datatree()
    assert set(tree["posterior"].data_vars) == {"w", "mu", "sigma", "df"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k notes on 50 draws
        loo = ngm.loo_laplace(result.to_datatree(laplace_draws=50))
    assert np.isfinite(loo.elpd)
