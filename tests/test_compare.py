"""Tests of compare_to_posterior against a real NUTS run, and of the ArviZ calls on MAP trees."""

import arviz as az
import arviz_base as azb
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

import numpyro_gmm as ngm
from numpyro_gmm.plotting import plot_map_on_posterior

matplotlib.use("Agg")

K = 2
DIMS = {"weights": ["component"], "locs": ["component", "feature"], "variances": ["component"]}


@pytest.fixture(scope="module")
def fitted():
    """EM MAP and a short NUTS run whose two chains start in opposite labellings."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-4.0, 1.0, 30), rng.normal(4.0, 1.0, 30)]).astype(np.float32)
    model = ngm.models.gaussian_mixture(K, "spherical")
    result = ngm.fit(model, x, num_restarts=4, rng_key=0)
    unconstrained = result.mixture.unconstrain(
        {k: jnp.asarray(v) for k, v in result.params.items()}
    )
    swapped = {name: value[::-1] for name, value in result.params.items()}
    swapped_u = result.mixture.unconstrain({k: jnp.asarray(v) for k, v in swapped.items()})
    init = jax.tree.map(lambda a, b: jnp.stack([a, b]), unconstrained, swapped_u)
    mcmc = MCMC(
        NUTS(model),
        num_warmup=150,
        num_samples=150,
        num_chains=2,
        chain_method="sequential",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(1), x, init_params=init)
    return result, mcmc


def test_compare_to_posterior_from_mcmc(fitted):
    result, mcmc = fitted
    raw = azb.from_numpyro(mcmc, dims=DIMS, pred_dims={})
    assert float(az.rhat(raw)["locs"].max()) > 1.5  # the chains sit in swapped labellings

    comparison = ngm.compare_to_posterior(result, mcmc)
    table = comparison.table
    assert list(table.columns) == [
        "parameter",
        "variable",
        "map",
        "mean",
        "sd",
        "lower",
        "upper",
        "inside",
        "r_hat",
        "ess_bulk",
    ]
    assert table["parameter"].tolist()[:4] == [
        "weights[0]",
        "weights[1]",
        "locs[0, x0]",
        "locs[1, x0]",
    ]
    assert table.attrs == {"ci_kind": "hdi", "ci_prob": 0.89}
    assert comparison.all_inside and comparison.outside.empty
    assert table["r_hat"].max() < 1.1
    assert np.all(np.isfinite(table[["map", "mean", "sd", "lower", "upper"]].to_numpy(float)))
    assert len(comparison.figure.axes) == 1

    # A DataTree (from arviz) gives the same table; ETI is available too.
    from_tree = ngm.compare_to_posterior(result, raw, plot=False)
    np.testing.assert_allclose(from_tree.table["mean"], table["mean"])
    assert from_tree.figure is None
    eti = ngm.compare_to_posterior(result, mcmc, ci_kind="eti", ci_prob=0.5, plot=False)
    assert eti.table.attrs == {"ci_kind": "eti", "ci_prob": 0.5}
    assert (eti.table["upper"] - eti.table["lower"] < table["upper"] - table["lower"]).all()


def test_map_overlay_on_posterior_plot(fitted, tmp_path):
    result, mcmc = fitted
    comparison = ngm.compare_to_posterior(result, mcmc, plot=False)
    pc = plot_map_on_posterior(comparison.posterior, result, var_names=["locs"])
    pc.savefig(tmp_path / "dist.png")
    assert (tmp_path / "dist.png").stat().st_size > 0


def test_compare_rejects_bad_input(fitted):
    result, _ = fitted
    with pytest.raises(TypeError, match="MCMC"):
        ngm.compare_to_posterior(result, {"locs": np.zeros((1, 2, 2, 1))})
    with pytest.raises(ValueError, match="ci_kind"):
        ngm.compare_to_posterior(result, fitted[1], ci_kind="box")


@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_loo_and_compare_with_laplace_draws(fitted):
    result, mcmc = fitted
    laplace = result.to_datatree(laplace_draws=200, rng_key=0)
    summary = az.summary(laplace)
    assert np.all(np.isfinite(summary[["mean", "sd"]].to_numpy(float)))
    loo_map = ngm.loo_laplace(laplace)
    nuts = azb.from_numpyro(mcmc, log_likelihood=True, dims=DIMS, pred_dims={})
    loo_nuts = az.loo(nuts)
    assert np.isfinite(loo_map.elpd) and np.isfinite(loo_nuts.elpd)
    # Same model, same data: the two estimates of elpd agree within their standard errors.
    assert abs(loo_map.elpd - loo_nuts.elpd) < 2 * loo_nuts.se
    table = az.compare({"EM + Laplace": loo_map, "NUTS": loo_nuts}, round_to="none")
    assert np.all(np.isfinite(table["elpd"].to_numpy(float)))


def test_the_map_tree_lines_up_with_az_from_numpyro(fitted):
    """Without feature names, the MAP's tree has the dims and coords az.from_numpyro gives
    the same model's NUTS run (plate names, then {site}_dim_{i})."""
    result, mcmc = fitted
    ours = result.to_datatree()
    theirs = azb.from_numpyro(mcmc)
    for group in ("posterior", "observed_data"):
        assert set(ours[group].data_vars) == set(theirs[group].data_vars), group
        for name, variable in theirs[group].data_vars.items():
            assert ours[group][name].dims == variable.dims, (group, name)
            for dim in variable.dims:
                if dim not in ("chain", "draw"):
                    np.testing.assert_array_equal(
                        ours[group][dim].values, theirs[group][dim].values
                    )
    # Aligned, the MAP subtracts from the draws dimension by dimension.
    difference = theirs["posterior"]["locs"] - ours["posterior"]["locs"].isel(chain=0, draw=0)
    assert difference.dims == theirs["posterior"]["locs"].dims
