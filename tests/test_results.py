"""Tests of the DataTree conversion, the pointwise log-likelihood and atomic writing."""

import os
import warnings

import numpy as np
import pytest
import xarray as xr
from scipy.stats import multivariate_normal

import numpyro_gmm as ngm
from numpyro_gmm.atomic import write_datatree_atomic
from numpyro_gmm.density import expand_covariances, pointwise_log_likelihood
from numpyro_gmm.errors import ConvergenceWarning, EmptyComponentWarning
from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances

K, D, N = 3, 2, 40

COV_DIMS = {
    "full": ("chain", "draw", "component", "feature", "feature_bis"),
    "tied": ("chain", "draw", "feature", "feature_bis"),
    "diag": ("chain", "draw", "component", "feature"),
    "spherical": ("chain", "draw", "component"),
}


def _random_params(covariance_type, k=K, d=D, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(scale=3.0, size=(k, d))
    if covariance_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + 0.5 * np.eye(d)
    elif covariance_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.3, 2.0, size=k)
    return weights, means, cov


COV_SITE = {
    "full": "covariances",
    "tied": "covariance",
    "diag": "variances",
    "spherical": "variances",
}


def _fitted(covariance_type, x, **kw):
    """A facade fit of ``x`` for 3 EM steps from the random parameters."""
    from numpyro_gmm import GaussianMixture
    from numpyro_gmm.mixture.params import precisions_from_precisions_cholesky

    weights, means, cov = _random_params(covariance_type)
    factor = precisions_cholesky_from_covariances(np.asarray(cov), covariance_type)
    precisions = np.asarray(precisions_from_precisions_cholesky(factor, covariance_type))
    return GaussianMixture(
        K,
        covariance_type=covariance_type,
        weights_init=weights,
        means_init=means,
        precisions_init=precisions,
        max_iter=3,
        tol=0.0,
        **kw,
    ).fit(x)


def _tree(covariance_type, x=None, feature_names=None, attrs=None):
    x = np.random.default_rng(3).normal(size=(N, D)) if x is None else x
    with warnings.catch_warnings():
        # Three steps from random parameters: not converged, maybe an emptied component.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", EmptyComponentWarning)
        gm = _fitted(covariance_type, x)
    return gm, gm.to_datatree(x, feature_names=feature_names, attrs=attrs)


