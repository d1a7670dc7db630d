"""Every method behind every entry point: facade, ngm.fit / infer classes, and their errors."""

import warnings

import numpy as np
import pytest

import numpyro_gmm as ngm
from numpyro_gmm.infer import MAP, BigLearnEM, GradientEM
from numpyro_gmm.numpyro_bridge import UnsupportedModelError

from helpers import match_components

MEANS = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 800)
    return MEANS[labels] + rng.normal(size=(800, 2))


def quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        return fn(*args, **kwargs)


@pytest.mark.parametrize(
    ("method", "covariance_type", "options"),
    [
        ("em", "full", None),
        ("biglearn_em", "full", {"weight_smoothing": 0.25, "polish_iter": 20}),
        ("gradient_em", "spherical", None),
    ],
)
def test_facade_methods_recover_the_clusters(method, covariance_type, options, data):
    gm = quietly(
        ngm.GaussianMixture(
            4,
            covariance_type=covariance_type,
            method=method,
            method_options=options,
            n_init=2,
            max_iter=200,
            random_state=0,
        ).fit,
        data,
    )
    assert gm.n_components_found_ == 4
    order = match_components(gm.means_, MEANS)
    np.testing.assert_allclose(gm.means_[order], MEANS, atol=0.25)
    assert np.isfinite(gm.score(data)) and gm.predict(data).shape == (800,)


def test_facade_rejects_options_a_method_does_not_take(data):
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['step_size'\] for method='em'"):
        ngm.GaussianMixture(2, method_options={"step_size": 1.0}).fit(data)
    with pytest.raises(ValueError, match="'polish_iter'"):  # the message lists what it takes
        ngm.GaussianMixture(2, method="biglearn_em", method_options={"stepsize": 1}).fit(data)


def test_gradient_em_polishes_under_the_prior(data):
    """The exploration is maximum likelihood; the polish is MAP-EM under the given prior."""
    import jax.numpy as jnp

    from numpyro_gmm.fitting import log_joint
    from numpyro_gmm.mixture.params import GMMParams

    prior = ngm.GaussianMixturePrior(weight_concentration=np.full(4, 50.0))
    gm = quietly(
        ngm.GaussianMixture(4, method="gradient_em", prior=prior, random_state=0, max_iter=200).fit,
        data,
    )
    params = GMMParams(gm.weights_, gm.means_, gm.precisions_cholesky_)
    expected = log_joint(jnp.asarray(data, jnp.float32), params, "full", prior)
    assert gm.objective_ == pytest.approx(expected, rel=1e-5)
    # A strong flat Dirichlet pulls the weights towards 1/4 (MAP, not ML).
    ml = quietly(
        ngm.GaussianMixture(4, method="gradient_em", random_state=0, max_iter=200).fit, data
    )
    assert np.abs(gm.weights_ - 0.25).max() < np.abs(ml.weights_ - 0.25).max()


@pytest.mark.parametrize("method", ["em", "biglearn_em", "gradient_em"])
def test_fit_runs_every_method_on_a_numpyro_model(method, data):
    model = ngm.models.gaussian_mixture(4, "full")
    result = quietly(ngm.fit, model, data, method=method, num_restarts=2, max_iter=200)
    assert result.method == method
    order = match_components(result.params["locs"], MEANS)
    np.testing.assert_allclose(result.params["locs"][order], MEANS, atol=0.25)
    assert np.isfinite(result.objective)


def test_conjugate_only_methods_explain_what_they_need(data):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def lognormal_model(x):
        w = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
        with numpyro.plate("components", 2):
            loc = numpyro.sample("loc", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
            scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(
                    dist.Categorical(w), dist.Normal(loc, scale[:, None]).to_event(1)
                ),
                obs=x,
            )

    for kernel in (BigLearnEM, GradientEM):
        with pytest.raises(UnsupportedModelError, match="runs on conjugate Gaussian mixtures"):
            MAP(kernel(lognormal_model), num_restarts=1).run(0, data)


@pytest.mark.parametrize("n_components", [2, 6])
def test_gradient_em_returns_the_models_number_of_components(data, n_components):
    # The data have 4 clusters: the exploration finds 4, which are merged down to 2 or split
    # up to 6; the result has the model's number of components and reports what was found.
    model = ngm.models.gaussian_mixture(n_components, "spherical")
    result = quietly(ngm.fit, model, data, method="gradient_em", num_restarts=1, max_iter=300)
    assert result.params["weights"].shape == (n_components,)
    assert result.params["locs"].shape == (n_components, 2)
    found = result.fit.extras["n_components_found"]
    assert found != n_components  # the exploration's own count, then merged or split
    assert len(result.fit.extras["adjustments"]) == abs(n_components - found)
    assert np.isfinite(result.objective)
    gm = quietly(
        ngm.GaussianMixture(n_components, method="gradient_em", max_iter=300, random_state=0).fit,
        data,
    )
    assert gm.weights_.shape == (n_components,)
    assert len(gm.method_results_["adjustments"]) == abs(n_components - gm.n_components_found_)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_map_commutes_with_standardization(covariance_type, x64):
    """EM in standardized coordinates with the mapped prior gives the mapped MAP."""
    import jax.numpy as jnp

    from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture, log_joint
    from numpyro_gmm.mixture import affine

    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.normal(size=(100, 2)) * [1.0, 10.0] + [0.0, 50.0],
            rng.normal(size=(100, 2)) * [0.5, 5.0] + [4.0, 90.0],
        ]
    )
    d = 2
    fields = {"weight_concentration": np.full(2, 2.0), "mean_loc": x.mean(0), "mean_precision": 0.1}
    if covariance_type in ("full", "tied"):
        fields.update(covariance_df=d + 2.0, covariance_scale=np.diag(x.var(0)) * 0.1)
    else:
        rate = x.var(0) * 0.1 if covariance_type == "diag" else float(x.var(0).mean() * 0.1)
        fields.update(variance_concentration=2.0, variance_rate=rate)
    prior = ngm.GaussianMixturePrior(**fields)
    shift, scale = affine.standardization(x, covariance_type)
    if covariance_type == "spherical":
        shift, scale = x.mean(0), np.full(2, 3.0)
    start = fit_gaussian_mixture(
        jnp.asarray(x), 2, covariance_type=covariance_type, max_iter=0, init_params="kmeans"
    ).params
    kwargs = dict(covariance_type=covariance_type, max_iter=3000, tol=1e-13, reg_covar=1e-12)
    raw = fit_gaussian_mixture(
        jnp.asarray(x), 2, prior=prior, initial=InitialValues(*start), **kwargs
    )
    z = (x - shift) / scale
    standard = fit_gaussian_mixture(
        jnp.asarray(z),
        2,
        prior=affine.prior_to_standard(prior, shift, scale, covariance_type),
        initial=InitialValues(*affine.to_standard(start, shift, scale, covariance_type)),
        **kwargs,
    )
    back = affine.from_standard(standard.params, shift, scale, covariance_type)
    np.testing.assert_allclose(back.means, raw.params.means, rtol=1e-7)
    np.testing.assert_allclose(back.precisions_cholesky, raw.params.precisions_cholesky, rtol=1e-6)
    np.testing.assert_allclose(
        affine.covariances_from_standard(standard.covariances, scale, covariance_type),
        raw.covariances,
        rtol=1e-6,
    )
    assert log_joint(jnp.asarray(x), back, covariance_type, prior) == pytest.approx(
        raw.objective, rel=1e-10
    )
