"""EM at scale: seconds per pass and peak memory at N = 10,000,000, against scikit-learn, and
data-parallel correctness on 1, 2, 4 and 8 simulated devices.

Three measurements, each in its own child process:

1. **numpyro_gmm** (float32, and float64 with x64): the data (N, D) are generated in place
   (``bench_em_memory.make_data``, 64-byte aligned, so JAX aliases them), an EM fit with full
   covariances runs ``--iters`` iterations from fixed initial parameters (compilation
   included), then the jitted EM step alone is timed over ``--iters`` calls: that is the
   *seconds per pass*. Peak memory is the process's high-water RSS above its baseline
   (the RSS after importing JAX), as a multiple of the data size; the target is the data plus
   ``O(chunk * K * D)``.
2. **scikit-learn** ``GaussianMixture`` (float64) on the same rows from the same initial
   parameters (``weights_init``, ``means_init``, ``precisions_init``; ``init_params=
   "random_from_data"`` so no k-means runs on the full data): ``max_iter=1`` and
   ``max_iter=--iters`` runs, the difference of their times divided by the difference of
   iterations is its seconds per iteration. It runs at the largest N of ``--sklearn-n`` that
   succeeds (the list steps down after a failure, e.g. memory).
3. **Devices**: with ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` for n = 1, 2, 4, 8,
   the same EM fit (``--device-n`` rows, from the same initial parameters) with the rows
   sharded over n devices; the largest difference of the fitted means from the one-device fit.
   The simulated devices share this machine's cores: the table shows correctness, not speed-up.

Usage::

    python benchmarks/bench_scale.py                 # N=10,000,000, D=16, K=16
    python benchmarks/bench_scale.py --smoke         # tiny sizes, seconds
    python benchmarks/bench_scale.py --json benchmarks/results_scale.json
"""

import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_em_memory import make_data, peak_mib, reset_peak, rss_mib
from harness import (
    ChildFailed,
    emit_child_result,
    ensure_importable,
    finish,
    run_child,
    script_parser,
)

MIB = 1024 * 1024
DEVICE_COUNTS = (1, 2, 4, 8)


def initial_parameters(n_features: int, n_components: int, seed: int) -> dict:
    """Fixed initial parameters shared by every run: K rows of the data as means, unit
    covariances, equal weights."""
    rows = make_data(4 * 4096, n_features, n_components, "float64", seed=seed, aligned=False)
    chosen = np.random.default_rng(seed).choice(rows.shape[0], n_components, replace=False)
    return {
        "weights": np.full(n_components, 1.0 / n_components),
        "means": rows[chosen],
        "precisions_cholesky": np.tile(np.eye(n_features), (n_components, 1, 1)),
    }


def _memory_fields(baseline: float, data_mib: float, can_reset: bool) -> dict:
    peak = peak_mib()
    return {
        "data_mib": data_mib,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak,
        "peak_above_baseline_mib": peak - baseline,
        "extra_over_data_mib": peak - baseline - data_mib,
        "ratio": (peak - baseline) / data_mib,
        "peak_reset_supported": can_reset,
    }


# --------------------------------------------------------------------------- children


def child_numpyro(args) -> dict:
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    ensure_importable()
    import jax.numpy as jnp

    from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
    from numpyro_gmm.kernels import em
    from numpyro_gmm.mixture.chunking import default_chunk_size
    from numpyro_gmm.mixture.params import GMMParams
    from numpyro_gmm.validation import to_device

    jnp.zeros(1).block_until_ready()
    can_reset = reset_peak()
    baseline = rss_mib()
    init = dict(np.load(args.init))
    x = to_device(make_data(args.n, args.d, args.k, args.dtype, seed=args.seed))
    data_mib = x.nbytes / MIB
    initial = InitialValues(**{key: np.asarray(v, args.dtype) for key, v in init.items()})
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_gaussian_mixture(x, args.k, initial=initial, max_iter=args.iters, tol=0.0)
    fit_seconds = time.perf_counter() - started
    chunk_size = default_chunk_size(args.n, args.k, args.d)
    step = jax.jit(em.build_kernel("full", jnp.asarray(1e-6, x.dtype), chunk_size))
    state = em.init(GMMParams(*(jnp.asarray(v) for v in initial)))
    key = jax.random.key(0)
    state, info = step(key, state, x)  # compile
    jax.block_until_ready(info.objective)
    seconds = []
    for _ in range(args.iters):
        started = time.perf_counter()
        state, info = step(key, state, x)
        jax.block_until_ready(info.objective)
        seconds.append(time.perf_counter() - started)
    np.savez(args.out, means=np.asarray(fit.params.means))
    return {
        "library": "numpyro_gmm", "dtype": args.dtype, "n": args.n, "d": args.d, "k": args.k,
        "chunk_size": chunk_size, "iters": args.iters,
        "fit_seconds_incl_compile": fit_seconds,
        "seconds_per_pass": float(np.median(seconds)), "pass_seconds": seconds,
        "chunk_temporaries_mib": chunk_size * args.k * args.d * x.dtype.itemsize / MIB,
        **_memory_fields(baseline, data_mib, can_reset),
        "versions": {"jax": jax.__version__, "backend": jax.default_backend()},
    }


