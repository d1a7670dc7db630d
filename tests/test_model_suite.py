"""Mixture models as NumPyro users write them, each with every method, x64 off and on.

Every (model, method) either refuses with an error that names the problem, or returns a MAP
whose ``objective`` is NumPyro's own log density at ``result.params`` (funsor's for enumerated
models). The MAP is never below SVI + AutoDelta's from the same start, and its DataTree lines
up with ``az.from_numpyro`` of a NUTS run of the same model, which ``compare_to_posterior``
then reads.
"""

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import arviz_base as azb
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from numpyro.contrib.funsor import config_enumerate, enum
from numpyro.contrib.funsor import log_density as enumerated_log_density
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, TraceEnum_ELBO, init_to_value
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.util import log_density

import numpyro_gmm as ngm

METHODS = ("em", "gradient_em", "biglearn_em")
N = 150


# --- data -------------------------------------------------------------------------------------


def _two_groups(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-2.0, 0.7, n // 2), rng.normal(2.5, 1.0, n - n // 2)])


def _two_groups_2d(seed=0, n=N):
    rng = np.random.default_rng(seed)
    centers = np.array([[-2.0, 0.0], [2.5, 1.5]])
    labels = np.arange(n) % 2
    return centers[labels] + rng.normal(size=(n, 2)) @ np.array([[0.8, 0.3], [0.0, 0.6]])


def _counts(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.poisson(2.0, n // 2), rng.poisson(12.0, n - n // 2)]).astype(float)


def _regression(seed=0, n=N):
    rng = np.random.default_rng(seed)
    covariate = rng.normal(size=n)
    line = np.arange(n) % 2
    y = np.where(line == 0, 1.0 + 2.0 * covariate, -1.0 - covariate)
    return covariate, y + 0.3 * rng.normal(size=n)


# --- models -------------------------------------------------------------------------------------


def _priors(k=2):
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(k)))
    with numpyro.plate("components", k):
        locs = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        scales = numpyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    return weights, locs, scales


def _normal_mixture(weights, locs, scales):
    return dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales))


def plain(y):
    weights, locs, scales = _priors()
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def factor_and_calibration(y):
    """An ordering factor on the means and an observed calibration of the first mean."""
    weights, locs, scales = _priors()
    numpyro.factor("ordered", 2.0 * jnp.tanh(locs[1] - locs[0]))
    numpyro.sample("calibration", dist.Normal(locs[0], 0.2), obs=-1.5)
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def masked(y):
    weights, locs, scales = _priors()
    keep = jnp.arange(y.shape[0]) % 3 != 0
    with numpyro.plate("data", y.shape[0]), numpyro.handlers.mask(mask=keep):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def scaled(y):
    weights, locs, scales = _priors()
    with numpyro.plate("data", y.shape[0]), numpyro.handlers.scale(scale=0.5):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def subsampled(y):
    weights, locs, scales = _priors()
    with numpyro.plate("data", y.shape[0], subsample_size=N // 3) as rows:
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y[rows])


