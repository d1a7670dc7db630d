"""One pipeline under every entry point.

Every method through every entry point (the facade, ``ngm.fit`` on the builder model, the
command line, streaming, 8 simulated devices) on the same data and initial values gives the
same parameters, objective and chosen restart; the command line's netCDF and ``to_datatree()``
have the same groups and variables; a failed restart is never reported as the chosen one.

The table runs once per module on the 8 simulated CPU devices that ``conftest.py`` asks for,
in float64.
"""

import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import numpyro_gmm as ngm
from numpyro_gmm.fit_result import FitResult, Restarts, choose_restart
from numpyro_gmm.pipeline import METHODS

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import json, os, sys, tempfile, warnings
import jax
import jax
import numpy as np
import xarray as xr
from helpers import make_mixture_data
import numpyro_gmm as ngm
from numpyro_gmm.cli import main as cli_main
from numpyro_gmm.fitting import InitialValues
from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances
from numpyro_gmm.numpyro_bridge import read_model
from numpyro_gmm.numpyro_bridge.conjugate import match_conjugate

warnings.simplefilter("ignore")
assert len(jax.devices()) == 8, jax.devices()
K, R, SEED = 3, 3, 4
x, _, _ = make_mixture_data(np.random.default_rng(0), n_samples=301, n_features=2,
                            n_components=K, separation=5.0)
SETTINGS = {"em": dict(max_iter=500, tol=1e-10),
            "biglearn_em": dict(max_iter=20, tol=1e-10),
            "gradient_em": dict(max_iter=60, tol=1e-10),
            "split_merge_em": dict(max_iter=500, tol=1e-10)}
model = ngm.models.gaussian_mixture(K, "full")
prior = match_conjugate(read_model(model, x)).prior
rows = []

def row(method, entry, group, weights, means, covariances, objective, best, tree=None,
        restarts=()):
    order = np.lexsort(np.asarray(means).T[::-1])
    rows.append({"method": method, "entry": entry, "group": group,
                 "weights": np.asarray(weights)[order].tolist(),
                 "means": np.asarray(means)[order].tolist(),
                 "covariances": np.asarray(covariances)[order].tolist(),
                 "objective": float(objective), "best": int(best),
                 "restart_objectives": [float(v) for v in restarts],
                 "tree": None if tree is None else
                     {name: sorted(tree[name].data_vars) for name in tree.children}})

def facade(method, group, devices=None, **extra):
    gm = ngm.GaussianMixture(K, method=method, n_init=R, init_params="k-means++",
                             random_state=SEED, devices=devices,
                             prior=prior if group == "map" else None,
                             **SETTINGS[method], **extra).fit(x)
    tree = gm.to_datatree(x)
    row(method, "facade" if devices is None else "devices=8", group, gm.weights_, gm.means_,
        gm.covariances_, gm.objective_, gm.fit_result_.best_restart, tree,
        gm.restart_objectives_)
    return gm

for method in SETTINGS:
    for group in ("ml", "map"):
        facade(method, group)
        facade(method, group, devices=8)
    result = ngm.fit(model, x, method=method, num_restarts=R, rng_key=SEED,
                     init_params="k-means++", **SETTINGS[method])
    row(method, "ngm.fit", "map", result.params["weights"], result.params["locs"],
        result.params["covariances"], result.objective, result.best_restart,
        result.to_datatree(), result.fit.restarts.objective)
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "x.csv")
        np.savetxt(csv, x, delimiter=",", header="a,b", comments="")
        out = os.path.join(tmp, "fit.nc")
        code = cli_main(["fit", csv, "--components", str(K), "--method", method,
                         "--n-init", str(R), "--init-params", "k-means++",
                         "--random-state", str(SEED), "--max-iter",
                         str(SETTINGS[method]["max_iter"]), "--tol",
                         str(SETTINGS[method]["tol"]), "--out", out, "--no-plot", "--quiet",
                         "--x64"])
        assert code == 0
        tree = xr.open_datatree(out)
        post = tree["posterior"]
        row(method, "cli", "ml", post["weights"].values[0, 0], post["locs"].values[0, 0],
            post["covariances"].values[0, 0], float(tree["sample_stats"]["lp"].values[0, 0]),
            tree.attrs["best_restart"], tree, tree["restarts"]["objective"].values)

