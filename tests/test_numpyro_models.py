"""NumPyro models: builders, the model reader, MAP-EM on the model's own log joint."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.contrib.funsor import config_enumerate, enum
from numpyro.contrib.funsor import log_density as enumerated_log_density
from numpyro.infer.util import log_density

import numpyro_gmm as ngm
from numpyro_gmm.numpyro_bridge import UnsupportedModelError, read_model

from helpers import lognormal_scales_model

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def two_clusters(n=120, d=2, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.stack([np.zeros(d), np.full(d, 6.0)])
    labels = rng.integers(0, 2, n)
    return centers[labels] + rng.normal(size=(n, d))


def scale_tril_prior(covariance_type, n_components, n_features):
    """Cholesky factors of the covariances, with LKJ / LogNormal priors (not conjugate)."""
    eye = jnp.eye(n_features)
    if covariance_type == "tied":
        correlation = numpyro.sample("correlation", dist.LKJCholesky(n_features, 2.0))
        scales = numpyro.sample("scales", dist.LogNormal(0.0, 1.0).expand([n_features]).to_event(1))
        return jnp.broadcast_to(
            scales[:, None] * correlation, (n_components, n_features, n_features)
        )
    with numpyro.plate("components_scale", n_components):
        if covariance_type == "full":
            correlation = numpyro.sample("correlation", dist.LKJCholesky(n_features, 2.0))
            scales = numpyro.sample(
                "scales", dist.LogNormal(0.0, 1.0).expand([n_features]).to_event(1)
            )
            return scales[..., :, None] * correlation
        if covariance_type == "diag":
            scales = numpyro.sample(
                "scales", dist.LogNormal(0.0, 1.0).expand([n_features]).to_event(1)
            )
            return scales[..., :, None] * eye
        scale = numpyro.sample("scale", dist.HalfNormal(3.0))
        return scale[..., None, None] * eye


def user_model(style, covariance_type, n_components=2, n_features=2):
    """A hand-written mixture model in style A, B or C (generalized-EM path)."""

    def parameters():
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.full(n_components, 2.0)))
        with numpyro.plate("components", n_components):
            locs = numpyro.sample("locs", dist.Normal(0.0, 10.0).expand([n_features]).to_event(1))
        return weights, locs, scale_tril_prior(covariance_type, n_components, n_features)

    def model_a(x):
        weights, locs, scale_tril = parameters()
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(
                    dist.Categorical(weights), dist.MultivariateNormal(locs, scale_tril=scale_tril)
                ),
                obs=x,
            )

    def model_b(x):
        weights, locs, scale_tril = parameters()
        components = [
            dist.MultivariateNormal(locs[k], scale_tril=scale_tril[k]) for k in range(n_components)
        ]
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("obs", dist.MixtureGeneral(dist.Categorical(weights), components), obs=x)

    @config_enumerate
    def model_c(x):
        weights, locs, scale_tril = parameters()
        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("assignment", dist.Categorical(weights))
            numpyro.sample("obs", dist.MultivariateNormal(locs[z], scale_tril=scale_tril[z]), obs=x)

    return {"A": model_a, "B": model_b, "C": model_c}[style]


def numpyro_log_joint(model, style, x, params):
    params = {k: jnp.asarray(v) for k, v in params.items()}
    if style == "C":
        return float(
            enumerated_log_density(enum(model, first_available_dim=-2), (x,), {}, params)[0]
        )
    return float(log_density(model, (x,), {}, params)[0])


def quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        return ngm.fit(*args, **kwargs)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_builder_models_objective_is_numpyros_log_joint(covariance_type, dtype):
    x = two_clusters().astype(dtype)
    model = ngm.models.gaussian_mixture(2, covariance_type)
    result = quiet_fit(model, x, num_restarts=3, max_iter=200, tol=1e-6)
    assert result.options["m_step"] == "closed_form"
    expected = numpyro_log_joint(model, "A", jnp.asarray(x), result.params)
    assert result.objective == pytest.approx(expected, rel=1e-5 if dtype == np.float32 else 1e-10)
    # The closed-form engine's own objective agrees with NumPyro's (the priors match exactly).
    assert np.nanmax(result.restarts["objective"]) == pytest.approx(expected, rel=1e-4)


# Every style and every covariance type, each at least once (all styles in diag are compared
# with each other below); the full cross product adds compile time, not coverage.
@pytest.mark.parametrize(
    ("style", "covariance_type"),
    [("A", "full"), ("B", "tied"), ("C", "spherical"), ("A", "diag"), ("C", "full")],
)
def test_user_models_objective_is_numpyros_log_joint(style, covariance_type):
    x = jnp.asarray(two_clusters(n=60), jnp.float32)
    model = user_model(style, covariance_type)
    result = quiet_fit(model, x, num_restarts=2, max_iter=4)
    assert result.options["m_step"] == "generalized"
    assert set(result.params) >= {"weights", "locs"}
    expected = numpyro_log_joint(model, style, x, result.params)
    assert result.objective == pytest.approx(expected, rel=1e-5)
    assert result.predict_proba(x).shape == (60, 2)


def test_styles_agree_on_the_same_model(x64):
    x = two_clusters(n=150, seed=1)
    results = {
        style: quiet_fit(
            user_model(style, "diag"), x, num_restarts=3, max_iter=300, tol=1e-10, rng_key=2
        )
        for style in "ABC"
    }
    objectives = [r.objective for r in results.values()]
    np.testing.assert_allclose(objectives, objectives[0], rtol=1e-6)
    for r in results.values():
        order = np.argsort(r.params["locs"][:, 0])
        np.testing.assert_allclose(
            r.params["locs"][order],
            results["A"].params["locs"][np.argsort(results["A"].params["locs"][:, 0])],
            atol=1e-4,
        )


def poisson_model(x):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("components", 3):
        rates = numpyro.sample("rates", dist.Gamma(2.0, 0.1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample(
            "obs", dist.MixtureSameFamily(dist.Categorical(weights), dist.Poisson(rates)), obs=x
        )


def student_model(x):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0))
        scales = numpyro.sample("scales", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample(
            "obs",
            dist.MixtureSameFamily(dist.Categorical(weights), dist.StudentT(4.0, locs, scales)),
            obs=x,
        )


@pytest.mark.parametrize("family", ["poisson", "student_t"])
def test_generalized_em_never_decreases_the_objective(family, x64):
    rng = np.random.default_rng(3)
    if family == "poisson":
        x = np.concatenate([rng.poisson(3, 100), rng.poisson(15, 100), rng.poisson(40, 80)])
        model, truth = poisson_model, np.array([3.0, 15.0, 40.0])
    else:
        x = np.concatenate([rng.standard_t(4, 150) - 4, rng.standard_t(4, 150) * 0.5 + 5])
        model, truth = student_model, np.array([-4.0, 5.0])
    result = quiet_fit(model, x.astype(float), num_restarts=4, max_iter=300, tol=1e-9)
    for trace in result.trace:
        finite = trace[np.isfinite(trace)]
        assert finite.size >= 2
        assert np.all(np.diff(finite) >= -1e-9 * np.abs(finite[1:]))
    site = "rates" if family == "poisson" else "locs"
    np.testing.assert_allclose(np.sort(result.params[site]), truth, rtol=0.15, atol=0.5)


def test_map_helpers_and_nuts_warm_start(x64):
    from numpyro.infer import MCMC, NUTS

    from numpyro_gmm.infer import EM, MAP

    x = two_clusters(n=200, d=1, seed=4)[:, 0]
    model = ngm.models.gaussian_mixture(2, "spherical")
    result = MAP(EM(model, tol=1e-8), num_restarts=4).run(jax.random.key(0), x)
    mcmc = MCMC(
        NUTS(model, init_strategy=result.init_to_value()),
        num_warmup=300,
        num_samples=400,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), x)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples().items()}
    # Undo label switching: order every draw's components by their location.
    order = np.argsort(samples["locs"][:, :, 0], axis=1)
    map_order = np.argsort(result.params["locs"][:, 0])
    for site in ("weights", "locs", "variances"):
        draws = np.take_along_axis(samples[site].reshape(400, 2, -1), order[:, :, None], axis=1)
        estimate = result.params[site].reshape(2, -1)[map_order]
        low, high = np.quantile(draws, [0.01, 0.99], axis=0)
        assert np.all((low <= estimate) & (estimate <= high)), site


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ("two_mixtures", "2 observed mixture sites"),
        ("markov", "enumerated discrete sites.*markov"),
        ("discrete_parameter", "Latent site 'degrees' is discrete"),
        ("no_mixture", "No mixture found"),
    ],
)
def test_unsupported_models_name_the_site(builder, message):
    x = jnp.asarray(two_clusters(n=20, d=1)[:, 0])

    def two_mixtures(x):
        w = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
        for name in ("obs_a", "obs_b"):
            with numpyro.plate(f"data_{name}", x.shape[0]):
                numpyro.sample(
                    name,
                    dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(jnp.zeros(2), 1.0)),
                    obs=x,
                )

    @config_enumerate
    def markov(x):
        transition = numpyro.sample("transition", dist.Dirichlet(jnp.ones((2, 2))).to_event(1))
        state = 0
        for t in numpyro.contrib.funsor.markov(range(3)):
            state = numpyro.sample(f"state_{t}", dist.Categorical(transition[state]))
            numpyro.sample(f"y_{t}", dist.Normal(jnp.asarray([0.0, 5.0])[state], 1.0), obs=x[t])

    def discrete_parameter(x):
        degrees = numpyro.sample("degrees", dist.Poisson(3.0))
        w = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(
                    dist.Categorical(w), dist.StudentT(degrees + 1.0, jnp.zeros(2), 1.0)
                ),
                obs=x,
            )

    def no_mixture(x):
        loc = numpyro.sample("loc", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("obs", dist.Normal(loc, 1.0), obs=x)

    model = locals()[builder]
    with pytest.raises(UnsupportedModelError, match=message):
        read_model(model, x)
    with pytest.raises(UnsupportedModelError, match=message):
        ngm.fit(model, x)


def test_bad_arguments():
    model = ngm.models.gaussian_mixture(2)
    with pytest.raises(ValueError, match="Unknown method"):
        ngm.fit(model, np.zeros((10, 2)), method="nuts")
    with pytest.raises(ValueError, match="contains NaN"):
        ngm.fit(model, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        ngm.fit(ngm.models.gaussian_mixture(5), np.arange(6.0).reshape(3, 2))
    with pytest.raises(ValueError, match="Unknown covariance_type"):
        ngm.models.gaussian_mixture(2, "banana")


def svi_map(model, x, initial, steps, learning_rate):
    """SVI with an AutoDelta guide (NumPyro's own MAP) from ``initial``."""
    import optax
    from numpyro.infer import SVI, Trace_ELBO, init_to_value
    from numpyro.infer.autoguide import AutoDelta

    guide = AutoDelta(model, init_loc_fn=init_to_value(values=initial))
    svi = SVI(model, guide, optax.adam(learning_rate), Trace_ELBO())
    state = svi.run(jax.random.key(0), steps, x, progress_bar=False)
    return {k: np.asarray(v) for k, v in guide.median(state.params).items()}


@pytest.mark.parametrize("prior_kind", ["conjugate", "non_conjugate"])
def test_map_agrees_with_svi_autodelta_from_the_same_start(prior_kind, x64):
    x = two_clusters(n=150, d=1, seed=5)[:, 0]
    if prior_kind == "conjugate":
        model = ngm.models.gaussian_mixture(2, "diag")
        initial = {
            "weights": np.array([0.5, 0.5]),
            "locs": np.array([[1.0], [4.0]]),
            "variances": np.array([[1.0], [1.0]]),
        }
        options = {"reg_covar": 1e-12}
    else:
        model = user_model("A", "diag", n_features=1)
        initial = {
            "weights": np.array([0.5, 0.5]),
            "locs": np.array([[1.0], [4.0]]),
            "scales": np.array([[1.0], [1.0]]),
        }
        options = {}
    xm = x[:, None]
    result = quiet_fit(
        model, xm, num_restarts=1, max_iter=2000, tol=1e-12, initial_values=initial, **options
    )
    reference = svi_map(model, jnp.asarray(xm), initial, steps=6000, learning_rate=0.01)
    expected = numpyro_log_joint(model, "A", jnp.asarray(xm), reference)
    assert result.objective == pytest.approx(expected, rel=1e-6)
    assert result.objective >= expected - 1e-6 * abs(expected)
    for site, value in reference.items():
        np.testing.assert_allclose(result.params[site], value, rtol=2e-3, atol=2e-4)


def conjugate_user_model(x):
    """Hand-written conjugate mixture: independent Normal means, Inverse-Wishart covariances."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.full(2, 2.0)))
    with numpyro.plate("k", 2):
        covariances = numpyro.sample("cov", dist.InverseWishart(4.0, scale_matrix=jnp.eye(2)))
        means = numpyro.sample("mu", dist.MultivariateNormal(jnp.zeros(2), 100.0 * jnp.eye(2)))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample(
            "obs",
            dist.MixtureSameFamily(
                dist.Categorical(weights), dist.MultivariateNormal(means, covariances)
            ),
            obs=x,
        )


def test_user_written_conjugate_model_gets_closed_form_steps(x64):
    x = two_clusters(n=150, seed=6)
    closed = quiet_fit(conjugate_user_model, x, num_restarts=3, tol=1e-12, reg_covar=1e-12)
    assert closed.options["m_step"] == "closed_form"
    assert closed.objective == pytest.approx(
        numpyro_log_joint(conjugate_user_model, "A", jnp.asarray(x), closed.params), rel=1e-10
    )
    generalized = quiet_fit(
        conjugate_user_model, x, num_restarts=3, tol=1e-12, m_step="generalized", max_iter=500
    )
    assert generalized.options["m_step"] == "generalized"
    # Both M-steps reach the same MAP.
    assert generalized.objective == pytest.approx(closed.objective, rel=1e-7)
    order = np.argsort(closed.params["mu"][:, 0])
    other = np.argsort(generalized.params["mu"][:, 0])
    np.testing.assert_allclose(
        generalized.params["cov"][other], closed.params["cov"][order], rtol=1e-4, atol=1e-6
    )
    with pytest.raises(ValueError, match="needs a conjugate Gaussian mixture"):
        ngm.fit(user_model("A", "diag"), x, m_step="closed_form")


@pytest.mark.parametrize("which", ["user", "builder"])
def test_float32_data_under_x64_fit_in_float64_and_warm_start_nuts(x64, which):
    from numpyro.infer import MCMC, NUTS

    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(-4, 1, 60), rng.normal(0, 0.5, 60), rng.normal(5, 2, 60)])
    y = y.astype(np.float32)
    model = lognormal_scales_model if which == "user" else ngm.models.gaussian_mixture(3)
    result = ngm.fit(model, y, num_restarts=2)
    # JAX's precision, as the model's own sites have it (float32 data failed here before).
    assert {np.asarray(v).dtype for v in result.params.values()} == {np.dtype(np.float64)}
    mcmc = MCMC(
        NUTS(model, init_strategy=result.init_to_value()),
        num_warmup=3,
        num_samples=3,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), y)
    assert all(np.isfinite(v).all() for v in mcmc.get_samples().values())
    assert "posterior" in result.to_datatree().children



def test_float64_fit_of_data_a_parallel_nuts_run_saw_in_float32():
    """JAX reuses an earlier transfer of the same numpy object in that transfer's dtype: after
    NUTS (two chains in parallel, x64 off) on ``x``, a float64 fit of ``x`` got float32
    buffers behind float64 arrays and failed inside its loop."""
    from numpyro.infer import MCMC, NUTS

    x = np.random.default_rng(4).normal(size=(90, 2))
    model = ngm.models.gaussian_mixture(2, "diag")
    mcmc = MCMC(NUTS(model), num_warmup=3, num_samples=3, num_chains=2, progress_bar=False)
    mcmc.run(jax.random.key(0), x)
    gm = ngm.GaussianMixture(2, random_state=0).fit(x)
    assert gm.means_.dtype == np.float64
    reference = ngm.GaussianMixture(2, random_state=0).fit(x.copy())
    np.testing.assert_allclose(gm.means_, reference.means_, rtol=1e-12)
