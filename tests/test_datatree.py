"""Tests of ``MAPResult.to_datatree``: schema, netCDF round trip, Laplace draws, ArviZ calls."""

import functools
import json

import arviz as az
import numpy as np
import pytest
import xarray as xr

import numpyro_gmm as ngm
from numpyro_gmm.datatree import OBJECTIVE_CONVENTION
from numpyro_gmm.fit_result import FitResult, Restarts
from numpyro_gmm.laplace import LaplaceWarning, laplace_approximation
from numpyro_gmm.map_result import MAPResult
from numpyro_gmm.numpyro_bridge import read_model

K, D, N = 2, 2, 60
MEANS = np.array([[-4.0, 0.0], [4.0, 1.0]])


def _data(n_features=D):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(K), N // K)
    return (MEANS[labels, :n_features] + rng.normal(size=(N, n_features))).astype(np.float32)


@functools.cache
def _model(covariance_type):
    # One model function per covariance type, so compiled programs are reused across tests.
    return ngm.models.gaussian_mixture(K, covariance_type)


def _result(covariance_type, x):
    """A MAPResult at the generating parameters, with 3 made-up restarts."""
    model = _model(covariance_type)
    d = x.shape[1] if x.ndim == 2 else 1
    params = {"weights": np.array([0.5, 0.5]), "locs": MEANS[:, :d]}
    params.update(
        {
            "full": {"covariances": np.stack([np.eye(d), 2 * np.eye(d)])},
            "tied": {"covariance": np.eye(d)},
            "diag": {"variances": np.ones((K, d))},
            "spherical": {"variances": np.ones(K)},
        }[covariance_type]
    )
    params = {name: value.astype(np.float32) for name, value in params.items()}
    trace = np.full((3, 5), np.nan)
    trace[:, :2] = [[-3.0, -2.5], [-3.1, -2.9], [-2.8, -2.6]]
    fit = FitResult(
        params=params,
        objective=-190.0,
        best_restart=2,
        restarts=Restarts(
            objective=np.array([-200.0, -210.0, -190.0]),
            n_iter=np.array([2, 2, 2]),
            converged=np.array([True, False, True]),
            failed=np.zeros(3, bool),
        ),
        trace=trace,
        method="em",
        options={"tol": 1e-6, "init_params": "k-means++", "m_step": "closed_form"},
    )
    return MAPResult.from_fit(read_model(model, x), params, fit)


SITE_DIMS = {
    "full": {
        "weights": ("component",),
        "locs": ("component", "feature"),
        "covariances": ("component", "feature", "feature_bis"),
    },
    "tied": {
        "weights": ("component",),
        "locs": ("component", "feature"),
        "covariance": ("feature", "feature_bis"),
    },
    "diag": {
        "weights": ("component",),
        "locs": ("component", "feature"),
        "variances": ("component", "feature"),
    },
    "spherical": {
        "weights": ("component",),
        "locs": ("component", "feature"),
        "variances": ("component",),
    },
}


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_groups_dims_and_coords(covariance_type):
    x = _data()
    result = _result(covariance_type, x)
    dt = result.to_datatree(feature_names=["a", "b"])
    assert set(dt.children) == {
        "posterior",
        "log_likelihood",
        "sample_stats",
        "observed_data",
        "restarts",
        "em_trace",
        "assignments",
    }
    posterior = dt["posterior"]
    for name, dims in SITE_DIMS[covariance_type].items():
        assert posterior[name].dims == ("chain", "draw", *dims)
        np.testing.assert_array_equal(posterior[name].values[0, 0], result.params[name])
    assert posterior.sizes["chain"] == 1 and posterior.sizes["draw"] == 1
    np.testing.assert_array_equal(posterior["component"].values, np.arange(K))
    assert list(posterior["feature"].values) == ["a", "b"]

    ll = dt["log_likelihood"]["obs"]
    assert ll.dims == ("chain", "draw", "obs_id")
    np.testing.assert_allclose(ll.values[0, 0], result.score_samples(x), rtol=1e-6)
    stats = dt["sample_stats"]
    assert stats["lp"].item() == pytest.approx(result.objective)
    assert stats["converged"].item() and stats["n_iter"].item() == 2
    assert dt["observed_data"]["obs"].dims == ("obs_id", "feature")
    assert dt["restarts"]["objective"].dims == ("restart",)
    assert dt["restarts"].sizes["restart"] == 3
    assert dt["em_trace"]["lower_bound"].dims == ("restart", "iteration")
    # Sized for max_iter = 5 in the fit, the trace is kept up to the longest restart (2).
    assert dt["em_trace"].sizes["iteration"] == 2

    attrs = dt.attrs
    assert attrs["method"] == "em"
    assert json.loads(attrs["options"])["init_params"] == "k-means++"
    assert attrs["objective_convention"] == OBJECTIVE_CONVENTION
    assert attrs["best_restart"] == 2
    assert attrs["numpyro_gmm_version"] == ngm.__version__
    assert attrs["mixture_site"] == "obs"


