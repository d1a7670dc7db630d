"""Reproduce the 25-component grid simulation of BigLearn-EM (ALGORITHMS.md section 4).

Truth: equal weights, means on the grid {-4, -2, 0, 2, 4}^2, covariance 0.1 I. Per seed, 2000
training and 5000 test points are drawn afresh, and one initialization is drawn *not from the
data*: pi = 1/K, mu_k ~ N(0, I), Sigma_k = I (K = 25), passed to both methods as
``InitialValues``. Methods:

* joint EM: the paper's baseline, plain full-covariance EM with the same init and eigenvalue
  floor and no weight smoothing (``biglearn_em`` with ``p_joint=1, inner_steps=1,
  weight_smoothing=0``), 500 iterations;
* BigLearn-EM: alpha_pi = 0.2, eps = 1e-5, 2000 iterations, the last iterate, then the
  documented polish: 50 EM steps that keep the eigenvalue floor (``polish_iter=50,
  polish_kernel="biglearn_em", polish_options=floored_em_options(1e-5)`` of the engine
  ``fit_gaussian_mixture``, i.e. the joint-EM kernel; the ``"biglearn_em"`` method of
  ``numpyro_gmm.pipeline.fit_mixture`` also standardizes the data, which is not done here).
  The last iterate without polish, and with 50 plain EM steps (``polish_kernel="em"``,
  no floor), are reported for comparison.

Metric: test KL = mean over test points of ``log p_true(x) - log p_fit(x)`` (float64 numpy).
No iterate is ever selected with the test set. ``reg_covar = 1e-6`` (negligible next to the
floor; it keeps the polish EM steps defined if a component empties).

Usage::

    python benchmarks/repro_biglearn_grid.py                 # 10 seeds, full settings
    python benchmarks/repro_biglearn_grid.py --smoke         # 2 seeds, few iterations (CI)
    python benchmarks/repro_biglearn_grid.py --json grid.json --figure grid.png
"""

import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from harness import REPO_ROOT, ensure_importable, finish, script_parser

N_COMPONENTS = 25
GRID = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
TRUE_MEANS = np.array([[a, b] for a in GRID for b in GRID])
TRUE_VARIANCE = 0.1


def gmm_log_pdf(x: np.ndarray, weights, means, covariances) -> np.ndarray:
    """``log sum_k pi_k N(x | mu_k, Sigma_k)`` in float64 numpy, shape (N,)."""
    x = np.asarray(x, np.float64)
    chol = np.linalg.cholesky(np.asarray(covariances, np.float64))
    diff = x[None, :, :] - np.asarray(means, np.float64)[:, None, :]
    solved = np.linalg.solve(chol[:, None, :, :], diff[..., None])[..., 0]
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    d = x.shape[1]
    log_comp = -0.5 * (d * np.log(2 * np.pi) + log_det[:, None] + np.sum(solved**2, -1))
    log_comp += np.log(np.maximum(np.asarray(weights, np.float64), 1e-300))[:, None]
    top = log_comp.max(0)
    return top + np.log(np.exp(log_comp - top).sum(0))


def sample_truth(rng: np.random.Generator, n: int) -> np.ndarray:
    labels = rng.integers(0, N_COMPONENTS, n)
    return TRUE_MEANS[labels] + np.sqrt(TRUE_VARIANCE) * rng.standard_normal((n, 2))


def true_log_pdf(x: np.ndarray) -> np.ndarray:
    covariances = np.broadcast_to(TRUE_VARIANCE * np.eye(2), (N_COMPONENTS, 2, 2))
    return gmm_log_pdf(x, np.full(N_COMPONENTS, 1 / N_COMPONENTS), TRUE_MEANS, covariances)