# Streaming (exact out-of-core EM) runs method="em" from given initial values: the other
# entry points get the same values.
start = ngm.GaussianMixture(K, init_params="k-means++", max_iter=0, random_state=SEED).fit(x)
initial = InitialValues(start.weights_, start.means_, start.precisions_cholesky_)
for group in ("ml", "map"):
    p = prior if group == "map" else None
    gm = ngm.GaussianMixture(K, weights_init=start.weights_, means_init=start.means_,
                             precisions_init=start.precisions_, prior=p,
                             **SETTINGS["em"]).fit(x)
    row("em", "facade (given start)", group, gm.weights_, gm.means_, gm.covariances_,
        gm.objective_, gm.fit_result_.best_restart)
    fit = ngm.fit_streaming(x, K, method="exact", initial=initial, prior=p, block_size=64,
                            max_passes=SETTINGS["em"]["max_iter"], tol=SETTINGS["em"]["tol"])
    row("em", "streaming (given start)", group, fit.params.weights, fit.params.means,
        fit.covariances, fit.objective, fit.best_restart)
try:
    ngm.fit_streaming(x, K, method="exact", initial=initial, block_size=64,
                      max_passes=5).replace
    refused = False
    from numpyro_gmm.pipeline import fit_mixture
    from numpyro_gmm.streaming import Stream
    fit_mixture(Stream(x, method="exact"), K, method="biglearn_em")
except ValueError as error:
    refused = "method='em'" in str(error)
