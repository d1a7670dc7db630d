"""Time per EM iteration: numpyro_gmm (JAX) against scikit-learn's GaussianMixture.

Both libraries start from the same initial parameters and run a fixed number of EM
iterations (``tol=0``) on the same synthetic data, full covariances, in float64 and in
float32. Each dtype runs in its own subprocess (``jax_enable_x64`` is a process-wide
switch). The per-iteration lower bounds of the two libraries are compared over their common
iterations, so that the timings are of the same computation.

Per-iteration time is measured differentially: ``(t(T) - t(1)) / (T - 1)`` where ``t(T)``
is the wall time of a whole fit with ``max_iter=T``. This removes the fixed costs that both
libraries pay once per fit (initialization pass, final scoring pass, host transfers). JAX
fits are timed on a second call, after compilation; the compile time reported is the first
call minus the second.

Usage::

    python benchmarks/bench_em_speed.py                 # N=200000, D=16, K=16
    python benchmarks/bench_em_speed.py --smoke         # tiny sizes, for CI
    python benchmarks/bench_em_speed.py --json speed.json
"""

import argparse
import contextlib
import io
import json
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from harness import ChildFailed, emit_child_result, ensure_importable, run_child

DTYPES = ("float64", "float32")


# --------------------------------------------------------------------------- synthetic data


