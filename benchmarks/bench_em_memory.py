"""Peak memory of an EM fit, relative to the size of the data.

Each (library, dtype) pair runs in its own subprocess. The child imports its library (and,
for numpyro_gmm, starts the JAX CPU backend), records its resident set size (RSS) as the
baseline, creates the data with NumPy, and fits a full-covariance Gaussian mixture with a
fixed number of EM iterations (``tol=0``). The reported ratio is

    (peak RSS of the process - baseline RSS) / (N * D * itemsize)

so it counts the data itself (1.0) plus everything the fit needs on top of it; the target
for numpyro_gmm is a ratio below 2. Peak RSS is the kernel's high-water mark (``VmHWM`` in
``/proc/self/status``); where the kernel allows it, the mark is reset between stages
(``/proc/self/clear_refs``) to attribute the peak to data generation, the copy of the NumPy
array to the JAX device, and the fit itself (first call, compilation included, and a second,
already compiled call).

Usage::

    python benchmarks/bench_em_memory.py                  # N=2,000,000, D=16, K=16
    python benchmarks/bench_em_memory.py --smoke          # tiny sizes, for CI
    python benchmarks/bench_em_memory.py --json memory.json
"""

import argparse
import json
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from bench_em_speed import mixture_spec
from harness import ChildFailed, emit_child_result, ensure_importable, run_child

DTYPES = ("float64", "float32")
MIB = 1024 * 1024


# --------------------------------------------------------------------------- synthetic data


def aligned_empty(shape, dtype, alignment=64):
    """An uninitialized C-contiguous array whose data start on an ``alignment``-byte boundary.

    JAX's CPU client aliases such an array instead of copying it (numpy's own allocations
    are 16-byte aligned and get copied).
    """
    n_bytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = np.empty(n_bytes + alignment, np.uint8)
    offset = (-buffer.ctypes.data) % alignment
    return buffer[offset : offset + n_bytes].view(dtype).reshape(shape)


def make_data(n_samples, n_features, n_components, dtype, seed=0, mean_scale=1.0,
              block=4096, aligned=True):
    """Rows drawn from the synthetic mixture, filled in place block by block.

    The array is allocated once (64-byte aligned unless ``aligned=False``) and filled in
    small blocks, so the temporaries of the generation stay far below the size of the data.
    """
    weights, means, covariances = mixture_spec(n_features, n_components, seed, mean_scale)
    chol = np.linalg.cholesky(covariances)
    rng = np.random.default_rng(seed + 1)
    shape = (n_samples, n_features)
    x = aligned_empty(shape, dtype) if aligned else np.empty(shape, dtype=dtype)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        labels = rng.choice(n_components, size=stop - start, p=weights)
        z = rng.standard_normal((stop - start, n_features))
        x[start:stop] = means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return x


# --------------------------------------------------------------------------- memory probes


def _status_kib() -> dict:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0])
    return values


def rss_mib() -> float:
    return _status_kib()["VmRSS"] / 1024


def peak_mib() -> float:
    return _status_kib()["VmHWM"] / 1024


