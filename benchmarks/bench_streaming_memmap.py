"""Streaming EM on a memmap larger than the memory the fit uses.

A float32 ``np.memmap`` of ``--n`` rows (2 GiB by default) is written to a temporary file, then
a child process fits it with :func:`numpyro_gmm.streaming.fit_streaming` (one stepwise pass,
then ``--exact-passes`` exact passes; the pipeline's ``FitResult``, whose ``extras`` hold the
kind and the seconds of every pass) and reports its peak resident memory (``VmHWM``) above
its baseline (the RSS after importing JAX). The fit's memory is bounded by about one block of
rows plus ``O(chunk * K * D)``, whatever the file size: the memmap pages are released from the
process after each block (``madvise(MADV_DONTNEED)``), so the measured peak *is* the memory
cap the fit needs, and the file is several times larger. The file is deleted afterwards.

Usage::

    python benchmarks/bench_streaming_memmap.py                # 32M x 16 float32 (2 GiB)
    python benchmarks/bench_streaming_memmap.py --smoke        # tiny sizes, seconds
    python benchmarks/bench_streaming_memmap.py --json benchmarks/results_streaming_memmap.json
"""

import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_em_memory import peak_mib, reset_peak, rss_mib
from bench_em_speed import mixture_spec
from harness import emit_child_result, ensure_importable, finish, run_child, script_parser

MIB = 1024 * 1024


def write_memmap(path: Path, n_samples: int, n_features: int, n_components: int, seed: int,
                 block: int = 1 << 20) -> None:
    """Rows of the synthetic mixture written block by block (never all in memory)."""
    weights, means, covariances = mixture_spec(n_features, n_components, seed)
    factors = np.linalg.cholesky(covariances)
    out = np.memmap(path, np.float32, "w+", shape=(n_samples, n_features))
    rng = np.random.default_rng(seed + 1)
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        labels = rng.choice(n_components, size=stop - start, p=weights)
        rows = np.empty((stop - start, n_features))
        for k in range(n_components):
            members = labels == k
            noise = rng.standard_normal((int(members.sum()), n_features))
            rows[members] = means[k] + noise @ factors[k].T
        out[start:stop] = rows
    out.flush()
    del out


def _rss_breakdown_mib() -> dict:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) / 1024
    return values


def child(args) -> dict:
    import jax

    ensure_importable()
    import jax.numpy as jnp

    from numpyro_gmm.streaming import fit_streaming

    jnp.zeros(1).block_until_ready()
    can_reset = reset_peak()
    baseline = rss_mib()
    data = np.memmap(args.path, np.float32, "r").reshape(-1, args.d)
    file_mib = data.nbytes / MIB
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_streaming(
            data, args.k, method="stepwise", stepwise_passes=1, max_passes=args.exact_passes,
            block_size=args.block_size, init_rows=args.init_rows, progress=args.progress,
        )
    seconds = time.perf_counter() - started
    peak = peak_mib()
    return {
        "n": int(data.shape[0]), "d": args.d, "k": args.k, "block_size": args.block_size,
        "file_mib": file_mib, "baseline_rss_mib": baseline, "peak_rss_mib": peak,
        "peak_above_baseline_mib": peak - baseline,
        "file_over_peak": file_mib / (peak - baseline),
        "block_mib": args.block_size * args.d * 4 / MIB,
        "peak_reset_supported": can_reset,
        "rss_at_end_mib": _rss_breakdown_mib(),
        "seconds_total": seconds, "seconds_per_pass": result.extras["seconds_per_pass"],
        "pass_kinds": result.extras["pass_kinds"], "trace": result.best_trace().tolist(),
        "n_passes": result.n_iter, "objective_per_point": result.objective / result.n_samples,
        "versions": {"jax": jax.__version__, "backend": jax.default_backend()},
    }


def parse_args(argv=None):
    parser = script_parser(__doc__, "tiny file (seconds), for CI")
    parser.add_argument("--n", type=int, default=32 * 2**20, help="rows of the memmap")
    parser.add_argument("--d", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=65536)
    parser.add_argument("--init-rows", type=int, default=100_000)
    parser.add_argument("--exact-passes", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", type=float, default=30.0,
                        help="seconds between progress lines of the fit")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the memmap goes")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--path", default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.d, args.k, args.block_size, args.init_rows = 50_000, 4, 3, 4096, 8192
    return args


def run(args) -> dict:
    fd, name = tempfile.mkstemp(suffix=".f32", dir=args.dir)
    os.close(fd)
    path = Path(name)
    try:
        started = time.perf_counter()
        write_memmap(path, args.n, args.d, args.k, args.seed)
        write_seconds = time.perf_counter() - started
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--path", str(path),
                "--d", str(args.d), "--k", str(args.k), "--block-size", str(args.block_size),
                "--init-rows", str(args.init_rows), "--exact-passes", str(args.exact_passes),
                "--progress", str(args.progress)]
        result = run_child(argv, "streaming fit")
    finally:
        path.unlink(missing_ok=True)
    return {
        "benchmark": "streaming_memmap", "date": time.strftime("%Y-%m-%d"),
        "write_seconds": write_seconds, "result": result,
        "platform": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                     "machine": platform.machine()},
        "note": "CPU shared with other jobs during the run; timings are noisy.",
    }


def print_table(report: dict) -> None:
    r = report["result"]
    print(f"\nStreaming EM on a float32 memmap, N={r['n']:,}, D={r['d']}, K={r['k']}, "
          f"full covariances, blocks of {r['block_size']:,} rows ({report['note']})")
    print(f"{'file MiB':>9} {'peak-base MiB':>14} {'file/peak':>10} {'block MiB':>10} "
          f"{'passes':>20} {'s/pass':>18}")
    passes = "+".join(r["pass_kinds"])
    per_pass = ", ".join(f"{s:.1f}" for s in r["seconds_per_pass"])
    print(f"{r['file_mib']:>9.0f} {r['peak_above_baseline_mib']:>14.0f} "
          f"{r['file_over_peak']:>10.1f} {r['block_mib']:>10.1f} {passes:>20} {per_pass:>18}")
    print("(peak-base = the fit's peak resident memory above the process's RSS after importing "
          "JAX: the memory cap it needs; the memmap itself is larger by file/peak)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return emit_child_result(child(args))
    return finish(run(args), args.json, print_table)


if __name__ == "__main__":
    sys.exit(main())
