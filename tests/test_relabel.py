"""Tests of Hungarian relabelling: component axes, a known permutation, per-draw relabelling."""

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr

import numpyro_gmm as ngm
from numpyro_gmm.fit_result import FitResult, Restarts
from numpyro_gmm.map_result import MAPResult
from numpyro_gmm.numpyro_bridge import read_model
from numpyro_gmm.relabelling import component_axes, match_components, permute_components

K = 3
MEANS = np.array([[-6.0, 0.0, 1.0], [0.0, 5.0, -1.0], [7.0, -3.0, 0.0]])


def _data(n_features, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(K), 20)
    return MEANS[labels, :n_features] + rng.normal(size=(labels.size, n_features))


def _site_values(covariance_type, n_features, rng):
    """Distinct, valid values of the builder model's sites."""
    d = n_features
    values = {
        "weights": np.array([0.2, 0.3, 0.5]),
        "locs": MEANS[:, :d] + 0.1 * rng.normal(size=(K, d)),
    }
    if covariance_type == "full":
        a = rng.normal(size=(K, d, d))
        values["covariances"] = a @ np.swapaxes(a, 1, 2) + np.eye(d)
    elif covariance_type == "tied":
        a = rng.normal(size=(d, d))
        values["covariance"] = a @ a.T + np.eye(d)
    elif covariance_type == "diag":
        values["variances"] = rng.uniform(0.5, 2.0, size=(K, d))
    else:
        values["variances"] = np.array([0.5, 1.0, 2.0])
    return {name: value.astype(np.float32) for name, value in values.items()}


def _result(model, x, params):
    """A MAPResult at given parameters (no fit needed to test relabelling)."""
    mixture = read_model(model, x)
    fit = FitResult(params, 0.0, 0, Restarts.single(0.0, 1, True), np.zeros((1, 1)))
    return MAPResult.from_fit(mixture, params, fit)


@pytest.mark.parametrize(
    ("covariance_type", "n_features", "expected"),
    [
        ("full", 2, {"weights": 0, "covariances": 0, "locs": 0}),
        ("tied", 3, {"weights": 0, "covariance": None, "locs": 0}),  # D == K: not a component
        ("diag", 2, {"weights": 0, "variances": 0, "locs": 0}),
        ("spherical", 1, {"weights": 0, "variances": 0, "locs": 0}),
    ],
)
def test_known_permutation_is_recovered(covariance_type, n_features, expected):
    rng = np.random.default_rng(1)
    x = _data(n_features)
    model = ngm.models.gaussian_mixture(K, covariance_type)
    params = _site_values(covariance_type, n_features, rng)
    result = _result(model, x, params)
    assert component_axes(result) == expected
    permutation = np.array([2, 0, 1])
    shuffled = permute_components(params, permutation, expected)
    found = match_components(shuffled, result)
    # Component found[j] of the shuffled fit is the reference's component j.
    np.testing.assert_array_equal(permutation[found], np.arange(K))
    restored = ngm.relabel(shuffled, result)
    for name, value in params.items():
        np.testing.assert_array_equal(restored[name], value)


def test_user_model_with_its_own_site_names():
    def model(x):
        w = numpyro.sample("w", dist.Dirichlet(jnp.ones(K)))
        with numpyro.plate("components", K):
            loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
            scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", len(x)):
            numpyro.sample(
                "obs", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(loc, scale)), obs=x
            )

    x = _data(1)[:, 0]
    params = {
        "w": np.array([0.2, 0.3, 0.5], np.float32),
        "loc": np.array([-6.0, 0.0, 7.0], np.float32),
        "scale": np.array([1.0, 0.5, 2.0], np.float32),
    }
    result = _result(model, x, params)
    assert component_axes(result) == {"w": 0, "loc": 0, "scale": 0}
    shuffled = {name: value[[1, 2, 0]] for name, value in params.items()}
    restored = ngm.relabel(shuffled, result, match_on=["loc"])
    for name, value in params.items():
        np.testing.assert_array_equal(restored[name], value)