def mixture_spec(n_features: int, n_components: int, seed: int = 0, mean_scale: float = 1.0):
    """Weights, means and SPD covariances of the generating mixture.

    Means are drawn from N(0, mean_scale^2 I); covariances are ``A A^T / D + 0.1 I`` with a
    standard normal ``A``. ``mean_scale=1`` gives overlapping components; at ``mean_scale=4``
    the components are well separated.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.normal(scale=mean_scale, size=(n_components, n_features))
    factors = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    covariances = factors @ np.swapaxes(factors, -1, -2) + 0.1 * np.eye(n_features)
    return weights, means, covariances


def make_data(n_samples, n_features, n_components, dtype, seed=0, mean_scale=1.0,
              block=65536):
    """Rows drawn from the synthetic mixture, filled in place block by block.

    The values do not depend on ``dtype`` (float32 data are the float64 draws rounded).
    """
    weights, means, covariances = mixture_spec(n_features, n_components, seed, mean_scale)
    chol = np.linalg.cholesky(covariances)
    rng = np.random.default_rng(seed + 1)
    x = np.empty((n_samples, n_features), dtype=dtype)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        labels = rng.choice(n_components, size=stop - start, p=weights)
        z = rng.standard_normal((stop - start, n_features))
        x[start:stop] = means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return x


def initial_parameters(x, n_components, seed=0, n_subsample=20000):
    """Shared starting point: k-means++ seeds as means, equal weights, the data covariance.

    Computed in float64 from a subsample, then cast to the data's dtype.
    """
    from sklearn.cluster import kmeans_plusplus

    sub = np.asarray(x[:n_subsample], dtype=np.float64)
    means, _ = kmeans_plusplus(sub, n_components, random_state=seed)
    covariance = np.cov(sub, rowvar=False) + 1e-6 * np.eye(x.shape[1])
    precision = np.linalg.inv(covariance)
    precision = 0.5 * (precision + precision.T)
    weights = np.full(n_components, 1.0 / n_components)
    precisions = np.broadcast_to(precision, (n_components,) + precision.shape).copy()
    return tuple(np.asarray(a, dtype=x.dtype) for a in (weights, means, precisions))


# --------------------------------------------------------------------------- environment


def environment() -> dict:
    import jax
    import sklearn
    from threadpoolctl import threadpool_info

    pools = [
        {k: info.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads",
                                  "threading_layer", "architecture")}
        for info in threadpool_info()
    ]
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "sklearn": sklearn.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "openblas_env": {k: v for k, v in sorted(os.environ.items())
                         if k.startswith("OPENBLAS")},
        "threadpools": pools,
    }


def print_environment(env: dict) -> None:
    print(f"python {env['python']}, numpy {env['numpy']}, jax {env['jax']} "
          f"(backend {env['jax_backend']}), scikit-learn {env['sklearn']}, "
          f"{env['cpu_count']} CPU(s), {env['machine']}")
    if env["openblas_env"]:
        print("OpenBLAS environment variables set: "
              + ", ".join(f"{k}={v}" for k, v in env["openblas_env"].items()))
    else:
        print("OpenBLAS environment variables: none set")
    for pool in env["threadpools"]:
        print("  threadpool: " + ", ".join(f"{k}={v}" for k, v in pool.items()))


# --------------------------------------------------------------------------- child process


def _timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def measure(args) -> dict:
    dtype = args.child
    import jax

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    ensure_importable()
    import jax.numpy as jnp
    from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
    from sklearn.mixture import GaussianMixture

    from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
    from numpyro_gmm.mixture.params import precisions_cholesky_from_precisions

    warnings.filterwarnings("ignore", category=SkConvergenceWarning)
    warnings.filterwarnings("ignore", message=".*did not converge.*")

    n, d, k = args.n, args.d, args.k
    x = make_data(n, d, k, dtype, seed=args.seed, mean_scale=args.mean_scale)
    weights, means, precisions = initial_parameters(x, k, seed=args.seed)
    log = sys.stderr

    # ---- scikit-learn
    def sk_fit(max_iter):
        # verbose=2 makes scikit-learn print the wall time of every iteration; they are
        # parsed to get a per-iteration median that is robust to occasional stalls.
        gm = GaussianMixture(
            n_components=k, covariance_type="full", tol=0.0, reg_covar=args.reg_covar,
            max_iter=max_iter, init_params="random_from_data", random_state=args.seed,
            weights_init=weights, means_init=means, precisions_init=precisions,
            verbose=2, verbose_interval=1,
        )
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            gm.fit(x)
        lapses = [float(v) for v in re.findall(r"Iteration \d+\s+time lapse ([0-9.eE+-]+)s",
                                                   buffer.getvalue())]
        return gm, lapses

    sk_times, sk_lapses = {}, []
    gm = None
    for max_iter in (1, args.sk_iters):
        best = np.inf
        for _ in range(args.sk_repeats):
            elapsed, (fitted, lapses) = _timed(lambda m=max_iter: sk_fit(m))
            best = min(best, elapsed)
            if max_iter == args.sk_iters:
                gm = fitted
                # the first lapse also covers the initialization: keep iterations 2..T
                sk_lapses.append(lapses[1:])
        sk_times[max_iter] = best
        print(f"[{dtype}] sklearn max_iter={max_iter}: {best:.3f} s", file=log)
    sk_iter_times = np.concatenate([np.asarray(v, dtype=float) for v in sk_lapses])
    sk_median = float(np.median(sk_iter_times)) if sk_iter_times.size else float("nan")
    print(f"[{dtype}] sklearn per-iteration times (s): "
          + " ".join(f"{t:.3f}" for t in sk_iter_times), file=log)
    sk_dtype = str(gm.means_.dtype)
    # Subnormal responsibilities slow scikit-learn's NumPy/BLAS arithmetic down a lot (XLA
    # flushes them to zero); report how many the final responsibilities hold.
    resp = gm.predict_proba(x)
    subnormal = float(np.mean((resp > 0) & (resp < np.finfo(resp.dtype).tiny)))
    del resp
    sk_per_iter = (sk_times[args.sk_iters] - sk_times[1]) / (args.sk_iters - 1)

    # ---- numpyro_gmm
    xj = jnp.asarray(x)
    initial = InitialValues(
        jnp.asarray(weights), jnp.asarray(means),
        precisions_cholesky_from_precisions(jnp.asarray(precisions), "full"),
    )

    def jax_fit(max_iter):
        return fit_gaussian_mixture(
            xj, k, covariance_type="full", rng_key=args.seed, num_restarts=1,
            init_params="k-means++", initial=initial, max_iter=max_iter, tol=0.0,
            reg_covar=args.reg_covar, chunk_size=args.chunk_size,
        )

    jax_first, jax_times, result = {}, {}, None
    for max_iter in (1, args.iters):
        jax_first[max_iter], fitted = _timed(lambda m=max_iter: jax_fit(m))
        best = np.inf
        for _ in range(args.repeats):
            elapsed, fitted = _timed(lambda m=max_iter: jax_fit(m))
            best = min(best, elapsed)
        jax_times[max_iter] = best
        if max_iter == args.iters:
            result = fitted
        print(f"[{dtype}] numpyro_gmm max_iter={max_iter}: first call "
              f"{jax_first[max_iter]:.3f} s, then {best:.3f} s", file=log)
    jax_dtype = str(np.asarray(result.params.means).dtype)
    jax_per_iter = (jax_times[args.iters] - jax_times[1]) / (args.iters - 1)
    compile_s = jax_first[args.iters] - jax_times[args.iters]

    # ---- same computation?
    common = min(args.sk_iters, args.iters)
    sk_lb = np.asarray(gm.lower_bounds_[:common], dtype=np.float64)
    jax_lb = result.best_trace()[:common]
    rel_diff = np.abs(jax_lb - sk_lb) / np.maximum(np.abs(sk_lb), np.finfo(float).tiny)

    return {
        "dtype": dtype,
        "n": n, "d": d, "k": k,
        "sklearn_iters": args.sk_iters,
        "numpyro_gmm_iters": args.iters,
        "numpyro_gmm_n_iter": result.n_iter,
        "sklearn_n_iter": int(gm.n_iter_),
        "mean_scale": args.mean_scale,
        "sklearn_compute_dtype": sk_dtype,
        "sklearn_subnormal_responsibility_fraction": subnormal,
        "numpyro_gmm_compute_dtype": jax_dtype,
        "sklearn_fit_s": sk_times,
        "numpyro_gmm_fit_s": jax_times,
        "numpyro_gmm_first_call_s": jax_first,
        "sklearn_s_per_iter": sk_per_iter,
        "sklearn_median_s_per_iter": sk_median,
        "sklearn_iteration_times_s": sk_iter_times.tolist(),
        "numpyro_gmm_s_per_iter": jax_per_iter,
        "speedup": sk_per_iter / jax_per_iter,
        "speedup_median": sk_median / jax_per_iter,
        "compile_s": compile_s,
        "common_iters": common,
        "max_rel_diff_lower_bounds": float(rel_diff.max()),
        "sklearn_lower_bounds": sk_lb.tolist(),
        "numpyro_gmm_lower_bounds": jax_lb.tolist(),
        "chunk_size": args.chunk_size,
        "environment": environment(),
    }


# --------------------------------------------------------------------------- driver


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="number of samples")
    parser.add_argument("--d", type=int, default=16, help="number of features")
    parser.add_argument("--k", type=int, default=16, help="number of components")
    parser.add_argument("--iters", type=int, default=20,
                        help="EM iterations of the timed numpyro_gmm fit")
    parser.add_argument("--sk-iters", type=int, default=10,
                        help="EM iterations of the timed scikit-learn fit")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed numpyro_gmm calls per setting (the minimum is kept)")
    parser.add_argument("--sk-repeats", type=int, default=1,
                        help="timed scikit-learn fits per setting (the minimum is kept)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="rows per E-step chunk for numpyro_gmm (default: the engine's)")
    parser.add_argument("--reg-covar", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-scale", type=float, default=1.0,
                        help="spread of the true means (1: overlapping components, "
                             "4: well separated)")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--smoke", action="store_true",
                        help="tiny problem (N=2000, D=3, K=3, few iterations) for CI")
    parser.add_argument("--json", metavar="PATH", help="write the results to this JSON file")
    parser.add_argument("--child", choices=DTYPES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.d, args.k = 2000, 3, 3
        args.iters, args.sk_iters, args.repeats, args.sk_repeats = 5, 3, 1, 1
    if args.iters < 2 or args.sk_iters < 2:
        parser.error("--iters and --sk-iters must be at least 2")
    return args


def child_argv(args, dtype):
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", dtype,
            "--n", str(args.n), "--d", str(args.d), "--k", str(args.k),
            "--iters", str(args.iters), "--sk-iters", str(args.sk_iters),
            "--repeats", str(args.repeats), "--sk-repeats", str(args.sk_repeats),
            "--reg-covar", repr(args.reg_covar), "--seed", str(args.seed),
            "--mean-scale", repr(args.mean_scale)]
    if args.chunk_size is not None:
        argv += ["--chunk-size", str(args.chunk_size)]
    return argv


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return emit_child_result(measure(args))
    try:
        results = [run_child(child_argv(args, dtype), dtype) for dtype in args.dtypes]
    except ChildFailed as failure:
        print(failure, file=sys.stderr)
        return failure.returncode

    env = results[0]["environment"]
    print()
    print_environment(env)
    first = results[0]
    print(f"\nEM time per iteration, full covariance, N={first['n']}, D={first['d']}, "
          f"K={first['k']}, mean scale {first['mean_scale']}; "
          f"sklearn {first['sklearn_iters']} iterations, numpyro_gmm "
          f"{first['numpyro_gmm_iters']} iterations, tol=0, same initial parameters")
    header = (f"{'dtype':<8} {'sklearn s/iter':>15} {'(median)':>9} "
              f"{'numpyro_gmm s/iter':>19} {'speed-up':>9} {'(median)':>9} "
              f"{'compile s':>10} {'max rel diff':>13}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['dtype']:<8} {r['sklearn_s_per_iter']:>15.4g} "
              f"{r['sklearn_median_s_per_iter']:>9.4g} "
              f"{r['numpyro_gmm_s_per_iter']:>19.4g} {r['speedup']:>8.1f}x "
              f"{r['speedup_median']:>8.1f}x "
              f"{r['compile_s']:>10.2f} {r['max_rel_diff_lower_bounds']:>13.2e}")
    print("(s/iter: (t(T) - t(1)) / (T - 1) over whole fits; (median): median of "
          "scikit-learn's own per-iteration times, iterations 2..T, and the speed-up it gives)")
    for r in results:
        if r["sklearn_compute_dtype"] != r["dtype"] or r["numpyro_gmm_compute_dtype"] != r["dtype"]:
            print(f"warning: {r['dtype']} run computed in sklearn "
                  f"{r['sklearn_compute_dtype']} / numpyro_gmm {r['numpyro_gmm_compute_dtype']}")
    print("(max rel diff: largest relative difference of the per-iteration lower bounds "
          "over the common iterations)")
    for r in results:
        if r["sklearn_subnormal_responsibility_fraction"] > 0:
            share = 100 * r["sklearn_subnormal_responsibility_fraction"]
            print(f"note: {r['dtype']}: {share:.2g}% "
                  "of scikit-learn's final responsibilities are subnormal numbers, which slow "
                  "its arithmetic down")

    if args.json:
        payload = {
            "benchmark": "em_speed",
            "date": time.strftime("%Y-%m-%d"),
            "environment": env,
            "results": [{k: v for k, v in r.items() if k != "environment"} for r in results],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
