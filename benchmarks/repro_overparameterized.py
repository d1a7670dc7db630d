"""Recovery of every true mean: EM with n = m against over-parameterized gradient EM.

Reproduces the contrast of ALGORITHMS.md §2 (Zhou, Xu, Fazel & Du 2025): on well-separated
mixtures in general position with identity covariances, randomly initialized EM with as many
components as the truth (n = m) often ends in a bad local optimum, while gradient EM with
n = ceil(3 m ln m) components, followed by prune-and-merge and an EM polish, finds every true
mean. Methods, all in float32 on the same data per seed:

(i)   EM, n = m, means initialized at m random data points (``init_params="random_from_data"``);
(ii)  EM, n = m, k-means++ seeding (``init_params="k-means++"``);
(iii) over-parameterized gradient EM + prune-and-merge + EM polish
      (:func:`numpyro_gmm.pipeline.fit_mixture` with ``method="gradient_em"`` in the theory's
      setting: spherical covariances fixed at the identity, ``learn_covariance=False``,
      ``max_iter=1000`` gradient steps, step size 1, then at most 100 polish steps with
      ``tol=1e-6``);
(iv)  BigLearn-EM (the bare ``"biglearn_em"`` kernel of the engine
      :func:`numpyro_gmm.fitting.fit_gaussian_mixture`: full covariances, its defaults, no
      standardization and no polish, 300 iterations, on the first 10 seeds only by default:
      it costs up to a thousand times (i)), if available.

EM in (i) and (ii) knows the identity covariance, as the theory's learner does: it is the
gradient-EM kernel with ``mean_update="em"`` and ``step_size=1``, which is exactly EM for the
weights and means with the covariances held fixed. (The plain gradient step with step size 1
is *not* EM: it moves each mean only ``pi_i`` of the way to its EM target.) BigLearn-EM
learns full covariances (it supports nothing else) and starts from random data points with
identity covariances.

Data per seed: ``m`` means drawn from ``N(0, s^2 I)`` with ``s = c sqrt(D) m^(1/D) / 1.5`` and
redrawn until the minimum distance is at least ``c sqrt(D)`` (``c = 4``), labels uniform,
``N = 100 m`` points with identity covariance. A method *recovers* the mixture when it
returns exactly m components and the Hungarian-matched distance of every true mean to its
fitted mean is at most ``c sqrt(D) / 4`` (a quarter of the minimum separation; a mean at the
centroid of two true means is at least twice that far from both).

For the failed runs of (i), the landscape diagnostic (:mod:`numpyro_gmm.diagnostics`, sigma =
1, reference = the truth with its sample proportions) says how many contain a one-fits-many
or many-fit-one group (the paper's bad local minima).

Times are median wall-clock seconds per seed (after compilation) relative to (i).

Usage::

    python benchmarks/repro_overparameterized.py           # m 5,10,20; D 2,10,50; 50 seeds
    python benchmarks/repro_overparameterized.py --smoke     # tiny sizes, 2 seeds, for CI
    python benchmarks/repro_overparameterized.py --seeds 20 --json out.json
"""

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
try:
    import numpyro_gmm  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT))

import jax.numpy as jnp  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from numpyro_gmm.diagnostics import GroupKind, landscape_diagnostic  # noqa: E402
from numpyro_gmm.errors import ConvergenceWarning, EmptyComponentWarning  # noqa: E402
from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture  # noqa: E402
from numpyro_gmm.overparameterized import default_n_components  # noqa: E402
from numpyro_gmm.pipeline import fit_mixture  # noqa: E402
from numpyro_gmm.validation import to_device  # noqa: E402

SEPARATION = 4.0
SAMPLES_PER_COMPONENT = 100
EM_MAX_ITER = 300
EM_TOL = 1e-6
GRADIENT_MAX_ITER = 1000
# Method (iii): the settings of the former fit_gradient_em defaults, passed explicitly.
GRADIENT_OPTIONS = {
    "learn_covariance": False,  # covariances fixed at initial_variance * I (the theory's)
    "initial_variance": 1.0,
    "step_size": 1.0,
    "polish_iter": 100,
}
GRADIENT_POLISH_TOL = 1e-6
BIGLEARN_MAX_ITER = 300


def biglearn_available() -> bool:
    """Whether the BigLearn-EM kernel exists and imports."""
    try:
        from numpyro_gmm.kernels import biglearn_em  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return False
    return True


def make_data(seed: int, m: int, d: int, n_per: int, separation: float = SEPARATION):
    """Well-separated identity-covariance mixture: (x float32, means, labels)."""
    rng = np.random.default_rng([seed, m, d])
    scale = separation * np.sqrt(d) * m ** (1.0 / d) / 1.5
    while True:
        means = rng.normal(scale=scale, size=(m, d))
        distances = np.linalg.norm(means[:, None] - means[None], axis=-1) + 1e18 * np.eye(m)
        if distances.min() >= separation * np.sqrt(d):
            break
    labels = rng.integers(0, m, n_per * m)
    x = means[labels] + rng.normal(size=(n_per * m, d))
    return x.astype(np.float32), means, labels


