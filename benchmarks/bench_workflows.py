"""Whole-process time of workflows users run, against scikit-learn in the same run.

Each workflow runs in a fresh Python process (import and compilation included), timed from
outside: numpyro_gmm with an empty persistent compilation cache (cold), then again with the
cache the first process filled (warm), and scikit-learn's GaussianMixture doing the same work.

Workflows:

* ``bic_small``: a BIC sweep, K = 1..8 x the four covariance types, ``n_init=1``, on the
  272 x 2 Old Faithful data.
* ``bic_large``: the same sweep on 20000 x 8 synthetic data.
* ``cv``: 5-fold ``cross_val_score`` over ``n_components`` in 1..6 on the Old Faithful data.
* ``user_model``: the first ``ngm.fit`` of a NumPyro model a user writes (1-D, K = 3,
  Dirichlet weights, Normal locations, LogNormal scales: not conjugate, so generalized EM),
  300 rows, 8 restarts; the peer is NUTS (500 warm-up + 500 draws, one chain) on the same
  model, also in a fresh process.

Run ``.venv/bin/python benchmarks/bench_workflows.py --json benchmarks/results_workflows.json``;
``--smoke`` runs ``bic_small`` with K = 1..2 and two covariance types (for CI).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import sys, warnings
import numpy as np
warnings.simplefilter("ignore")
library, workflow, smoke = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if workflow == "user_model":
    import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist

    def model(y):
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
        with numpyro.plate("components", 3):
            loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
            scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", y.shape[0]):
            numpyro.sample("y", dist.MixtureSameFamily(
                dist.Categorical(weights), dist.Normal(loc, scale)), obs=y)

    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(-4, 1, 100), rng.normal(0, 0.5, 100), rng.normal(5, 2, 100)])
    if library == "numpyro_gmm":
        import numpyro_gmm as ngm
        print(ngm.fit(model, y, num_restarts=8, rng_key=0).objective)
    else:
        from numpyro.infer import MCMC, NUTS
        warm, draws = (50, 50) if smoke else (500, 500)
        mcmc = MCMC(NUTS(model), num_warmup=warm, num_samples=draws, progress_bar=False)
        mcmc.run(jax.random.key(0), y)
        print(float(mcmc.get_samples()["loc"].mean()))
    raise SystemExit
if library == "numpyro_gmm":
    from numpyro_gmm import GaussianMixture
else:
    from sklearn.mixture import GaussianMixture
from numpyro_gmm.datasets import load_example

components = range(1, 3) if smoke else range(1, 9)
types = ("full", "diag") if smoke else ("full", "tied", "diag", "spherical")
if workflow == "bic_large":
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4.0, size=(6, 8))
    x = centres[rng.integers(0, 6, 20000)] + rng.normal(size=(20000, 8))
else:
    x = load_example("faithful")[0]
if workflow.startswith("bic"):
    bics = [GaussianMixture(k, covariance_type=t, random_state=0).fit(x).bic(x)
            for k in components for t in types]
    print(min(bics))
else:
    from sklearn.model_selection import cross_val_score
    print(max(cross_val_score(GaussianMixture(k, random_state=0), x, cv=5).mean()
              for k in (range(1, 3) if smoke else range(1, 7))))
"""


def _run(library: str, workflow: str, smoke: bool, cache: str) -> float:
    env = {**os.environ, "NUMPYRO_GMM_COMPILATION_CACHE": cache, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _SCRIPT, library, workflow, "1" if smoke else "0"],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--workflows", help="comma-separated (default: all; smoke: bic_small)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = {}
    default = "bic_small" if args.smoke else "bic_small,bic_large,cv,user_model"
    for workflow in (args.workflows or default).split(","):
        with tempfile.TemporaryDirectory() as cache:
            cold = _run("numpyro_gmm", workflow, args.smoke, cache)
            warm = _run("numpyro_gmm", workflow, args.smoke, cache)
        peer_name = "nuts" if workflow == "user_model" else "sklearn"
        peer = _run(peer_name, workflow, args.smoke, "0")
        results[workflow] = {
            "numpyro_gmm_cold_s": round(cold, 2),
            "numpyro_gmm_warm_s": round(warm, 2),
            "peer": "NUTS 500+500" if peer_name == "nuts" else "scikit-learn",
            "peer_s": round(peer, 2),
            "cold_ratio": round(cold / peer, 2),
            "warm_ratio": round(warm / peer, 2),
        }
        print(workflow, json.dumps(results[workflow]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