def test_one_dimensional_data_and_dims_override():
    x = _data(1)[:, 0]
    result = _result("spherical", x)
    dt = result.to_datatree(dims={"locs": ["component", "axis"]})
    assert dt["posterior"]["locs"].dims == ("chain", "draw", "component", "axis")
    assert dt["observed_data"]["obs"].dims == ("obs_id",)
    with pytest.raises(ValueError, match="dims"):
        result.to_datatree(dims={"locs": ["component"]})
    with pytest.raises(ValueError, match="feature_names"):
        result.to_datatree(feature_names=["a", "b"])


def test_netcdf_round_trip(tmp_path):
    result = _result("full", _data())
    for name, dt in {
        "map": result.to_datatree(),
        "laplace": result.to_datatree(laplace_draws=300, rng_key=1),
    }.items():
        path = tmp_path / f"{name}.nc"
        dt.to_netcdf(path)
        with xr.open_datatree(path) as back:
            xr.testing.assert_identical(back.load(), dt)


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_laplace_draws_feed_arviz():
    x = _data()
    result = _result("full", x)
    dt = result.to_datatree(laplace_draws=300, rng_key=0)
    assert dt["posterior"].sizes["draw"] == 300
    assert dt["log_likelihood"]["obs"].shape == (1, 300, N)
    assert set(dt["sample_stats"].data_vars) == {"lp", "log_p", "log_q"}
    assert "map" in dt.children
    np.testing.assert_array_equal(dt["map"]["locs"].values[0, 0], result.params["locs"])
    assert dt.attrs["laplace_draws"] == 300
    for name in ("lp", "log_p", "log_q"):
        assert np.all(np.isfinite(dt["sample_stats"][name].values))
    # The draws spread around the MAP (well-identified means: sd ~ 1 / sqrt(N / K)).
    locs = dt["posterior"]["locs"].values[0]
    np.testing.assert_allclose(locs.mean(0), MEANS, atol=0.3)
    assert 0.05 < locs.std(0).mean() < 0.5

    summary = az.summary(dt, var_names=["weights", "locs"])
    assert np.all(np.isfinite(summary[["mean", "sd", "eti89_lb", "eti89_ub"]].to_numpy(float)))
    loo = ngm.loo_laplace(dt, pointwise=True)
    assert np.isfinite(loo.elpd) and np.isfinite(loo.se)
    assert loo.n_data_points == N


def test_laplace_clips_a_non_positive_definite_hessian():
    # Far from the MAP in a direction where the density is convex, -H has negative
    # eigenvalues; centered there ("map"), the spectrum is clipped with a warning.
    x = _data()
    result = _result("spherical", x)
    result.params["locs"] = np.array([[0.0, 0.5], [0.01, 0.5]], np.float32)
    with pytest.warns(LaplaceWarning, match="eigenvalues"):
        approximation = laplace_approximation(result, center="map")
    assert approximation.n_clipped > 0
    assert np.all(approximation.eigenvalues > 0)


@pytest.mark.parametrize("covariance_type", ["full", "spherical"])
def test_saved_fit_loads_back_into_map_result(tmp_path, covariance_type):
    x = _data()
    result = _result(covariance_type, x)
    path = tmp_path / "map.nc"
    result.to_datatree(feature_names=["a", "b"]).to_netcdf(path)
    back = ngm.load_map_result(path, _model(covariance_type))
    assert isinstance(back, MAPResult)
    assert set(back.params) == set(result.params)
    for name, value in result.params.items():
        np.testing.assert_array_equal(back.params[name], value)
        assert back.params[name].dtype == value.dtype
    assert back.objective == result.objective
    assert back.method == "em" and back.options == result.options
    assert back.best_restart == 2 and back.converged
    for name, value in result.restarts.items():
        np.testing.assert_array_equal(back.restarts[name], value)
    # The saved trace stops at the last iteration any restart ran (the rest was NaN).
    reached = back.trace.shape[1]
    np.testing.assert_array_equal(back.trace, result.trace[:, :reached])
    assert np.isnan(result.trace[:, reached:]).all() and np.isfinite(back.trace[:, -1]).any()
    np.testing.assert_array_equal(back.predict(x), result.predict(x))
    np.testing.assert_allclose(back.score_samples(x), result.score_samples(x), rtol=1e-6)
    with xr.open_datatree(path) as tree:
        assignments = tree["assignments"]
        np.testing.assert_array_equal(assignments["label"].values[0, 0], result.predict(x))
        np.testing.assert_allclose(
            assignments["responsibilities"].values[0, 0], result.predict_proba(x), rtol=1e-6
        )
    other = "spherical" if covariance_type == "full" else "full"
    with pytest.raises(ValueError, match="give the model the fit was made with"):
        ngm.load_map_result(path, _model(other))
    with pytest.raises(ValueError, match="load_map_result"):
        ngm.load_gaussian_mixture(path)


def test_loading_something_that_is_not_a_saved_fit(tmp_path):
    with pytest.raises(FileNotFoundError):
        ngm.load_gaussian_mixture(tmp_path / "absent.nc")
    xr.DataTree.from_dict({"/": xr.Dataset({"a": ("x", [1.0])})}).to_netcdf(tmp_path / "t.nc")
    with pytest.raises(ValueError, match="not a saved fit"):
        ngm.load_gaussian_mixture(tmp_path / "t.nc")
    (tmp_path / "junk.nc").write_bytes(b"not netcdf")
    with pytest.raises(ValueError, match="cannot be read as a saved fit"):
        ngm.load_gaussian_mixture(tmp_path / "junk.nc")