def recovered(estimate: np.ndarray, truth: np.ndarray, tolerance: float) -> bool:
    """Exactly m components and every Hungarian-matched distance within ``tolerance``."""
    if estimate.shape != truth.shape:
        return False
    cost = np.linalg.norm(truth[:, None] - estimate[None], axis=-1)
    rows, columns = linear_sum_assignment(cost)
    return bool(cost[rows, columns].max() <= tolerance)


def run_em(x, m, seed, init_params):
    # The engine with the gradient-EM kernel as exact EM for weights and means (identity
    # covariances held fixed); the engine gives no warnings.
    fit = fit_gaussian_mixture(
        jnp.asarray(x),
        m,
        covariance_type="spherical",
        rng_key=seed,
        init_params=init_params,
        initial=InitialValues(precisions_cholesky=np.ones(m, np.float32)),
        max_iter=EM_MAX_ITER,
        tol=EM_TOL,
        kernel="gradient_em",
        kernel_options={"mean_update": "em", "step_size": 1.0},
    )
    return np.asarray(fit.params.means), np.asarray(fit.params.weights)


def run_gradient(x, m, seed, max_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", EmptyComponentWarning)
        result = fit_mixture(
            to_device(x),
            m,
            method="gradient_em",
            covariance_type="spherical",
            rng_key=seed,
            num_restarts=1,
            max_iter=max_iter,
            tol=GRADIENT_POLISH_TOL,
            reg_covar=1e-6,
            options=GRADIENT_OPTIONS,
        )
    return np.asarray(result.params.means), result.extras["n_components_found"]


def run_biglearn(x, m, seed, max_iter):
    d = x.shape[1]
    try:
        return _run_biglearn(x, m, seed, max_iter, d)
    except ValueError:  # FitFailedError, every restart hit a singular covariance: not recovered
        return None


def _run_biglearn(x, m, seed, max_iter, d):
    fit = fit_gaussian_mixture(
        jnp.asarray(x),
        m,
        covariance_type="full",
        rng_key=seed,
        init_params="random_from_data",
        initial=InitialValues(precisions_cholesky=np.broadcast_to(np.eye(d), (m, d, d))),
        max_iter=max_iter,
        tol=0.0,
        kernel="biglearn_em",
    )
    return np.asarray(fit.params.means)


def _timed(function, *args):
    started = time.perf_counter()
    output = function(*args)
    return output, time.perf_counter() - started


def run_configuration(
    m, d, seeds, n_per, gradient_iter, biglearn_iter, with_biglearn, biglearn_seeds
):
    tolerance = SEPARATION * np.sqrt(d) / 4
    rows = {key: [] for key in ("em_random", "em_kmeanspp", "gradient", "biglearn")}
    times = {key: [] for key in rows}
    found_target = []
    biglearn_failures = 0
    explained = []
    kinds_of_failures = {"one-fits-many": 0, "many-fit-one": 0, "other": 0}
    for index, seed in enumerate(seeds):
        x, truth, labels = make_data(seed, m, d, n_per)
        (means_i, weights_i), t_i = _timed(run_em, x, m, seed, "random_from_data")
        (means_ii, _), t_ii = _timed(run_em, x, m, seed, "k-means++")
        (means_iii, m_found), t_iii = _timed(run_gradient, x, m, seed, gradient_iter)
        ok_i = recovered(means_i, truth, tolerance)
        rows["em_random"].append(ok_i)
        rows["em_kmeanspp"].append(recovered(means_ii, truth, tolerance))
        rows["gradient"].append(recovered(means_iii, truth, tolerance))
        found_target.append(m_found == m)
        if with_biglearn and index < biglearn_seeds:
            means_iv, t_iv = _timed(run_biglearn, x, m, seed, biglearn_iter)
            failed = means_iv is None
            biglearn_failures += int(failed)
            rows["biglearn"].append(not failed and recovered(means_iv, truth, tolerance))
        else:
            t_iv = np.nan
        if index > 0 or len(seeds) == 1:  # the first seed pays the compilations
            for key, value in zip(times, (t_i, t_ii, t_iii, t_iv), strict=True):
                if np.isfinite(value):
                    times[key].append(value)
        if not ok_i:
            proportions = np.bincount(labels, minlength=m) / labels.size
            diagnostic = landscape_diagnostic(
                means_i, truth, 1.0, reference_weights=proportions, fitted_weights=weights_i
            )
            has_ofm = diagnostic.count(GroupKind.ONE_FITS_MANY) > 0
            has_mfo = diagnostic.count(GroupKind.MANY_FIT_ONE) > 0
            explained.append(has_ofm or has_mfo)
            kinds_of_failures["one-fits-many"] += int(has_ofm)
            kinds_of_failures["many-fit-one"] += int(has_mfo)
            kinds_of_failures["other"] += int(not (has_ofm or has_mfo))
    median = {
        key: float(np.median(value)) if value else float("nan") for key, value in times.items()
    }
    base = median["em_random"]
    return {
        "m": m,
        "D": d,
        "N": n_per * m,
        "n_fit": default_n_components(m),
        "seeds": len(seeds),
        "tolerance": float(tolerance),
        "p_em_random": float(np.mean(rows["em_random"])),
        "p_em_kmeanspp": float(np.mean(rows["em_kmeanspp"])),
        "p_gradient": float(np.mean(rows["gradient"])),
        "p_biglearn": float(np.mean(rows["biglearn"])) if with_biglearn else None,
        "biglearn_seeds": len(rows["biglearn"]),
        "biglearn_errors": biglearn_failures if with_biglearn else None,
        "gradient_found_m": float(np.mean(found_target)),
        "em_random_failures": int(len(explained)),
        "failures_explained": float(np.mean(explained)) if explained else None,
        "failure_kinds": kinds_of_failures,
        "seconds_em_random": base,
        "time_ratio_kmeanspp": median["em_kmeanspp"] / base,
        "time_ratio_gradient": median["gradient"] / base,
        "time_ratio_biglearn": median["biglearn"] / base if with_biglearn else None,
    }


def _fmt(value, spec=".2f"):
    return (
        "n/a"
        if value is None or (isinstance(value, float) and np.isnan(value))
        else format(value, spec)
    )


def print_table(results, with_biglearn):
    header = (
        f"{'m':>3} {'D':>3} {'N':>5} {'n':>4} {'seeds':>5} | "
        f"{'(i) EM rnd':>10} {'(ii) EM k++':>11} "
        f"{'(iii) GEM':>9} {'(iv) BL':>7} | {'m found':>7} | {'t(ii)':>6} {'t(iii)':>6} "
        f"{'t(iv)':>6} | {'(i) fails':>9} {'OFM/MFO':>7} | target"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        target = (
            "n/a"
            if row["p_em_random"] > 0.5
            else ("met" if row["p_gradient"] >= 0.95 else "MISSED")
        )
        print(
            f"{row['m']:>3} {row['D']:>3} {row['N']:>5} {row['n_fit']:>4} {row['seeds']:>5} | "
            f"{row['p_em_random']:>10.2f} {row['p_em_kmeanspp']:>11.2f} {row['p_gradient']:>9.2f} "
            f"{_fmt(row['p_biglearn']) if with_biglearn else 'n/a':>7} | "
            f"{row['gradient_found_m']:>7.2f} | {row['time_ratio_kmeanspp']:>6.2f} "
            f"{row['time_ratio_gradient']:>6.1f} {_fmt(row['time_ratio_biglearn'], '.1f'):>6} | "
            f"{row['em_random_failures']:>9} {_fmt(row['failures_explained']):>7} | {target}"
        )
    if not with_biglearn:
        print("(iv) BigLearn-EM: not available")
    print(
        "P(.) = share of seeds recovering every true mean; 'm found' = share of (iii) runs "
        "with m' = m;\nt(.) = median time per seed relative to (i); OFM/MFO = share of failed "
        "(i) runs with a one-fits-many or many-fit-one group."
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and 2 seeds (CI)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration")
    parser.add_argument("--components", type=int, nargs="+", default=None, help="values of m")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="values of D")
    parser.add_argument("--no-biglearn", action="store_true", help="skip method (iv)")
    parser.add_argument(
        "--biglearn-seeds",
        type=int,
        default=None,
        help="seeds for (iv), the first of --seeds (default 10, or all with --smoke)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.smoke:
        components, dims, n_seeds, n_per = [3], [2], 2, 30
        gradient_iter, biglearn_iter = 100, 10
    else:
        components, dims, n_seeds, n_per = [5, 10, 20], [2, 10, 50], 50, SAMPLES_PER_COMPONENT
        gradient_iter, biglearn_iter = GRADIENT_MAX_ITER, BIGLEARN_MAX_ITER
    components = args.components or components
    dims = args.dims or dims
    n_seeds = args.seeds or n_seeds
    with_biglearn = biglearn_available() and not args.no_biglearn
    biglearn_seeds = args.biglearn_seeds or (n_seeds if args.smoke else min(10, n_seeds))
    results = []
    started = time.perf_counter()
    for m in components:
        for d in dims:
            config_started = time.perf_counter()
            row = run_configuration(
                m,
                d,
                list(range(n_seeds)),
                n_per,
                gradient_iter,
                biglearn_iter,
                with_biglearn,
                biglearn_seeds,
            )
            row["wall_seconds"] = time.perf_counter() - config_started
            results.append(row)
            print(f"  m={m} D={d}: {row['wall_seconds']:.1f} s", file=sys.stderr, flush=True)
    print_table(results, with_biglearn)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        payload = {
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()} {platform.processor() or ''} "
            f"{os.cpu_count()} CPU(s), {platform.system()}".strip(),
            "python": platform.python_version(),
            "separation_c": SEPARATION,
            "samples_per_component": n_per,
            "gradient_max_iter": gradient_iter,
            "biglearn_max_iter": biglearn_iter if with_biglearn else None,
            "results": results,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