def test_wrong_component_axes_are_rejected():
    x = _data(2)
    params = _site_values("diag", 2, np.random.default_rng(0))
    result = _result(ngm.models.gaussian_mixture(K, "diag"), x, params)
    with pytest.raises(ValueError, match="component_axes"):
        component_axes(result, axes={"variances": None})
    with pytest.raises(ValueError, match="not latent sites"):
        component_axes(result, axes={"nope": 0})
    with pytest.raises(ValueError, match="component_axes"):
        ngm.relabel(params, dict(params))  # a dict reference needs the axes


def _switched_chains(params, axes, rng, n_chains=4, n_draws=200):
    """Draws around ``params``; every chain has its own labelling, some draws switch too."""
    draws = {name: [] for name in params}
    for chain in range(n_chains):
        chain_perm = rng.permutation(K) if chain else np.arange(K)
        for draw in range(n_draws):
            perm = rng.permutation(K) if draw % 50 == 49 else chain_perm
            noisy = {
                name: value + 0.02 * (1 + np.abs(value)) * rng.normal(size=value.shape)
                for name, value in params.items()
            }
            noisy["weights"] = noisy["weights"] / noisy["weights"].sum()
            for name, value in permute_components(noisy, perm, axes).items():
                draws[name].append(value)
    return {
        name: np.stack(values).reshape(n_chains, n_draws, *params[name].shape)
        for name, values in draws.items()
    }


def _tree(draws):
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {
                    "weights": (("chain", "draw", "weights_dim_0"), draws["weights"]),
                    "locs": (("chain", "draw", "components", "locs_dim_1"), draws["locs"]),
                    "variances": (("chain", "draw", "components"), draws["variances"]),
                }
            )
        }
    )


def test_relabel_draws_fixes_label_switching_and_r_hat():
    rng = np.random.default_rng(2)
    x = _data(2)
    params = _site_values("spherical", 2, rng)
    params["locs"] = MEANS[:, :2].astype(np.float32)
    result = _result(ngm.models.gaussian_mixture(K, "spherical"), x, params)
    axes = component_axes(result)
    draws = _switched_chains(params, axes, rng)

    tree = _tree(draws)
    raw_rhat = az.rhat(tree)
    assert float(raw_rhat["locs"].max()) > 1.5

    relabelled, permutations = ngm.relabel_draws(tree, result, return_permutations=True)
    assert permutations.shape == (4, 200, K)
    assert relabelled["posterior"].attrs["relabelled"] == 1
    assert relabelled["posterior"]["locs"].dims == ("chain", "draw", "components", "locs_dim_1")
    rhat = az.rhat(relabelled)
    for name in ("weights", "locs", "variances"):
        assert float(rhat[name].max()) < 1.05, name
    mean_locs = relabelled["posterior"]["locs"].mean(("chain", "draw")).values
    np.testing.assert_allclose(mean_locs, params["locs"], atol=0.1)

    # The dict path (get_samples(group_by_chain=True) layout) gives the same draws.
    as_dict = ngm.relabel_draws(draws, result)
    np.testing.assert_array_equal(as_dict["locs"], relabelled["posterior"]["locs"].values)
    # ... and a flat (draw,) layout too.
    flat = {name: value.reshape(-1, *value.shape[2:]) for name, value in draws.items()}
    flat_relabelled = ngm.relabel_draws(flat, result)
    np.testing.assert_array_equal(
        flat_relabelled["locs"], as_dict["locs"].reshape(-1, *params["locs"].shape)
    )


def test_near_equal_weights_do_not_decide_the_labels():
    """Draws that never switch labels stay as they are when the reference's weights are
    nearly equal (their spread across components is ~0, so they must not dominate)."""
    rng = np.random.default_rng(0)
    reference = {"w": np.array([0.501, 0.499]), "rate": np.array([2.0, 12.0])}
    weights = 0.5 + 0.04 * rng.standard_normal(400)
    draws = {
        "w": np.stack([weights, 1.0 - weights], axis=-1),
        "rate": np.array([2.0, 12.0]) + rng.normal(scale=[0.15, 0.5], size=(400, 2)),
    }
    relabelled, permutations = ngm.relabel_draws(
        draws, reference, component_axes={"w": 0, "rate": 0}, return_permutations=True
    )
    np.testing.assert_array_equal(permutations, np.broadcast_to([0, 1], (400, 2)))
    np.testing.assert_array_equal(relabelled["rate"], draws["rate"])
