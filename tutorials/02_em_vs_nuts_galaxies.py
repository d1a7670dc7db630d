# %% [markdown]
# # EM versus NUTS on the galaxies data
#
# The velocities of 82 galaxies (Roeder 1990), in 1000 km/s, are the classic test of
# mixture models: how many components, and where? This tutorial fits the same NumPyro
# model, `ngm.models.gaussian_mixture(K, "spherical")` with its default priors, twice for
# K = 3, 4, 5, 6:
#
# * the **MAP by EM** with 16 restarts (`ngm.fit`), and
# * the **posterior by NUTS** (4 chains of 1000 warm-up and 1000 kept draws, started at
#   NumPyro's default random initialization, not at the MAP).
#
# It then checks that the MAP lies inside the posterior's 89% interval for every
# parameter (after relabelling the draws to the MAP's components), compares the run
# times, and compares the models across K with PSIS-LOO, from NUTS and from Laplace draws
# around the MAP.
#
# Run it as a script (`python tutorials/02_em_vs_nuts_galaxies.py`) or open it as a
# notebook with jupytext. `NUMPYRO_GMM_TUTORIAL_SMOKE=1` makes a small, fast version (used
# in CI); `NUMPYRO_GMM_TUTORIAL_FIGURES=DIR` writes the figures to `DIR`.

# %%
import os
import time
import warnings
from pathlib import Path

import arviz as az
import arviz_base as azb
import arviz_plots as azp
import jax
import matplotlib
import numpy as np
import pandas as pd
from numpyro.infer import MCMC, NUTS

import numpyro_gmm as ngm
from numpyro_gmm.datasets import load_example
from numpyro_gmm.plotting import plot_map_on_posterior, plot_mixture

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMOKE = os.environ.get("NUMPYRO_GMM_TUTORIAL_SMOKE") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NUMPYRO_GMM_TUTORIAL_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
pd.set_option("display.width", 120)
pd.set_option("display.max_rows", 200)

# Dims of the model's sites for arviz_base.from_numpyro (the same names as the MAP's tree).
# Giving dims and pred_dims also skips from_numpyro's dims inference, which fails when
# arviz is imported before numpyro (numpyro.infer.initialization is then not an attribute).
DIMS = {"weights": ["component"], "locs": ["component", "feature"], "variances": ["component"]}
COMPONENTS = (3, 4) if SMOKE else (3, 4, 5, 6)
RESTARTS = 16
CHAINS, WARMUP, DRAWS = (2, 50, 50) if SMOKE else (4, 1000, 1000)
LAPLACE_DRAWS = 200 if SMOKE else 2000

x = load_example("galaxies")[0][:, 0] / 1000.0  # km/s -> 1000 km/s
print(f"{x.size} galaxies, velocities {x.min():.1f} .. {x.max():.1f} (1000 km/s)")
print(f"K = {COMPONENTS}; EM: {RESTARTS} restarts; NUTS: {CHAINS} chains x ({WARMUP} + {DRAWS})")

# %% [markdown]
# ## Fit every K both ways
#
# EM is timed twice: the first call includes JAX's compilation, the second (another seed,
# same shapes) is the warm cost of 16 restarts. NUTS runs its chains one after the other
# (`chain_method="sequential"`); its time includes its own compilation.

# %%
fits, posteriors, comparisons, timings = {}, {}, {}, []
for k in COMPONENTS:
    model = ngm.models.gaussian_mixture(k, "spherical")
    started = time.perf_counter()
    ngm.fit(model, x, num_restarts=RESTARTS, rng_key=1)
    em_first = time.perf_counter() - started
    started = time.perf_counter()
    result = ngm.fit(model, x, num_restarts=RESTARTS, rng_key=0)
    em_warm = time.perf_counter() - started

    mcmc = MCMC(
        NUTS(model),
        num_warmup=WARMUP,
        num_samples=DRAWS,
        num_chains=CHAINS,
        chain_method="sequential",
        progress_bar=False,
    )
    started = time.perf_counter()
    mcmc.run(jax.random.key(k), x)
    nuts = time.perf_counter() - started

    comparison = ngm.compare_to_posterior(result, mcmc)
    fits[k], posteriors[k], comparisons[k] = result, mcmc, comparison
    print(f"K={k}: EM {em_first:.1f} s (first call), {em_warm:.3f} s (warm); NUTS {nuts:.1f} s")
    timings.append(
        {
            "K": k,
            "EM first call (s)": em_first,
            "EM warm (s)": em_warm,
            "NUTS (s)": nuts,
            "EM warm / NUTS": em_warm / nuts,
            "EM first / NUTS": em_first / nuts,
        }
    )
    print(f"K={k}: {result}")