result = {"rows": rows, "streaming_refuses_other_methods": refused}
"""


@pytest.fixture(scope="module")
def table():
    namespace: dict = {}
    with jax.enable_x64(True), warnings.catch_warnings():
        exec(compile(_SCRIPT, "<entry point table>", "exec"), namespace)
    return json.loads(json.dumps(namespace["result"]))


def _groups(rows):
    groups = {}
    for row in rows:
        key = (row["method"], row["group"], "given start" in row["entry"])
        groups.setdefault(key, []).append(row)
    return groups


def test_every_entry_point_gives_the_same_fit(table):
    groups = _groups(table["rows"])
    entries = {key: sorted(r["entry"] for r in rows) for key, rows in groups.items()}
    for method in METHODS:
        assert entries[(method, "ml", False)] == ["cli", "devices=8", "facade"]
        assert entries[(method, "map", False)] == ["devices=8", "facade", "ngm.fit"]
    assert entries[("em", "ml", True)] == ["facade (given start)", "streaming (given start)"]
    assert entries[("em", "map", True)] == ["facade (given start)", "streaming (given start)"]
    for key, rows in groups.items():
        reference = rows[0]
        for other in rows[1:]:
            where = f"{key}: {reference['entry']} vs {other['entry']}"
            # The facade ranks restarts as scikit-learn does (lower bound entering the last
            # iteration), the others by the final log joint: they agree up to ties, restarts
            # that reached the same optimum (the parameters are compared below).
            # Restarts that tie stop at points of the same optimum within tol (1e-10 per
            # point), which on a flat optimum differ by ~1e-6 in the parameters.
            rtol = 1e-6
            if other["best"] != reference["best"]:
                objectives = other["restart_objectives"]
                assert objectives[other["best"]] == pytest.approx(
                    objectives[reference["best"]], rel=1e-9
                ), where
                rtol = 1e-4
            for name in ("weights", "means", "covariances"):
                np.testing.assert_allclose(
                    other[name], reference[name], rtol=rtol, atol=1e-8, err_msg=where
                )
            # Streaming reports the log joint entering its last pass (tol=1e-10 per point).
            assert other["objective"] == pytest.approx(reference["objective"], rel=1e-8), where


def test_cli_and_to_datatree_write_the_same_layout(table):
    trees = {(r["method"], r["entry"], r["group"]): r["tree"] for r in table["rows"] if r["tree"]}
    for method in METHODS:
        cli = trees[(method, "cli", "ml")]
        assert cli == trees[(method, "facade", "ml")]
        assert cli == trees[(method, "ngm.fit", "map")]
        assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "restarts"} <= set(
            cli
        )
        assert cli["posterior"] == ["covariances", "locs", "weights"]
        assert cli["restarts"] == ["converged", "failed", "n_iter", "objective"]


def test_streaming_refuses_other_methods(table):
    assert table["streaming_refuses_other_methods"]


# --------------------------------------------------------------------------- chosen restart


def _collapsing_data():
    """Five identical rows: restarts that put a component on them collapse and fail, after
    reaching a higher log-likelihood than any restart that did not fail."""
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = np.concatenate(
            [
                rng.normal(size=(100, 2)),
                rng.normal(size=(100, 2)) + 6,
                np.repeat([[3.0, -4.0]], 5, axis=0),
            ]
        )
    return x


def test_a_failed_restart_with_the_highest_objective_is_never_reported(x64):
    x = _collapsing_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = ngm.GaussianMixture(
            3,
            reg_covar=1e-300,
            n_init=12,
            init_params="random_from_data",
            random_state=0,
            max_iter=200,
            tol=1e-8,
        ).fit(x)
    fit = gm.fit_result_
    restarts = fit.restarts
    # The case this test is about: the highest raw objective belongs to a failed restart.
    assert restarts.failed[int(np.argmax(restarts.objective))]
    best = fit.best_restart
    assert not restarts.failed[best]
    assert restarts.objective[best] == np.max(restarts.objective[~restarts.failed])
    # Every field of every result describes that restart.
    assert gm.objective_ == fit.objective == restarts.objective[best]
    assert gm.converged_ == restarts.converged[best]
    assert gm.n_iter_ == restarts.n_iter[best]
    np.testing.assert_array_equal(gm.lower_bounds_, fit.best_trace())
    trace = fit.trace[best]
    np.testing.assert_array_equal(fit.best_trace(), trace[np.isfinite(trace)])
    log_likelihood = np.sum(gm.score_samples(x))
    assert log_likelihood == pytest.approx(fit.objective, rel=1e-10)
    tree = gm.to_datatree(x)
    assert tree.attrs["best_restart"] == best
    assert tree.attrs["converged"] == int(restarts.converged[best])
    assert tree.attrs["n_iter"] == restarts.n_iter[best]
    assert float(tree["sample_stats"]["lp"].values[0, 0]) == fit.objective
    assert bool(tree["sample_stats"]["converged"].values[0, 0]) == restarts.converged[best]
    np.testing.assert_array_equal(tree["restarts"]["failed"].values, restarts.failed)
    # A MAPResult carrying this fit reports it too (it reads the stored choice).
    model = ngm.models.gaussian_mixture(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ngm.fit(model, x, num_restarts=2, max_iter=5)
    result.fit = fit
    assert result.best_restart == best and result.converged == bool(restarts.converged[best])
    assert result.to_datatree().attrs["best_restart"] == best


def test_choose_restart_skips_failed_and_non_finite():
    restarts = Restarts(
        objective=np.array([10.0, 5.0, np.nan, 7.0]),
        n_iter=np.ones(4, int),
        converged=np.ones(4, bool),
        failed=np.array([True, False, False, False]),
    )
    assert choose_restart(restarts) == 3
    with pytest.raises(ngm.FitFailedError, match="increase reg_covar"):
        choose_restart(restarts._replace(failed=np.ones(4, bool)))
    assert isinstance(FitResult, type)