def regression(x, y=None):
    """Two regression lines: covariates first, ``y=None`` for prior predictive draws."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("lines", 2):
        intercept = numpyro.sample("a", dist.Normal(0.0, 5.0))
        slope = numpyro.sample("b", dist.Normal(0.0, 5.0))
        noise = numpyro.sample("s", dist.HalfNormal(2.0))
    lines = dist.Normal(intercept + slope * x[:, None], noise)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.MixtureSameFamily(dist.Categorical(weights), lines), obs=y)


def predictive(y=None, n=100):
    """The data by keyword, with ``y=None`` drawing ``n`` rows from the prior predictive."""
    weights, locs, scales = _priors()
    with numpyro.plate("data", n if y is None else y.shape[0]):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def k_first(K, data=None):
    """The number of components first, the data by keyword."""
    weights, locs, scales = _priors(K)
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("obs", _normal_mixture(weights, locs, scales), obs=data)


def hierarchical(y):
    """Component means drawn around a shared, unknown centre and spread."""
    centre = numpyro.sample("centre", dist.Normal(0.0, 5.0))
    spread = numpyro.sample("spread", dist.HalfNormal(5.0))
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("mu", dist.Normal(centre, spread))
        scales = numpyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def deterministic(y):
    weights, locs, scales = _priors()
    numpyro.deterministic("gap", locs[1] - locs[0])
    numpyro.deterministic("precision", 1.0 / scales**2)
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _normal_mixture(weights, locs, scales), obs=y)


def lkj(x):
    """Full covariances from LKJ correlations and LogNormal scales (2-D)."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("mu", dist.Normal(0.0, 5.0).expand([2]).to_event(1))
        correlation = numpyro.sample("corr", dist.LKJCholesky(2, 2.0))
        scales = numpyro.sample("sd", dist.LogNormal(0.0, 1.0).expand([2]).to_event(1))
    scale_tril = scales[..., :, None] * correlation
    likelihood = dist.MixtureSameFamily(
        dist.Categorical(weights), dist.MultivariateNormal(locs, scale_tril=scale_tril)
    )
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", likelihood, obs=x)


def student_t(y):
    weights, locs, scales = _priors()
    likelihood = dist.MixtureSameFamily(dist.Categorical(weights), dist.StudentT(4.0, locs, scales))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", likelihood, obs=y)


def poisson(counts):
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("components", 2):
        rates = numpyro.sample("rate", dist.Gamma(2.0, 0.2))
    likelihood = dist.MixtureSameFamily(dist.Categorical(weights), dist.Poisson(rates))
    with numpyro.plate("data", counts.shape[0]):
        numpyro.sample("counts", likelihood, obs=counts)