# %% [markdown]
# ## Is the MAP inside the posterior?
#
# `ngm.compare_to_posterior` relabels every NUTS draw to the MAP's components (Hungarian
# matching on the weights, means and variances) and reports, per parameter, the MAP, the
# posterior mean and sd, the 89% highest-density interval, whether the MAP is inside, and
# `r_hat` / `ess_bulk` of the relabelled draws. The HDI is used because the MAP is a mode;
# the count inside ArviZ's default equal-tailed interval (ETI) is printed as well.

# %%
summary_rows = []
for k, comparison in comparisons.items():
    table = comparison.table
    eti = ngm.compare_to_posterior(fits[k], posteriors[k], ci_kind="eti", plot=False).table
    print(f"\n=== K = {k} ===")
    print(table.round(3).to_string(index=False))
    summary_rows.append(
        {
            "K": k,
            "inside 89% HDI": f"{int(table['inside'].sum())}/{len(table)}",
            "inside 89% ETI": f"{int(eti['inside'].sum())}/{len(eti)}",
            "max r_hat (relabelled)": table["r_hat"].max(),
            "min ess_bulk": table["ess_bulk"].min(),
        }
    )
    if not comparison.all_inside:
        print("MAP outside the 89% HDI for:", ", ".join(comparison.outside["parameter"]))
    outside_eti = eti[~eti["inside"]]
    for _, row in outside_eti.iterrows():
        print(
            f"MAP outside the 89% ETI: {row['parameter']} = {row['map']:.4f}, "
            f"ETI [{row['lower']:.4f}, {row['upper']:.4f}]"
        )
summary = pd.DataFrame(summary_rows)
print("\nMAP inside the NUTS posterior interval, per K:")
print(summary.round(3).to_string(index=False))

# %% [markdown]
# What to read in these tables:
#
# * after relabelling, `r_hat` is close to 1 for every parameter, so the pooled chains
#   describe one mode, up to labels, and the intervals mean something;
# * the EM MAP lies inside the 89% HDI of every parameter for every K;
# * the MAP is a joint mode, the posterior mean is not: for the small components (weights
#   of a few percent, one or two galaxies) the posterior of the weight piles up near 0 and
#   that of the variance has a long right tail, so the mean sits far from the MAP and an
#   equal-tailed interval (ETI) can leave the mode out (at K = 6, two variances whose MAP,
#   about 1.0, lies just below the lower end of an ETI reaching up to 10 or 20). That is
#   the shape of the marginal, not a disagreement between EM and NUTS.
#
# Without relabelling, label switching makes the component-wise summaries of NUTS
# meaningless; the `r_hat` of the raw draws shows it:

# %%
for k, mcmc in posteriors.items():
    raw = azb.from_numpyro(mcmc, dims=DIMS, pred_dims={})
    raw_rhat = max(float(az.rhat(raw, var_names=[n])[n].max()) for n in fits[k].params)
    relabelled = comparisons[k].table["r_hat"].max()
    print(f"K={k}: max r_hat raw {raw_rhat:.2f}, relabelled {relabelled:.3f}")

# %% [markdown]
# ## Time: EM with restarts against NUTS

# %%
timing = pd.DataFrame(timings)
print(timing.round(4).to_string(index=False))
print(
    f"EM (16 restarts, warm) takes {timing['EM warm / NUTS'].median():.2e} of the NUTS time "
    f"(median over K); with compilation {timing['EM first / NUTS'].median():.2e}."
)

# %% [markdown]
# ## Model comparison across K
#
# With NUTS, `az.loo` on the pointwise log-likelihood of the draws. With the MAP,
# `result.to_datatree(laplace_draws=S)` draws from the Laplace approximation around the MAP
# in NumPyro's unconstrained space and `ngm.loo_laplace` runs
# `az.loo_approximate_posterior` with the importance ratio target / Laplace density, so
# MAPs with different K can be ranked with `az.compare` like posteriors.