def child_sklearn(args) -> dict:
    import sklearn
    from sklearn.mixture import GaussianMixture

    warnings.simplefilter("ignore")
    can_reset = reset_peak()
    baseline = rss_mib()
    init = dict(np.load(args.init))
    x = make_data(args.n, args.d, args.k, "float64", seed=args.seed, aligned=False)
    data_mib = x.nbytes / MIB
    precisions = init["precisions_cholesky"] @ np.swapaxes(init["precisions_cholesky"], -1, -2)
    times = {}
    for max_iter in sorted({1, args.iters}):
        model = GaussianMixture(
            args.k, covariance_type="full", max_iter=max_iter, tol=0.0,
            init_params="random_from_data", weights_init=init["weights"],
            means_init=init["means"], precisions_init=precisions, random_state=0,
        )
        started = time.perf_counter()
        model.fit(x)
        times[max_iter] = time.perf_counter() - started
    per_iteration = (
        (times[args.iters] - times[1]) / (args.iters - 1) if args.iters > 1 else times[1]
    )
    np.savez(args.out, means=model.means_)
    return {
        "library": "sklearn", "dtype": "float64", "n": args.n, "d": args.d, "k": args.k,
        "iters": args.iters, "fit_seconds": times, "seconds_per_iteration": per_iteration,
        **_memory_fields(baseline, data_mib, can_reset),
        "versions": {"sklearn": sklearn.__version__},
    }


def child_devices(args) -> dict:
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    ensure_importable()
    from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
    from numpyro_gmm.parallel import data_mesh

    init = dict(np.load(args.init))
    x = make_data(args.n, args.d, args.k, args.dtype, seed=args.seed, aligned=False)
    initial = InitialValues(**{key: np.asarray(v, args.dtype) for key, v in init.items()})
    mesh = data_mesh(args.devices)
    common = dict(initial=initial, max_iter=args.iters, tol=0.0, mesh=mesh)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gaussian_mixture(x, args.k, **common)  # compile
        started = time.perf_counter()
        fit = fit_gaussian_mixture(x, args.k, **common)
        seconds = time.perf_counter() - started
    return {
        "devices": args.devices, "dtype": args.dtype, "n": args.n,
        "seconds_per_iteration": seconds / args.iters,
        "objective": fit.objective, "means": fit.params.means.tolist(),
    }


# --------------------------------------------------------------------------- driver


def parse_args(argv=None):
    parser = script_parser(__doc__, "tiny sizes (seconds), for CI")
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--iters", type=int, default=3, help="EM iterations timed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--sklearn-n", type=int, nargs="*",
                        default=[10_000_000, 5_000_000, 2_000_000, 1_000_000],
                        help="sizes tried for scikit-learn, largest first (none: skip)")
    parser.add_argument("--device-n", type=int, default=200_003,
                        help="rows for the device-count check (not a multiple of 8)")
    parser.add_argument("--device-iters", type=int, default=10)
    parser.add_argument("--device-counts", type=int, nargs="+", default=list(DEVICE_COUNTS))
    parser.add_argument("--device-dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--child", choices=("numpyro", "sklearn", "devices"), default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--init", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.d, args.k, args.iters = 20_000, 4, 3, 2
        args.sklearn_n, args.device_n, args.device_iters = [20_000], 2_003, 3
        args.dtypes, args.device_counts, args.device_dtypes = ["float32"], [1, 8], ["float64"]
    return args


def _child_argv(args, child, n, workdir, label, dtype="float32", devices=1, iters=None):
    return [
        sys.executable, str(Path(__file__).resolve()), "--child", child, "--n", str(n),
        "--d", str(args.d), "--k", str(args.k), "--iters", str(iters or args.iters),
        "--seed", str(args.seed), "--dtype", dtype, "--devices", str(devices),
        "--init", str(workdir / "init.npz"), "--out", str(workdir / f"{label}.npz"),
    ]


def _relative_difference(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))