def reset_peak() -> bool:
    """Reset the high-water mark to the current RSS; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- child process


def measure(args) -> dict:
    library, dtype = args.child
    warnings.filterwarnings("ignore", message=".*did not converge.*")
    if library == "numpyro_gmm":
        import jax

        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        ensure_importable()
        import jax.numpy as jnp

        from numpyro_gmm.fitting import fit_gaussian_mixture

        jnp.zeros(1).block_until_ready()  # start the CPU backend before the baseline
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        warnings.filterwarnings("ignore", category=ConvergenceWarning)

    n, d, k = args.n, args.d, args.k
    data_mib = n * d * np.dtype(dtype).itemsize / MIB
    stages = {}
    can_reset = reset_peak()
    baseline = rss_mib()
    overall_peak = peak_mib() if can_reset else baseline

    def stage(name, fn):
        nonlocal overall_peak
        if can_reset:
            reset_peak()
        before = rss_mib()
        started = time.perf_counter()
        out = fn()
        elapsed = time.perf_counter() - started
        after, peak = rss_mib(), peak_mib()
        overall_peak = max(overall_peak, peak)
        stages[name] = {
            "rss_before_mib": before, "rss_after_mib": after,
            "peak_mib": peak if can_reset else None,
            "peak_above_start_mib": (peak - before) if can_reset else None,
            "seconds": elapsed,
        }
        print(f"[{library} {dtype}] {name}: RSS {before:.0f} -> {after:.0f} MiB"
              + (f", peak {peak:.0f} MiB" if can_reset else "") + f", {elapsed:.2f} s",
              file=sys.stderr)
        return out

    aligned = library == "numpyro_gmm" and args.transfer == "to_device"
    x = stage("create data", lambda: make_data(n, d, k, dtype, seed=args.seed,
                                                 mean_scale=args.mean_scale, aligned=aligned))
    if library == "numpyro_gmm":
        from numpyro_gmm.validation import to_device

        transfer = {"to_device": to_device, "device_put": jax.device_put,
                    "asarray": jnp.asarray}[args.transfer]
        xj = stage("device copy", lambda: transfer(x).block_until_ready())
        result_dtype = str(xj.dtype)

        def fit():
            return fit_gaussian_mixture(
                xj, k, covariance_type="full", rng_key=args.seed, num_restarts=1,
                init_params="random_from_data", max_iter=args.iters, tol=0.0,
                chunk_size=args.chunk_size,
            )

        result = stage("fit (first call, incl. compilation)", fit)
        stage("fit (second call)", fit)
        n_iter = result.n_iter
        chunk_size = args.chunk_size
        if chunk_size is None:
            from numpyro_gmm.mixture.chunking import default_chunk_size

            chunk_size = default_chunk_size(n, k, d)
    else:
        def fit():
            return GaussianMixture(
                n_components=k, covariance_type="full", max_iter=args.sk_iters, tol=0.0,
                init_params="random_from_data", random_state=args.seed,
            ).fit(x)

        gm = stage("fit", fit)
        result_dtype = str(gm.means_.dtype)
        n_iter = int(gm.n_iter_)
        chunk_size = None

    ru_maxrss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not can_reset:
        overall_peak = max(peak_mib(), ru_maxrss_mib)
    return {
        "library": library, "dtype": dtype, "n": n, "d": d, "k": k,
        "mean_scale": args.mean_scale,
        "transfer": args.transfer if library == "numpyro_gmm" else None,
        "compute_dtype": result_dtype, "n_iter": n_iter, "chunk_size": chunk_size,
        "data_mib": data_mib,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": overall_peak,
        "ru_maxrss_mib": ru_maxrss_mib,
        "peak_above_baseline_mib": overall_peak - baseline,
        "ratio": (overall_peak - baseline) / data_mib,
        "warm_ratio": (
            1.0 + stages["fit (second call)"]["peak_above_start_mib"] / data_mib
            if can_reset and "fit (second call)" in stages else None
        ),
        "peak_reset_supported": can_reset,
        "stages": stages,
        "platform": {"python": platform.python_version(), "numpy": np.__version__,
                     "cpu_count": os.cpu_count(), "machine": platform.machine()},
        "versions": _versions(library),
    }


def _versions(library):
    if library == "numpyro_gmm":
        import jax

        return {"jax": jax.__version__, "jax_backend": jax.default_backend()}
    import sklearn

    return {"sklearn": sklearn.__version__}


# --------------------------------------------------------------------------- driver


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000_000, help="number of samples")
    parser.add_argument("--d", type=int, default=16, help="number of features")
    parser.add_argument("--k", type=int, default=16, help="number of components")
    parser.add_argument("--iters", type=int, default=5, help="EM iterations (numpyro_gmm)")
    parser.add_argument("--sk-iters", type=int, default=2, help="EM iterations (scikit-learn)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="rows per E-step chunk for numpyro_gmm (default: the engine's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-scale", type=float, default=1.0,
                        help="spread of the true means (as in bench_em_speed)")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES),
                        help="dtypes for numpyro_gmm")
    parser.add_argument("--sklearn-dtypes", nargs="*", choices=DTYPES, default=list(DTYPES),
                        help="dtypes for the scikit-learn peer (none to skip it)")
    parser.add_argument("--transfer", choices=("to_device", "asarray", "device_put"),
                        default="to_device",
                        help="how the NumPy data reach JAX: numpyro_gmm's to_device on a "
                             "64-byte aligned array (aliased, no copy; what the "
                             "GaussianMixture facade uses), or a plain numpy array through "
                             "jnp.asarray(x) or jax.device_put(x) (one copy)")
    parser.add_argument("--target", type=float, default=2.0,
                        help="ratio that numpyro_gmm should stay below")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a numpyro_gmm ratio reaches --target")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny problem (N=20000, D=4, K=3) for CI; ratios are then "
                             "dominated by fixed costs and not meaningful")
    parser.add_argument("--json", metavar="PATH", help="write the results to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("LIBRARY", "DTYPE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.d, args.k, args.iters, args.sk_iters = 20_000, 4, 3, 2, 2
    return args


def child_argv(args, library, dtype):
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", library, dtype,
            "--n", str(args.n), "--d", str(args.d), "--k", str(args.k),
            "--iters", str(args.iters), "--sk-iters", str(args.sk_iters),
            "--seed", str(args.seed), "--mean-scale", repr(args.mean_scale),
            "--transfer", args.transfer]
    if args.chunk_size is not None:
        argv += ["--chunk-size", str(args.chunk_size)]
    return argv


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return emit_child_result(measure(args))
    runs = [("numpyro_gmm", dt) for dt in args.dtypes]
    runs += [("sklearn", dt) for dt in args.sklearn_dtypes]
    try:
        results = [
            run_child(child_argv(args, library, dtype), f"{library} {dtype}")
            for library, dtype in runs
        ]
    except ChildFailed as failure:
        print(failure, file=sys.stderr)
        return failure.returncode

    first = results[0]
    print(f"\nPeak memory of an EM fit, full covariance, N={first['n']}, D={first['d']}, "
          f"K={first['k']}, init random_from_data, tol=0, data to JAX by {args.transfer} "
          f"(numpyro_gmm {args.iters} iterations, scikit-learn {args.sk_iters})")
    header = (f"{'library':<12} {'dtype':<8} {'data MiB':>9} {'baseline MiB':>13} "
              f"{'peak-base MiB':>14} {'ratio':>6} {'device copy MiB':>16} "
              f"{'fit extra MiB':>14} {'2nd fit extra':>14} {'warm ratio':>11} {'fit s':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        st = r["stages"]
        copy = st.get("device copy")
        copy_mib = f"{copy['rss_after_mib'] - copy['rss_before_mib']:.0f}" if copy else "-"
        fit_key = "fit (first call, incl. compilation)" if copy else "fit"
        extra = st[fit_key]["peak_above_start_mib"]
        second = st.get("fit (second call)", {}).get("peak_above_start_mib")
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        warm = r.get("warm_ratio")
        warm_text = "-" if warm is None else f"{warm:.2f}"
        print(f"{r['library']:<12} {r['dtype']:<8} {r['data_mib']:>9.0f} "
              f"{r['baseline_rss_mib']:>13.0f} {r['peak_above_baseline_mib']:>14.0f} "
              f"{r['ratio']:>6.2f} {copy_mib:>16} {fmt(extra):>14} {fmt(second):>14} "
              f"{warm_text:>11} {st[fit_key]['seconds']:>7.1f}")
    print("(ratio = (peak RSS - baseline RSS) / data size, compilation included; 'fit extra' = "
          "peak during the fit above the RSS just before it; 'warm ratio' = (data + 2nd fit "
          "extra) / data: the data plus what an already compiled fit needs)")

    failed = [r for r in results
              if r["library"] == "numpyro_gmm" and r["ratio"] >= args.target]
    for r in failed:
        print(f"numpyro_gmm {r['dtype']}: ratio {r['ratio']:.2f} is above the target "
              f"{args.target}", file=sys.stderr)

    if args.json:
        payload = {"benchmark": "em_memory", "date": time.strftime("%Y-%m-%d"),
                   "target_ratio": args.target, "results": results}
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"results written to {args.json}")
    return 1 if (args.check and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
