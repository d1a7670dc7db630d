"""Cost of one BigLearn-EM outer iteration relative to one plain EM iteration.

Both run through the same engine (``fit_gaussian_mixture``, one restart, ``tol=0``) on the same
data and initial parameters, full covariances, float32. Per-iteration time is differential,
``(t(T2) - t(T1)) / (T2 - T1)``, of whole fits timed on a second call (after compilation), so
fixed costs (initial and final passes, transfers) cancel. BigLearn-EM runs with its defaults
(``inner_steps=5``), with and without ``track_objective`` (the extra full-data pass that
reports the joint log-likelihood).

Data: the 25-component grid simulation (N=2000, D=2, K=25) and the Pendigits training set
(N=7494, D=16, K=12, min-max scaled).

Usage::

    python benchmarks/bench_biglearn_speed.py
    python benchmarks/bench_biglearn_speed.py --smoke --json speed.json
"""

import platform
import sys
import time
import warnings

import numpy as np
from harness import ensure_importable, finish, script_parser
from repro_biglearn_grid import sample_truth
from repro_biglearn_pendigits import load_pendigits


def _timed_fit(x, k, initial, iterations, kernel, options) -> float:
    from numpyro_gmm.fitting import fit_gaussian_mixture

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        result = fit_gaussian_mixture(
            x,
            k,
            rng_key=0,
            initial=initial,
            max_iter=iterations,
            tol=0.0,
            reg_covar=1e-6,
            kernel=kernel,
            kernel_options=options,
        )
        np.asarray(result.params.means)
        return time.perf_counter() - started


def per_iteration(x, k, initial, kernel, options, t1, t2, repeats) -> float:
    times = {}
    for iterations in (t1, t2):
        _timed_fit(x, k, initial, iterations, kernel, options)  # compile
        times[iterations] = min(
            _timed_fit(x, k, initial, iterations, kernel, options) for _ in range(repeats)
        )
    return max(times[t2] - times[t1], 0.0) / (t2 - t1)


def run(args) -> dict:
    ensure_importable()
    import jax
    import jax.numpy as jnp

    from numpyro_gmm.fitting import InitialValues

    rng = np.random.default_rng(0)
    x_pen = load_pendigits()[0]
    datasets = {
        "grid (N=2000, D=2, K=25)": (sample_truth(rng, 2000), 25),
        "pendigits (N=7494, D=16, K=12)": (x_pen, 12),
    }
    if args.smoke:
        datasets = {"grid (N=500, D=2, K=25)": (sample_truth(rng, 500), 25)}
    variants = {
        "EM": ("em", None),
        "BigLearn-EM, track_objective=True": ("biglearn_em", {"track_objective": True}),
        "BigLearn-EM, track_objective=False": ("biglearn_em", {"track_objective": False}),
    }
    rows = []
    for data_name, (data, k) in datasets.items():
        x = jnp.asarray(data, jnp.float32)
        d = x.shape[1]
        initial = InitialValues(
            weights=jnp.full((k,), 1.0 / k, jnp.float32),
            means=jnp.asarray(rng.standard_normal((k, d)), jnp.float32),
            precisions_cholesky=jnp.tile(jnp.eye(d, dtype=jnp.float32), (k, 1, 1)),
        )
        seconds = {
            name: per_iteration(x, k, initial, kernel, options, args.t1, args.t2, args.repeats)
            for name, (kernel, options) in variants.items()
        }
        for name, value in seconds.items():
            rows.append(
                dict(
                    data=data_name,
                    method=name,
                    ms_per_iteration=1e3 * value,
                    ratio_to_em=value / seconds["EM"] if seconds["EM"] > 0 else float("nan"),
                )
            )
        print(f"{data_name}: done", file=sys.stderr)
    return dict(
        benchmark="biglearn_speed",
        settings=vars(args),
        rows=rows,
        device=str(jax.devices()[0]),
        machine=platform.platform(),
        versions={"python": platform.python_version(), "jax": jax.__version__},
        date=time.strftime("%Y-%m-%d"),
    )


def print_table(report: dict) -> None:
    print("BigLearn-EM time per outer iteration (inner_steps=5) vs one EM iteration")
    print(f"{'data':<32}{'method':<38}{'ms/iter':>9}{'ratio to EM':>13}")
    for row in report["rows"]:
        print(
            f"{row['data']:<32}{row['method']:<38}{row['ms_per_iteration']:>9.3f}"
            f"{row['ratio_to_em']:>13.2f}"
        )


def main(argv=None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--t1", type=int, default=20)
    parser.add_argument("--t2", type=int, default=220)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.smoke:
        args.t1, args.t2, args.repeats = 2, 6, 1
    return finish(run(args), args.json, print_table)


if __name__ == "__main__":
    raise SystemExit(main())