def run(args) -> dict:
    report = {"benchmark": "scale", "date": time.strftime("%Y-%m-%d"), "n": args.n,
              "d": args.d, "k": args.k, "iters": args.iters,
              "platform": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                           "machine": platform.machine()},
              "note": "CPU shared with other jobs during the run; timings are noisy."}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        np.savez(workdir / "init.npz", **initial_parameters(args.d, args.k, args.seed))
        report["numpyro_gmm"] = [
            run_child(_child_argv(args, "numpyro", args.n, workdir, f"ngm-{dtype}", dtype),
                      f"numpyro_gmm {dtype}")
            for dtype in args.dtypes
        ]
        report["sklearn"] = None
        for n in args.sklearn_n:
            try:
                sk = run_child(_child_argv(args, "sklearn", n, workdir, "sklearn"), f"sklearn {n}")
            except ChildFailed as failure:
                print(f"scikit-learn at N={n}: {failure}; stepping down", file=sys.stderr)
                continue
            report["sklearn"] = sk
            if n == args.n:
                ours = np.load(workdir / f"ngm-{args.dtypes[0]}.npz")["means"]
                theirs = np.load(workdir / "sklearn.npz")["means"]
                sk["means_difference_vs_numpyro_gmm"] = _relative_difference(ours, theirs)
            break
        env = dict(os.environ)
        report["devices"] = []
        for dtype in args.device_dtypes:
            rows = []
            for count in args.device_counts:
                os.environ.update(
                    XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
                    JAX_PLATFORMS="cpu",
                )
                try:
                    rows.append(run_child(
                        _child_argv(args, "devices", args.device_n, workdir, "dev", dtype,
                                    count, args.device_iters),
                        f"{count} devices",
                    ))
                finally:
                    os.environ.clear()
                    os.environ.update(env)
            reference = rows[0]
            for row in rows:
                row["means_difference_vs_1_device"] = _relative_difference(
                    row["means"], reference["means"]
                )
                row["objective_difference_vs_1_device"] = abs(
                    row["objective"] - reference["objective"]) / abs(reference["objective"])
            for row in rows:
                del row["means"]
            report["devices"] += rows
    return report


def print_table(report: dict) -> None:
    print(f"\nEM, full covariances, N={report['n']:,}, D={report['d']}, K={report['k']} "
          f"({report['note']})")
    print(f"{'library':<12} {'dtype':<8} {'N':>11} {'s/pass':>8} {'data MiB':>9} "
          f"{'peak-base MiB':>14} {'ratio':>6} {'extra MiB':>10}")
    sk = report["sklearn"]
    for r in report["numpyro_gmm"] + ([sk] if sk else []):
        per = r.get("seconds_per_pass", r.get("seconds_per_iteration"))
        print(f"{r['library']:<12} {r['dtype']:<8} {r['n']:>11,} {per:>8.2f} "
              f"{r['data_mib']:>9.0f} {r['peak_above_baseline_mib']:>14.0f} {r['ratio']:>6.2f} "
              f"{r['extra_over_data_mib']:>10.0f}")
    if sk:
        ours = report["numpyro_gmm"][0]
        if sk["n"] == ours["n"]:
            print(f"scikit-learn s/iteration / numpyro_gmm {ours['dtype']} s/pass: "
                  f"{sk['seconds_per_iteration'] / ours['seconds_per_pass']:.2f}x; means differ "
                  f"by {sk.get('means_difference_vs_numpyro_gmm', float('nan')):.2e} (relative) "
                  f"after {report['iters']} iterations")
    print("\nData-parallel correctness (simulated CPU devices sharing the same cores: "
          "correctness, not speed-up)")
    print(f"{'devices':>8} {'dtype':<8} {'N':>9} {'s/iter':>8} {'max |d means|':>14} "
          f"{'d objective':>12}")
    for r in report["devices"]:
        print(f"{r['devices']:>8} {r['dtype']:<8} {r['n']:>9,} {r['seconds_per_iteration']:>8.3f} "
              f"{r['means_difference_vs_1_device']:>14.2e} "
              f"{r['objective_difference_vs_1_device']:>12.2e}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child = {"numpyro": child_numpyro, "sklearn": child_sklearn, "devices": child_devices}
        return emit_child_result(child[args.child](args))
    return finish(run(args), args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