def different_families(y):
    """A Normal component and a heavy-tailed StudentT component (MixtureGeneral)."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.ones(2)))
    loc = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    scale = numpyro.sample("sigma", dist.LogNormal(0.0, 1.0))
    df = numpyro.sample("df", dist.Gamma(5.0, 1.0))
    components = [dist.Normal(loc, scale), dist.StudentT(df, 2.5, 1.0)]
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", dist.MixtureGeneral(dist.Categorical(weights), components), obs=y)


@config_enumerate
def enumerated(y):
    weights, locs, scales = _priors()
    with numpyro.plate("data", y.shape[0]):
        z = numpyro.sample("z", dist.Categorical(weights))
        numpyro.sample("y", dist.Normal(locs[z], scales[z]), obs=y)


@config_enumerate
def enumerated_with_factor(y):
    weights, locs, scales = _priors()
    numpyro.factor("ordered", 2.0 * jnp.tanh(locs[1] - locs[0]))
    with numpyro.plate("data", y.shape[0]):
        z = numpyro.sample("z", dist.Categorical(weights))
        numpyro.sample("y", dist.Normal(locs[z], scales[z]), obs=y)


def conjugate_1d(y):
    """Dirichlet weights, Normal means, Inverse-Gamma variances: the closed-form path."""
    weights = numpyro.sample("w", dist.Dirichlet(jnp.full(2, 2.0)))
    with numpyro.plate("components", 2):
        variances = numpyro.sample("var", dist.InverseGamma(2.0, 1.0))
        locs = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample("y", _normal_mixture(weights, locs, jnp.sqrt(variances)), obs=y)


BUILDER_FULL = ngm.models.gaussian_mixture(2, "full")
BUILDER_DIAG = ngm.models.gaussian_mixture(2, "diag")


# --- the table ----------------------------------------------------------------------------------

NOT_CONJUGATE = r"runs on conjugate Gaussian mixtures .* method='em' fits any mixture model"


@dataclass(frozen=True)
class Case:
    """A model, how it is called, and what each method must do with it."""

    model: Callable
    arguments: Callable[[], tuple[tuple, dict]]
    refusals: dict[str, str] = field(default_factory=dict)  # method -> message pattern
    start: dict | None = None  # EM's and SVI's common start
    enumerated: bool = False
    warning: str | None = None  # a warning every fit must give
    density_model: Callable | None = None  # the model whose log density is the objective
    nuts: bool = True  # NUTS can run it (a subsampled plate it cannot)

    def log_density(self, params, args, kwargs):
        model = self.density_model or self.model
        params = {name: jnp.asarray(value) for name, value in params.items()}
        if self.enumerated:
            model = enum(config_enumerate(model), first_available_dim=-2)
            return float(enumerated_log_density(model, args, kwargs, params)[0])
        return float(log_density(model, args, kwargs, params)[0])


def _not_conjugate(because=""):
    return {method: NOT_CONJUGATE.replace(" .* ", f" .*{because}.* ") for method in METHODS[1:]}


_START_1D = {"w": np.array([0.5, 0.5]), "mu": np.array([-1.0, 1.0]), "sigma": np.ones(2)}

CASES = {
    "factor_and_calibration": Case(
        factor_and_calibration,
        lambda: ((_two_groups(),), {}),
        _not_conjugate(r"'ordered', 'calibration'"),
        _START_1D,
    ),
    "masked": Case(masked, lambda: ((_two_groups(),), {}), _not_conjugate(), _START_1D),
    "scaled": Case(scaled, lambda: ((_two_groups(),), {}), _not_conjugate(), _START_1D),
    "subsampled": Case(
        subsampled,
        lambda: ((_two_groups(),), {}),
        _not_conjugate(),
        _START_1D,
        warning=r"subsamples plate\(s\) 'data' \(50 of 150\)",
        density_model=plain,
        nuts=False,
    ),
    "regression": Case(
        regression,
        lambda: (_regression(), {}),
        _not_conjugate(),
        {"w": np.array([0.5, 0.5]), "a": np.array([-0.5, 0.5]), "b": np.zeros(2), "s": np.ones(2)},
    ),
    "predictive": Case(predictive, lambda: ((), {"y": _two_groups()}), _not_conjugate(), _START_1D),
    "k_first": Case(k_first, lambda: ((2,), {"data": _two_groups()}), _not_conjugate(), _START_1D),
    "hierarchical": Case(
        hierarchical,
        lambda: ((_two_groups(),), {}),
        _not_conjugate(),
        {**_START_1D, "centre": np.array(0.0), "spread": np.array(2.0)},
    ),
    "deterministic": Case(
        deterministic, lambda: ((_two_groups(),), {}), _not_conjugate(), _START_1D
    ),
    "lkj": Case(
        lkj,
        lambda: ((_two_groups_2d(),), {}),
        _not_conjugate(),
        {
            "w": np.array([0.5, 0.5]),
            "mu": np.array([[-1.0, 0.0], [1.0, 1.0]]),
            "corr": np.broadcast_to(np.eye(2), (2, 2, 2)),
            "sd": np.ones((2, 2)),
        },
    ),
    "student_t": Case(student_t, lambda: ((_two_groups(),), {}), _not_conjugate(), _START_1D),
    "poisson": Case(
        poisson,
        lambda: ((_counts(),), {}),
        _not_conjugate(),
        {"w": np.array([0.5, 0.5]), "rate": np.array([4.0, 8.0])},
    ),
    "different_families": Case(
        different_families,
        lambda: ((_two_groups(),), {}),
        _not_conjugate(),
        {"w": np.full(2, 0.5), "mu": np.array(-1.0), "sigma": np.array(1.0), "df": np.array(5.0)},
    ),
    "enumerated": Case(
        enumerated, lambda: ((_two_groups(),), {}), _not_conjugate(), _START_1D, enumerated=True
    ),
    "enumerated_with_factor": Case(
        enumerated_with_factor,
        lambda: ((_two_groups(),), {}),
        _not_conjugate(r"'ordered'"),
        _START_1D,
        enumerated=True,
    ),
    "conjugate_1d": Case(
        conjugate_1d,
        lambda: ((_two_groups(),), {}),
        {"biglearn_em": r"biglearn_em' needs the means' prior to scale.*'mu'.*method='em'"},
        start={"w": np.array([0.5, 0.5]), "mu": np.array([-1.0, 1.0]), "var": np.ones(2)},
    ),
    "builder_full": Case(
        BUILDER_FULL,
        lambda: ((_two_groups_2d(),), {}),
        start={
            "weights": np.array([0.5, 0.5]),
            "locs": np.array([[-1.0, 0.0], [1.0, 1.0]]),
            "covariances": np.broadcast_to(np.eye(2), (2, 2, 2)),
        },
    ),
    "builder_diag": Case(
        BUILDER_DIAG,
        lambda: ((_two_groups_2d(),), {}),
        {"biglearn_em": r"biglearn_em' fits covariance_type='full'.*got 'diag' with 2 features"},
        start={
            "weights": np.array([0.5, 0.5]),
            "locs": np.array([[-1.0, 0.0], [1.0, 1.0]]),
            "variances": np.ones((2, 2)),
        },
    ),
}


def _cast(value, dtype):
    return value.astype(dtype) if isinstance(value, np.ndarray) else value


def _arguments(case: Case, dtype):
    args, kwargs = case.arguments()
    return (
        tuple(_cast(value, dtype) for value in args),
        {name: _cast(value, dtype) for name, value in kwargs.items()},
    )


def _fit(case: Case, args, kwargs, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        if case.warning is None:
            return ngm.fit(case.model, *args, rng_key=0, **options, **kwargs)
        with pytest.warns(UserWarning, match=case.warning):
            return ngm.fit(case.model, *args, rng_key=0, **options, **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", CASES)
def test_each_method_fits_the_whole_log_joint_or_refuses(name, method, dtype):
    case = CASES[name]
    args, kwargs = _arguments(case, dtype)
    if method in case.refusals:
        with pytest.raises(ValueError, match=case.refusals[method]):
            _fit(case, args, kwargs, method=method, num_restarts=2)
        return
    result = _fit(case, args, kwargs, method=method, num_restarts=2, max_iter=200)
    floats = [v for v in result.params.values() if jnp.issubdtype(np.asarray(v).dtype, np.floating)]
    assert {np.asarray(v).dtype for v in floats} == {dtype}
    expected = case.log_density(result.params, args, kwargs)
    tolerance = 2e-5 if dtype == np.float32 else 1e-9
    assert np.isfinite(result.objective)
    assert result.objective == pytest.approx(expected, rel=tolerance, abs=tolerance)
    if method == "gradient_em":  # K components, and what the over-parameterized stage found
        assert result.params[list(result.params)[0]].shape[0] == 2
        assert result.fit.extras["n_components_found"] >= 1


def _svi_map(case: Case, args, kwargs, steps=3000):
    model = case.density_model or case.model
    latent = numpyro.handlers.block(model, hide=["z"]) if case.enumerated else model
    guide = AutoDelta(latent, init_loc_fn=init_to_value(values=case.start))
    loss = TraceEnum_ELBO() if case.enumerated else Trace_ELBO()
    svi = SVI(model, guide, optax.adam(0.02), loss)
    state = svi.run(jax.random.key(0), steps, *args, progress_bar=False, **kwargs)
    return {name: np.asarray(value) for name, value in guide.median(state.params).items()}


@pytest.mark.parametrize("name", CASES)
def test_the_map_is_never_below_svi_autodeltas_from_the_same_start(name, x64):
    case = CASES[name]
    args, kwargs = _arguments(case, np.float64)
    result = _fit(case, args, kwargs, num_restarts=1, initial_values=case.start, tol=1e-10)
    reference = case.log_density(_svi_map(case, args, kwargs), args, kwargs)
    assert result.objective >= reference - 1e-6 * abs(reference)


@pytest.mark.parametrize("name", [name for name, case in CASES.items() if case.nuts])
def test_the_map_tree_lines_up_with_nuts_and_compares_to_its_posterior(name, x64):
    case = CASES[name]
    args, kwargs = _arguments(case, np.float64)
    result = _fit(case, args, kwargs, num_restarts=2)
    mcmc = MCMC(
        NUTS(case.model, init_strategy=result.init_to_value()),
        num_warmup=60,
        num_samples=60,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), *args, **kwargs)
    theirs = azb.from_numpyro(mcmc)
    ours = result.to_datatree()
    for group in ("posterior", "observed_data"):
        assert set(ours[group].data_vars) == set(theirs[group].data_vars), group
        for site, variable in theirs[group].data_vars.items():
            assert ours[group][site].dims == variable.dims, (group, site)
            for dim in set(variable.dims) - {"chain", "draw"}:
                np.testing.assert_array_equal(ours[group][dim].values, theirs[group][dim].values)
    comparison = ngm.compare_to_posterior(result, theirs, plot=False)
    assert set(comparison.table["variable"]) == set(result.params)
    assert np.isfinite(comparison.table["map"]).all()


@pytest.mark.parametrize(
    ("name", "without_data"),
    [
        ("regression", lambda args, kwargs: (args[:1], kwargs)),  # fit(model, x, y)
        ("k_first", lambda args, kwargs: (args, {})),  # fit(model, 2, data=y)
        ("predictive", lambda args, kwargs: ((), {})),  # fit(model, y=y)
        ("factor_and_calibration", lambda args, kwargs: ((), kwargs)),  # fit(model, y)
    ],
)
def test_a_saved_map_loads_back_with_the_models_arguments(name, without_data, dtype, tmp_path):
    """``load_map_result(path, model, *args)``: the model's arguments as ``fit`` took them,
    with or without the data (the saved observations go where the model takes them; with
    x64 off they were saved as float32 and the user's float64 data are still recognized)."""
    case = CASES[name]
    args, kwargs = _arguments(case, np.float64)
    result = _fit(case, args, kwargs, num_restarts=2)
    path = tmp_path / "map.nc"
    result.to_datatree().to_netcdf(path)
    expected = result.predict_proba(*args, **kwargs)
    for call in ((args, kwargs), without_data(args, kwargs)):
        loaded = ngm.load_map_result(path, case.model, *call[0], **call[1])
        np.testing.assert_allclose(loaded.predict_proba(*args, **kwargs), expected, rtol=1e-6)
        for site, value in result.params.items():
            np.testing.assert_allclose(loaded.params[site], value, rtol=1e-12)


def test_masked_rows_never_seed_a_component(x64):
    """Masked rows may hold anything (here 1e6): the fit equals the fit with zeros there."""
    y = _two_groups()
    junk, zeros = y.copy(), y.copy()
    masked_rows = np.arange(N) % 3 == 0
    junk[masked_rows], zeros[masked_rows] = 1e6, 0.0
    fits = [_fit(CASES["masked"], (data,), {}, num_restarts=4) for data in (junk, zeros)]
    assert fits[0].objective == pytest.approx(fits[1].objective, rel=1e-9)
    np.testing.assert_allclose(np.sort(fits[0].params["mu"]), [-2.0, 2.5], atol=0.3)


def test_new_rows_need_all_of_a_regressions_arguments(x64):
    case = CASES["regression"]
    args, _ = _arguments(case, np.float64)
    result = _fit(case, args, {}, num_restarts=2)
    new_x, new_y = _regression(seed=1, n=7)
    assert result.predict(new_x, new_y).shape == (7,)
    with pytest.raises(TypeError, match=r"per-row arrays.*predict\(covariates_new, y_new\)"):
        result.predict(new_x)
    with pytest.raises(ValueError, match="need the values the mixture site 'y' observes"):
        result.predict(new_x, y=None)


def test_a_missing_argument_is_named_when_a_map_loads(x64, tmp_path):
    def model(y, K):
        k_first(K, data=y)

    y = _two_groups()
    result = ngm.fit(model, y, 2, num_restarts=1)
    result.to_datatree().to_netcdf(tmp_path / "map.nc")
    loaded = ngm.load_map_result(tmp_path / "map.nc", model, K=2)
    np.testing.assert_allclose(loaded.params["mu"], result.params["mu"])
    with pytest.raises(TypeError, match="K"):
        ngm.load_map_result(tmp_path / "map.nc", model)
