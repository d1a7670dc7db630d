"""``ngm.fit(model, *args, **kwargs)`` takes the model's own arguments, as ``MCMC.run`` does:
covariates first, data by keyword, a number of components; new data of the same shapes
compile nothing; ``predict`` takes the model's arguments for new data."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density

import numpyro_gmm as ngm
from numpyro_gmm.timing import measure

N = 160


def _regression_data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    covariate = rng.normal(size=n)
    group = rng.integers(0, 2, n)
    y = np.where(group == 0, 1.0 + 2.0 * covariate, -1.0 - covariate)
    return covariate, y + 0.3 * rng.normal(size=n), group


def mixture_regression(x, y=None):
    """Two regression lines: covariates first, the observed response second."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("lines", 2):
        intercept = numpyro.sample("a", dist.Normal(0.0, 5.0))
        slope = numpyro.sample("b", dist.Normal(0.0, 5.0))
        noise = numpyro.sample("s", dist.HalfNormal(2.0))
    lines = dist.Normal(intercept + slope * x[:, None], noise)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(weights), lines), obs=y)


def components_first(K, data=None):
    """The number of components first, the data by keyword."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(K)))
    with numpyro.plate("components", K):
        locs = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        scales = numpyro.sample("s", dist.HalfNormal(2.0))
    likelihood = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales))
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("obs", likelihood, obs=data)


def _log_density(model, args, kwargs, params):
    params = {name: jnp.asarray(value) for name, value in params.items()}
    return float(log_density(model, args, kwargs, params)[0])


def test_a_regression_with_covariates_first(x64):
    x, y, group = _regression_data()
    result = ngm.fit(mixture_regression, x, y, num_restarts=4, rng_key=0)
    assert result.objective == pytest.approx(
        _log_density(mixture_regression, (x, y), {}, result.params), rel=1e-9
    )
    # The two lines are found (intercepts 1 and -1, slopes 2 and -1).
    order = np.argsort(result.params["a"])
    np.testing.assert_allclose(result.params["a"][order], [-1.0, 1.0], atol=0.15)
    np.testing.assert_allclose(result.params["b"][order], [-1.0, 2.0], atol=0.15)
    # New data as the model's arguments, positionally or by name.
    new_x, new_y, new_group = _regression_data(seed=1, n=40)
    labels = result.predict(new_x, new_y)
    np.testing.assert_array_equal(result.predict(x=new_x, y=new_y), labels)
    agreement = np.mean(labels == new_group)
    assert max(agreement, 1 - agreement) > 0.9
    assert result.score_samples(new_x, new_y).shape == (40,)
    with pytest.raises(TypeError, match="as the fit did"):
        result.predict(new_x, new_y, new_y)


def test_new_data_of_the_same_shapes_compile_nothing(x64):
    x, y, _ = _regression_data()
    ngm.fit(mixture_regression, x, y, num_restarts=2, rng_key=0)
    x2, y2, _ = _regression_data(seed=3)
    with measure() as timing:
        again = ngm.fit(mixture_regression, x2, y2, num_restarts=2, rng_key=1)
    assert timing.programs == 0
    assert again.objective == pytest.approx(
        _log_density(mixture_regression, (x2, y2), {}, again.params), rel=1e-9
    )


def test_a_number_of_components_and_data_by_keyword(x64):
    _, y, _ = _regression_data()
    result = ngm.fit(components_first, 2, data=y, num_restarts=2, rng_key=0, m_steps=5)
    assert result.params["mu"].shape == (2,)
    assert result.fit.options["m_steps"] == 5  # a method option among the model's keywords
    assert result.objective == pytest.approx(
        _log_density(components_first, (2,), {"data": y}, result.params), rel=1e-9
    )
    by_name = ngm.fit(components_first, K=2, data=y, num_restarts=2, rng_key=0, m_steps=5)
    np.testing.assert_allclose(by_name.params["mu"], result.params["mu"], rtol=1e-9)
    three = ngm.fit(components_first, 3, data=y, num_restarts=2, rng_key=0)
    assert three.params["mu"].shape == (3,)
    np.testing.assert_array_equal(result.predict(2, data=y[:7]), result.predict(y[:7]))


def test_an_unknown_keyword_names_the_options():
    _, y, _ = _regression_data()
    with pytest.raises(TypeError, match="'bogus'.*neither a parameter of the model.*m_steps"):
        ngm.fit(components_first, 2, data=y, bogus=1)

    def with_a_list(data, scales):
        components_first(len(scales), data=data)

    with pytest.raises(TypeError, match="'scales' is a list, neither an array.*nor a hashable"):
        ngm.fit(with_a_list, y, scales=[1.0, 2.0])


def test_a_call_without_the_models_arguments_says_how_to_pass_them():
    def mixture(x, K=2):
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(K)))
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample(
                "obs", dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, 1.0)),
                obs=x,
            )

    with pytest.raises(TypeError, match=r"missing a required argument: 'x'.*ngm.fit\(mixture, "
                       r"data, \.\.\.\) for mixture\(x, K=2\)"):
        ngm.fit(mixture)
    with pytest.raises(TypeError, match=r"'k', which is neither a parameter of the model"):
        ngm.fit(mixture, np.zeros(10), k=3)