# %%
loo_nuts, loo_map = {}, {}
with warnings.catch_warnings():
    # Pareto k warnings are expected with small components: a galaxy alone in its
    # component changes the posterior a lot when left out. They are reported below.
    warnings.simplefilter("ignore", UserWarning)
    for k in COMPONENTS:
        tree = azb.from_numpyro(posteriors[k], log_likelihood=True, dims=DIMS, pred_dims={})
        loo_nuts[f"K={k}"] = az.loo(tree, pointwise=True)
        laplace = fits[k].to_datatree(laplace_draws=LAPLACE_DRAWS, rng_key=k)
        loo_map[f"K={k}"] = ngm.loo_laplace(laplace, pointwise=True)
    compare_nuts = az.compare(loo_nuts, round_to="none")
    compare_map = az.compare(loo_map, round_to="none")
columns = ["rank", "elpd", "se", "elpd_diff", "dse", "p", "weight"]
print("az.compare, NUTS posteriors:")
print(compare_nuts[columns].astype(float).round(2).to_string())
print("\naz.compare, EM MAP + Laplace draws:")
print(compare_map[columns].astype(float).round(2).to_string())
khat = pd.DataFrame(
    {
        "K": list(COMPONENTS),
        "Pareto k > 0.7, NUTS": [
            int((loo_nuts[f"K={k}"].pareto_k > 0.7).sum()) for k in COMPONENTS
        ],
        "Pareto k > 0.7, Laplace": [
            int((loo_map[f"K={k}"].pareto_k > 0.7).sum()) for k in COMPONENTS
        ],
    }
)
print("\nObservations with a high Pareto k (of 82):")
print(khat.to_string(index=False))

# %% [markdown]
# Reading the comparison: with NUTS every observation has a Pareto k below 0.7, so its LOO
# estimates are reliable, and the differences between K are within about one or two
# standard errors (`dse`): the data do not settle the number of components between 3 and 6.
# The Laplace-based estimate agrees with NUTS at K = 3 (within one unit of elpd, with few
# high Pareto k) but grows optimistic with K (about 6 units too high at K = 6) and, for
# K >= 4, flags most observations with a high Pareto k: a Gaussian in the unconstrained
# space is a poor proposal for the posterior of a mixture with tiny components (the weight
# and variance of a component holding one or two galaxies are far from Gaussian), so the
# importance weights are heavy-tailed. Trust the Laplace comparison only where its k
# diagnostics are good; otherwise use NUTS.

# %% [markdown]
# ## Figures

# %%
fig, axes = plt.subplots(
    1, len(COMPONENTS), figsize=(4.2 * len(COMPONENTS), 5.5), layout="constrained"
)
for ax, k in zip(np.atleast_1d(axes), COMPONENTS, strict=True):
    inside = int(comparisons[k].table["inside"].sum())
    title = f"K = {k}: MAP inside {inside}/{len(comparisons[k].table)}"
    ngm.compare.plot_comparison(comparisons[k].table, ax=ax, title=title)
fig.suptitle("EM MAP against the NUTS posterior (relabelled), 89% HDI")
fig.savefig(FIGURES / "02_map_inside_posterior.png", dpi=100)

fig, axes = plt.subplots(
    1, len(COMPONENTS), figsize=(4.2 * len(COMPONENTS), 3.6), layout="constrained"
)
for ax, k in zip(np.atleast_1d(axes), COMPONENTS, strict=True):
    p = fits[k].params
    plot_mixture(x, p["weights"], p["locs"], p["variances"], "spherical", ax=ax)
    ax.set_title(f"K = {k}: EM MAP")
    ax.legend().set_visible(False)
    ax.set_xlabel("velocity (1000 km/s)")
fig.savefig(FIGURES / "02_galaxies_fits.png", dpi=100)

k_show = COMPONENTS[1]
pc = plot_map_on_posterior(
    comparisons[k_show].posterior,
    comparisons[k_show].map,
    var_names=["locs", "weights"],
    figure_kwargs={"figsize": (14, 7.5)},
)
pc.savefig(FIGURES / "02_posterior_with_map.png")

pc = azp.plot_compare(compare_map)
pc.savefig(FIGURES / "02_compare_laplace.png")
plt.close("all")
print("figures written to", FIGURES.relative_to(FIGURES.parents[1]))