def _scipy_loglik(x, weights, means, cov_full):
    dens = np.stack(
        [w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(weights, means, cov_full)],
        axis=1,
    )
    return np.log(dens.sum(axis=1))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_pointwise_log_likelihood_matches_scipy(covariance_type, x64):
    d = 3
    weights, means, cov = _random_params(covariance_type, d=d, seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(scale=3.0, size=(25, d))
    if covariance_type == "full":
        cov_full = cov
    elif covariance_type == "tied":
        cov_full = [cov] * K
    elif covariance_type == "diag":
        cov_full = [np.diag(c) for c in cov]
    else:
        cov_full = [c * np.eye(d) for c in cov]
    expected = _scipy_loglik(x, weights, means, cov_full)
    got = pointwise_log_likelihood(x, weights, means, cov, covariance_type)
    assert got.shape == (25,)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    # expand_covariances gives the same matrices as the scipy reference
    np.testing.assert_allclose(expand_covariances(cov, covariance_type, K, d), np.asarray(cov_full))


def test_pointwise_log_likelihood_1d_and_zero_weight(x64):
    x = np.array([-1.0, 0.0, 2.5])
    weights = np.array([1.0, 0.0])
    means = np.array([[0.0], [100.0]])
    got = pointwise_log_likelihood(x, weights, means, np.array([4.0, 1.0]), "spherical")
    expected = multivariate_normal(0.0, 4.0).logpdf(x[:, None])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_pointwise_log_likelihood_rejects_non_pd_covariance(x64):
    weights, means, cov = _random_params("full")
    cov[1] = -np.eye(D)
    with pytest.raises(ValueError, match="covariance of component 1 is not positive definite"):
        pointwise_log_likelihood(np.zeros((2, D)), weights, means, cov, "full")


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_groups_dims_and_coords(covariance_type, x64):
    x = np.random.default_rng(3).normal(size=(N, D))
    gm, dt = _tree(covariance_type, x=x, feature_names=["a", "b"])
    assert set(dt.children) == {
        "posterior",
        "sample_stats",
        "em_trace",
        "observed_data",
        "log_likelihood",
        "restarts",
        "assignments",
    }
    post = dt["posterior"]
    assert post["weights"].dims == ("chain", "draw", "component")
    assert post["locs"].dims == ("chain", "draw", "component", "feature")
    assert post[COV_SITE[covariance_type]].dims == COV_DIMS[covariance_type]
    np.testing.assert_array_equal(post[COV_SITE[covariance_type]].values[0, 0], gm.covariances_)
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1
    assert list(post["component"].values) == [0, 1, 2]
    assert list(post["feature"].values) == ["a", "b"]
    if "feature_bis" in COV_DIMS[covariance_type]:
        assert list(post["feature_bis"].values) == ["a", "b"]
    np.testing.assert_allclose(post["weights"].sum("component").values, 1.0)

    stats = dt["sample_stats"]
    for name in ("lp", "converged", "n_iter"):
        assert stats[name].dims == ("chain", "draw")
    assert stats["lp"].item() == gm.objective_
    assert stats["converged"].dtype == bool and not bool(stats["converged"].item())
    assert stats["n_iter"].item() == 3

    trace = dt["em_trace"]["lower_bound"]
    assert trace.dims == ("restart", "iteration")
    np.testing.assert_array_equal(trace.values[0], gm.lower_bounds_)
    np.testing.assert_array_equal(trace["iteration"].values, [1, 2, 3])

    obs = dt["observed_data"]["obs"]
    assert obs.dims == ("obs_id", "feature")
    np.testing.assert_array_equal(obs.values, x)
    ll = dt["log_likelihood"]["obs"]
    assert ll.dims == ("chain", "draw", "obs_id")
    np.testing.assert_allclose(
        ll.values[0, 0],
        pointwise_log_likelihood(x, gm.weights_, gm.means_, gm.covariances_, covariance_type),
    )
    assert dt["restarts"]["objective"].values[0] == gm.objective_

    assert dt.attrs["covariance_type"] == covariance_type
    assert dt.attrs["best_restart"] == 0 and dt.attrs["method"] == "em"
    assert isinstance(dt.attrs["numpyro_gmm_version"], str) and dt.attrs["numpyro_gmm_version"]
    assert dt.attrs["creation_library"] == "numpyro_gmm"
    assert "created_at" in dt.attrs


def test_default_feature_names(x64):
    _, dt = _tree("full")
    assert list(dt["posterior"]["feature"].values) == ["x0", "x1"]


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_netcdf_round_trip(tmp_path, covariance_type, x64):
    x = np.random.default_rng(4).normal(size=(N, D))
    attrs = {"source": {"n_init": 8}, "x64": True, "weights_init": None}
    _, dt = _tree(covariance_type, x=x, feature_names=["a", "b"], attrs=attrs)
    path = tmp_path / "fit.nc"
    write_datatree_atomic(dt, path)
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"], "no temporary file left behind"
    with xr.open_datatree(path) as back:
        assert set(back.children) == set(dt.children)
        for group in dt.children:
            for name, var in dt[group].data_vars.items():
                got = back[group][name]
                assert got.dims == var.dims, (group, name)
                np.testing.assert_array_equal(got.values, var.values)
        assert back["sample_stats"]["converged"].dtype == bool
        assert list(back["posterior"]["feature"].values) == ["a", "b"]
        assert back.attrs["covariance_type"] == covariance_type
        assert back.attrs["method"] == "em"
        assert back.attrs["source"] == '{"n_init": 8}'
        assert int(back.attrs["x64"]) == 1
        assert back.attrs["weights_init"] == "None"


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_saved_fit_loads_back_into_gaussian_mixture(tmp_path, covariance_type, x64):
    x = np.random.default_rng(4).normal(size=(N, D))
    gm, dt = _tree(covariance_type, x=x)
    path = tmp_path / "fit.nc"
    write_datatree_atomic(dt, path)
    back = ngm.GaussianMixture.from_datatree(path)
    assert type(back) is ngm.GaussianMixture
    # Plain constructor arguments come back; arrays (the initial values here) are not saved.
    plain = {k: v for k, v in gm.get_params().items() if not isinstance(v, np.ndarray)}
    assert {k: back.get_params()[k] for k in plain} == plain
    assert back.weights_init is None
    for name in ("weights_", "means_", "covariances_", "restart_objectives_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(gm, name))
    np.testing.assert_allclose(back.precisions_cholesky_, gm.precisions_cholesky_, rtol=1e-9)
    assert back.objective_ == gm.objective_ and back.lower_bounds_ == gm.lower_bounds_
    assert (back.converged_, back.n_iter_) == (gm.converged_, gm.n_iter_)
    assert back.n_features_in_ == D and not hasattr(back, "feature_names_in_")
    np.testing.assert_array_equal(back.predict(x), gm.predict(x))
    np.testing.assert_allclose(back.score_samples(x), gm.score_samples(x), rtol=1e-9)
    with xr.open_datatree(path) as tree:
        np.testing.assert_array_equal(tree["assignments"]["label"].values[0, 0], gm.predict(x))
    # The same through the package-level loader, from the tree itself.
    again = ngm.load_gaussian_mixture(dt)
    np.testing.assert_array_equal(again.predict_proba(x), back.predict_proba(x))


def test_write_failure_leaves_previous_file_and_no_partial_file(tmp_path, monkeypatch, x64):
    path = tmp_path / "fit.nc"
    path.write_bytes(b"previous content")
    _, dt = _tree("full")

    def broken_to_netcdf(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", broken_to_netcdf)
    with pytest.raises(OSError, match="disk full"):
        write_datatree_atomic(dt, path)
    assert path.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["fit.nc"]


def test_write_replaces_existing_file(tmp_path, x64):
    path = tmp_path / "fit.nc"
    path.write_bytes(b"old")
    write_datatree_atomic(_tree("spherical")[1], path)
    with xr.open_datatree(path) as back:
        assert back.attrs["covariance_type"] == "spherical"


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("covariances", np.ones((K, D)), "covariances for covariance_type='full'"),
        ("means", np.zeros((K + 1, D)), "means must have shape"),
        ("weights", np.ones((K, 1)), "weights must have shape"),
        ("covariance_type", "banded", "Unknown covariance_type 'banded'"),
        ("x", np.zeros((5, D + 1)), "x must have shape"),
    ],
)
def test_invalid_input_raises(field, value, match, x64):
    weights, means, cov = _random_params("full")
    kwargs = dict(
        x=np.zeros((5, D)), weights=weights, means=means, covariances=cov, covariance_type="full"
    )
    kwargs[field] = value
    with pytest.raises(ValueError, match=match):
        pointwise_log_likelihood(**kwargs)


def test_wrong_feature_names_raise(x64):
    gm, _ = _tree("full")
    with pytest.raises(ValueError, match="feature_names has 1 names"):
        gm.to_datatree(np.zeros((5, D)), feature_names=["a"])


def test_a_dataframe_fit_saves_and_loads_its_column_names(tmp_path):
    import pandas as pd

    x = pd.DataFrame(np.random.default_rng(5).normal(size=(N, 2)), columns=["height", "mass"])
    gm = ngm.GaussianMixture(2, random_state=0).fit(x)
    dt = gm.to_datatree(x)  # the frame's names are checked, not warned about (errors here)
    assert list(dt["posterior"]["feature"].values) == ["height", "mass"]
    back = ngm.load_gaussian_mixture(dt)
    assert list(back.feature_names_in_) == ["height", "mass"]
    np.testing.assert_array_equal(back.predict(x), gm.predict(x))
    with pytest.raises(ValueError, match="feature names"):
        back.predict(x[["mass", "height"]])