def run(args) -> dict:
    ensure_importable()
    import jax
    import jax.numpy as jnp

    from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
    from numpyro_gmm.kernels.biglearn_em import floored_em_options

    dtype = jnp.float32
    floored = floored_em_options(1e-5, track_objective=False)
    methods = {
        "joint EM": dict(kernel_options=floored, max_iter=args.joint_iter, polish_iter=0),
        "BigLearn-EM (no polish)": dict(
            kernel_options=dict(weight_smoothing=0.2, eigenvalue_floor=1e-5, track_objective=False),
            max_iter=args.biglearn_iter,
            polish_iter=0,
        ),
        "BigLearn-EM + polish": dict(
            kernel_options=dict(weight_smoothing=0.2, eigenvalue_floor=1e-5, track_objective=False),
            max_iter=args.biglearn_iter,
            polish_iter=args.polish_iter,
            polish_kernel="biglearn_em",
            polish_options=floored,
        ),
        "BigLearn-EM + plain EM polish": dict(
            kernel_options=dict(weight_smoothing=0.2, eigenvalue_floor=1e-5, track_objective=False),
            max_iter=args.biglearn_iter,
            polish_iter=args.polish_iter,
            polish_kernel="em",
        ),
    }
    kl = {name: [] for name in methods}
    seconds = {name: 0.0 for name in methods}
    fits_for_figure = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        train = sample_truth(rng, args.n_train)
        test = sample_truth(rng, args.n_test)
        initial = InitialValues(
            weights=jnp.full((N_COMPONENTS,), 1.0 / N_COMPONENTS, dtype),
            means=jnp.asarray(rng.standard_normal((N_COMPONENTS, 2)), dtype),
            precisions_cholesky=jnp.tile(jnp.eye(2, dtype=dtype), (N_COMPONENTS, 1, 1)),
        )
        x = jnp.asarray(train, dtype)
        log_true = true_log_pdf(test)
        for name, spec in methods.items():
            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tol=0 never "converges"; expected here
                result = fit_gaussian_mixture(
                    x,
                    N_COMPONENTS,
                    rng_key=jax.random.key(1000 + seed),
                    initial=initial,
                    tol=0.0,
                    reg_covar=1e-6,
                    kernel="biglearn_em",
                    **spec,
                )
            seconds[name] += time.perf_counter() - started
            p = result.params
            value = float(
                np.mean(log_true - gmm_log_pdf(test, p.weights, p.means, result.covariances))
            )
            kl[name].append(value)
            if seed == 0:
                fits_for_figure[name] = (
                    np.asarray(p.weights),
                    np.asarray(p.means),
                    np.asarray(result.covariances),
                )
        print(
            f"seed {seed}: " + ", ".join(f"{n} {kl[n][-1]:.4f}" for n in methods),
            file=sys.stderr,
        )
        if seed == 0:
            fits_for_figure["train"] = train
    summary = {
        name: dict(
            per_seed=values,
            mean=float(np.mean(values)),
            sd=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            below_0_08=int(np.sum(np.asarray(values) < 0.08)),
            seconds_per_fit=seconds[name] / args.seeds,
        )
        for name, values in kl.items()
    }
    if args.figure:
        save_figure(fits_for_figure, args.figure)
    return dict(
        benchmark="biglearn_grid",
        settings=vars(args),
        results=summary,
        ratio_joint_over_biglearn=summary["joint EM"]["mean"]
        / summary["BigLearn-EM + polish"]["mean"],
        machine=platform.platform(),
        processor=platform.processor() or platform.machine(),
        versions=_versions(),
        date=time.strftime("%Y-%m-%d"),
    )


def _versions() -> dict:
    import jax

    return {"python": platform.python_version(), "jax": jax.__version__, "numpy": np.__version__}


def save_figure(fits: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    names = ["joint EM", "BigLearn-EM + polish"]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 5), sharex=True, sharey=True)
    train = fits["train"]
    for ax, name in zip(axes, names, strict=True):
        weights, means, covariances = fits[name]
        ax.scatter(train[:, 0], train[:, 1], s=2, c="0.6")
        for w, m, c in zip(weights, means, covariances, strict=True):
            values, vectors = np.linalg.eigh(c)
            angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
            width, height = 2 * 2 * np.sqrt(np.maximum(values[::-1], 0))
            alpha = float(np.clip(w * N_COMPONENTS, 0.15, 1.0))
            ax.add_patch(
                Ellipse(m, width, height, angle=angle, fill=False, color="C3", alpha=alpha, lw=1.5)
            )
            ax.plot(*m, "k+", ms=5)
        ax.set_title(f"{name} (seed 0)")
        ax.set_aspect("equal")
        ax.set_xlim(-6, 6)
        ax.set_ylim(-6, 6)
    fig.suptitle("25-component grid: fitted components (2-sd ellipses)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(report: dict) -> None:
    results = report["results"]
    n = len(next(iter(results.values()))["per_seed"])
    print("BigLearn-EM grid simulation: test KL (lower is better)")
    print(f"{'method':<32}{'mean':>8}{'sd':>8}{'< 0.08':>8}{'s/fit':>8}  per seed")
    for name, row in results.items():
        seeds = " ".join(f"{v:.3f}" for v in row["per_seed"])
        print(
            f"{name:<32}{row['mean']:>8.4f}{row['sd']:>8.4f}{row['below_0_08']:>5}/{n:<2}"
            f"{row['seconds_per_fit']:>8.2f}  {seeds}"
        )
    print(
        "ratio joint EM / BigLearn-EM + polish (mean KL): "
        f"{report['ratio_joint_over_biglearn']:.2f}"
    )


def main(argv=None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--joint-iter", type=int, default=500)
    parser.add_argument("--biglearn-iter", type=int, default=2000)
    parser.add_argument("--polish-iter", type=int, default=50)
    parser.add_argument(
        "--figure",
        type=str,
        default=str(REPO_ROOT / "benchmarks" / "figures" / "biglearn_grid.png"),
        help="figure path ('' for none)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.seeds, args.n_test = 2, 500
        args.joint_iter, args.biglearn_iter, args.polish_iter = 20, 40, 5
        if args.figure == parser.get_default("figure"):
            args.figure = ""
    return finish(run(args), args.json, print_table)


if __name__ == "__main__":
    raise SystemExit(main())
