# %% [markdown]
# # Escaping bad optima: EM, gradient EM and BigLearn-EM on the 25-component grid
#
# Twenty-five equal-weight Gaussians (covariance 0.1 I) sit on the grid {-4, -2, 0, 2, 4}^2
# (the simulation of Cong & Li, AAAI 2024). Started from means drawn near the origin, not
# from the data, plain EM gets stuck: some fitted components end up covering several true
# clusters (*one-fits-many*) while others share one (*many-fit-one*). The landscape
# diagnostic (`numpyro_gmm.diagnostics.landscape_diagnostic`, after Chen et al. 2020) names
# these structures; over-parameterized gradient EM and BigLearn-EM are two ways out.
#
# `NUMPYRO_GMM_TUTORIAL_SMOKE=1` runs a small version; `NUMPYRO_GMM_TUTORIAL_FIGURES=DIR`
# writes the figures to `DIR`.

# %%
import os
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

import numpyro_gmm as ngm
from numpyro_gmm.diagnostics import landscape_diagnostic
from numpyro_gmm.plotting import plot_mixture

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SMOKE = os.environ.get("NUMPYRO_GMM_TUTORIAL_SMOKE") == "1"
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(os.environ.get("NUMPYRO_GMM_TUTORIAL_FIGURES", HERE / "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)
# The data generator is the one of the BigLearn-EM reproduction in benchmarks/.
sys.path.insert(0, str(HERE.parent / "benchmarks"))
from repro_biglearn_grid import (  # noqa: E402
    N_COMPONENTS,
    TRUE_MEANS,
    TRUE_VARIANCE,
    sample_truth,
    true_log_pdf,
)

N_TRAIN, N_TEST = (500, 1000) if SMOKE else (2000, 5000)
EM_ITER, BIGLEARN_ITER, GRADIENT_ITER = (30, 60, 60) if SMOKE else (500, 2000, 2000)
rng = np.random.default_rng(0)
x, x_test = sample_truth(rng, N_TRAIN), sample_truth(rng, N_TEST)
# The paper's initialization, shared by EM and BigLearn-EM: equal weights, identity
# covariances and means drawn from N(0, I), i.e. all near the centre of the grid.
start = dict(
    weights_init=np.full(N_COMPONENTS, 1.0 / N_COMPONENTS),
    means_init=rng.standard_normal((N_COMPONENTS, 2)),
    precisions_init=np.tile(np.eye(2), (N_COMPONENTS, 1, 1)),
)
print(f"{N_TRAIN} training and {N_TEST} test points, K = {N_COMPONENTS}")

# %% [markdown]
# ## Three ways to fit
#
# * **EM**: plain EM from that start.
# * **BigLearn-EM**: the same start; joint, marginal and randomly rotated marginal matching
#   steps (`weight_smoothing=0.2`, eigenvalue floor 1e-5) then a short polish.
# * **Gradient EM**: over-parameterized, `ceil(3 m ln m)` = 242 spherical components from
#   random data points, gradient steps on the means with the covariances held fixed (the
#   setting of its theory, `learn_covariance=False`; the facade learns them by default),
#   then pruning and merging back. Run twice: with its default
#   fixed variance 1, and with the true component variance 0.1. The theory assumes that
#   variance is known, and the result depends on it: with variance 1 the components are
#   too wide to separate grid points 2 apart and merge into a few.

# %%
methods = {
    "EM": ngm.GaussianMixture(
        N_COMPONENTS, method="em", max_iter=EM_ITER, tol=0.0, random_state=0, **start
    ),
    "BigLearn-EM": ngm.GaussianMixture(
        N_COMPONENTS,
        method="biglearn_em",
        method_options={"weight_smoothing": 0.2, "eigenvalue_floor": 1e-5},
        max_iter=BIGLEARN_ITER,
        tol=0.0,
        random_state=0,
        **start,
    ),
    "gradient EM (variance 1)": ngm.GaussianMixture(
        N_COMPONENTS,
        covariance_type="spherical",
        method="gradient_em",
        method_options={"learn_covariance": False},
        max_iter=GRADIENT_ITER,
        random_state=0,
    ),
    "gradient EM (variance 0.1)": ngm.GaussianMixture(
        N_COMPONENTS,
        covariance_type="spherical",
        method="gradient_em",
        method_options={"learn_covariance": False, "initial_variance": TRUE_VARIANCE},
        max_iter=GRADIENT_ITER,
        random_state=0,
    ),
}
sigma = float(np.sqrt(TRUE_VARIANCE))
rows, diagnostics = [], {}
for name, gm in methods.items():
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tol=0 runs every iteration: no convergence flag
        gm.fit(x)
    seconds = time.perf_counter() - started
    diagnostic = landscape_diagnostic(gm.means_, TRUE_MEANS, sigma, fitted_weights=gm.weights_)
    diagnostics[name] = diagnostic
    rows.append(
        {
            "method": name,
            "components": gm.n_components_found_,
            "test KL": float(np.mean(true_log_pdf(x_test) - gm.score_samples(x_test))),
            "matched": diagnostic.count("matched"),
            "one-fits-many": diagnostic.count("one-fits-many"),
            "many-fit-one": diagnostic.count("many-fit-one"),
            "seconds (incl. compile)": seconds,
        }
    )
table = pd.DataFrame(rows)
print(table.round(3).to_string(index=False))

# %% [markdown]
# These are one seed's numbers; `benchmarks/BIGLEARN.md` reports the paper's protocol over
# 10 seeds (BigLearn-EM's documented polish included). On this seed EM leaves a few true
# clusters shared or merged, BigLearn-EM matches more of them, and gradient EM given the
# true component variance recovers all 25, while with its default variance it cannot.

# %% [markdown]
# ## What went wrong with EM
#
# The diagnostic labels every group of fitted and true means: MATCHED (one on one),
# ONE_FITS_MANY (one fitted mean between several true ones), MANY_FIT_ONE (several fitted
# means on one true mean), UNCOVERED, ORPHAN (a fitted weight below 1/(10 K)).

# %%
for name, diagnostic in diagnostics.items():
    print(f"{name}: {diagnostic.summary()}")
print()
print(diagnostics["EM"])

# %%
fig, axes = plt.subplots(1, 4, figsize=(20, 5.4), layout="constrained")
for ax, (name, gm) in zip(axes, methods.items(), strict=True):
    plot_mixture(x, gm.weights_, gm.means_, gm.covariances_, gm.covariance_type, ax=ax)
    ax.legend().set_visible(False)
    ax.plot(*TRUE_MEANS.T, "+", color="k", ms=9, mew=1.5)
    for group in diagnostics[name].groups:
        if group.kind.value in ("one-fits-many", "many-fit-one"):
            for i in group.fitted:
                ax.plot(*gm.means_[i], "o", mfc="none", mec="C3", ms=14, mew=2)
    matched = diagnostics[name].count("matched")
    ax.set_title(f"{name}: {matched}/25 matched", fontsize="medium")
    ax.set_xlim(-6, 6)
    ax.set_ylim(-6, 6)
    ax.set_aspect("equal")
fig.suptitle("25-component grid: true means (+), fitted components; red circles: bad groups")
fig.savefig(FIGURES / "03_grid_methods.png", dpi=90)
plt.close(fig)
print("figures written to", FIGURES.relative_to(FIGURES.parents[1]))
