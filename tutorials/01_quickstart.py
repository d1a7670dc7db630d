# %% [markdown]
# # Quickstart: fit, inspect, plot, save
#
# A NumPyro mixture model, its MAP by EM in one call, and the result as an ArviZ
# `xarray.DataTree` that goes to netCDF. Data: the Old Faithful geyser (272 eruptions,
# duration and waiting time, in minutes), bundled with the package.
#
# `NUMPYRO_GMM_TUTORIAL_SMOKE=1` runs a small version; `NUMPYRO_GMM_TUTORIAL_FIGURES=DIR`
# writes the figures to `DIR`.

# %%
import os
import tempfile
from pathlib import Path

import arviz as az
import matplotlib
import numpy as np
import xarray as xr

import numpyro_gmm as ngm
from numpyro_gmm.atomic import write_datatree_atomic
from numpyro_gmm.datasets import load_example
from numpyro_gmm.plotting import plot_mixture

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMOKE = os.environ.get("NUMPYRO_GMM_TUTORIAL_SMOKE") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NUMPYRO_GMM_TUTORIAL_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)

x, columns = load_example("faithful")
print(x.shape, columns)

# %% [markdown]
# ## The model and the fit
#
# `ngm.models.gaussian_mixture` builds a real NumPyro model (it runs unchanged under NUTS,
# SVI or `Predictive`) with conjugate, weakly informative priors, so EM uses closed-form
# MAP steps. `ngm.fit` runs 8 restarts as one vectorized, jitted program and keeps the
# best.

# %%
model = ngm.models.gaussian_mixture(n_components=2, covariance_type="full")
result = ngm.fit(model, x, method="em", num_restarts=8, rng_key=0)
print(result)

# %% [markdown]
# ## Inspect
#
# `result.params` holds the MAP of every latent site of the model, by site name and in the
# constrained space; `result.objective` is NumPyro's log joint there (no Jacobian);
# `result.restarts` records where every restart ended.

# %%
for name, value in result.params.items():
    print(f"{name}:\n{np.round(value, 3)}")
print("log joint at the MAP:", round(result.objective, 3))
print("restart objectives:", np.round(result.restarts["objective"], 2))
print("iterations:", result.restarts["n_iter"], "converged:", result.restarts["converged"])
labels = result.predict(x)
print("cluster sizes:", np.bincount(labels))
print("mean log-likelihood per eruption:", round(float(result.score_samples(x).mean()), 4))

# %% [markdown]
# ## Plot

# %%
p = result.params
fig = plot_mixture(x, p["weights"], p["locs"], p["covariances"], "full", feature_names=columns)
fig.savefig(FIGURES / "01_faithful_fit.png", dpi=100)

# %% [markdown]
# ## The result as an ArviZ DataTree
#
# `result.to_datatree()` follows ArviZ 1.x conventions: the MAP is a `chain=1, draw=1`
# posterior, with the pointwise log-likelihood, the objective, every restart and the
# per-iteration objective trace.

# %%
dt = result.to_datatree(feature_names=columns)
print(dt)

# %% [markdown]
# A single point has no spread (`az.summary` of `dt` gives NaN sd). Draws from the Laplace
# approximation around the MAP (in NumPyro's unconstrained space) give approximate
# posterior summaries, and `ngm.loo_laplace` a PSIS-LOO estimate:

# %%
laplace = result.to_datatree(laplace_draws=200 if SMOKE else 2000, feature_names=columns)
print(az.summary(laplace, var_names=["weights", "locs"], kind="stats"))

trace = dt["em_trace"]["lower_bound"]
fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
for restart in trace["restart"].values:
    values = trace.sel(restart=restart).values
    ax.plot(np.arange(1, values.size + 1), values, lw=1, label=f"restart {restart}")
ax.set_xscale("log")
ax.set_ylim(np.nanmax(trace.values) - 2, np.nanmax(trace.values) + 0.1)
ax.set_xlabel("iteration")
ax.set_ylabel("log joint per eruption")
ax.set_title("EM objective of every restart")
ax.legend(ncol=2, fontsize="small", frameon=False)
fig.savefig(FIGURES / "01_objective_trace.png", dpi=100)
plt.close("all")

# %% [markdown]
# ## Save and load
#
# The tree round-trips through netCDF; `write_datatree_atomic` never leaves a partial file.

# %%
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "faithful_map.nc"
    write_datatree_atomic(dt, path)
    with xr.open_datatree(path) as loaded:
        xr.testing.assert_identical(loaded.load(), dt)
    print(f"saved and reloaded {path.name}: {path.stat().st_size / 1024:.0f} KiB, identical")

# %% [markdown]
# ## Next
#
# Start NUTS at the MAP with `NUTS(model, init_strategy=result.init_to_value())`, and put
# the two side by side with `ngm.compare_to_posterior(result, mcmc)` (tutorial 2).

# %%
if not SMOKE:
    print("figures written to", FIGURES.relative_to(FIGURES.parents[1]))
