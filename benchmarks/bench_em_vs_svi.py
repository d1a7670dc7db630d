"""MAP of NumPyro mixture models: numpyro_gmm's EM against SVI + AutoDelta, same start.

For each case, EM runs from given initial values to convergence (tol 1e-10 on the per-sample
log joint); SVI with an ``AutoDelta`` guide and Adam starts from the same values and runs in
blocks of steps until its log joint reaches EM's (within ``--gap`` per sample) or
``--max-steps``. Both are timed after a warm-up run that compiles them; the table gives the
time of each to the same objective and their ratio.

    .venv/bin/python benchmarks/bench_em_vs_svi.py [--smoke] [--json PATH]
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import optax  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO, init_to_value  # noqa: E402
from numpyro.infer.autoguide import AutoDelta  # noqa: E402
from numpyro.infer.util import log_density  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpyro_gmm as ngm  # noqa: E402
from numpyro_gmm.datasets import load_example  # noqa: E402


def lognormal_scale_model(n_components):
    """A user-written style-A model with non-conjugate (LogNormal) scales."""

    def model(x):
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.full(n_components, 2.0)))
        with numpyro.plate("components", n_components):
            locs = numpyro.sample("locs", dist.Normal(20.0, 10.0))
            scales = numpyro.sample("scales", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales)),
                obs=x,
            )

    return model


def cases(large_n: int = 50000):
    """The benchmark's problems: (name, model, data, initial values)."""
    faithful, _ = load_example("faithful")
    galaxies = load_example("galaxies")[0][:, 0] / 1000.0
    quantiles = np.quantile(galaxies, [0.1, 0.5, 0.9])
    yield (
        "faithful, builder model, full, K=2 (closed form)",
        ngm.models.gaussian_mixture(2, "full"),
        faithful,
        {
            "weights": np.full(2, 0.5),
            "locs": faithful[[0, 1]],
            "covariances": np.broadcast_to(np.cov(faithful.T), (2, 2, 2)).copy(),
        },
    )
    yield (
        "galaxies, LogNormal scales, K=3 (generalized EM)",
        lognormal_scale_model(3),
        galaxies,
        {"weights": np.full(3, 1 / 3), "locs": quantiles, "scales": np.ones(3)},
    )
    rng = np.random.default_rng(0)
    sizes = (2 * large_n // 5, 2 * large_n // 5, large_n // 5)
    large = np.concatenate(
        [rng.normal(10, 1, sizes[0]), rng.normal(20, 2, sizes[1]), rng.normal(30, 1.5, sizes[2])]
    )
    yield (
        f"synthetic N={large.size}, LogNormal scales, K=3 (generalized EM)",
        lognormal_scale_model(3),
        large,
        {
            "weights": np.full(3, 1 / 3),
            "locs": np.quantile(large, [0.1, 0.5, 0.9]),
            "scales": np.ones(3),
        },
    )


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_em(model, x, initial):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ngm.fit(
            model,
            x,
            num_restarts=1,
            max_iter=5000,
            tol=1e-10,
            initial_values=initial,
            reg_covar=1e-12,
        )


class SVIRunner:
    """SVI + AutoDelta from ``initial``; compiled once, then timed from a fresh state."""

    def __init__(self, model, x, initial, *, block, learning_rate):
        self.model, self.x = model, x
        self.guide = AutoDelta(model, init_loc_fn=init_to_value(values=initial))
        self.svi = SVI(model, self.guide, optax.adam(learning_rate), Trace_ELBO())
        self.block = block
        self.advance = jax.jit(
            lambda state: jax.lax.fori_loop(0, block, lambda _, s: self.svi.update(s, x)[0], state)
        )
        self.log_joint = jax.jit(lambda params: log_density(model, (x,), {}, params)[0])
        self.run(-np.inf, max_steps=block)  # compile

    def run(self, target, *, max_steps):
        """Adam steps in blocks until the log joint reaches ``target``; (steps, value)."""
        state = self.svi.init(jax.random.key(0), self.x)
        steps, value = 0, -np.inf
        while steps < max_steps:
            state = self.advance(state)
            steps += self.block
            value = float(self.log_joint(self.guide.median(self.svi.get_params(state))))
            if value >= target:
                break
        return steps, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="few steps, for CI")
    parser.add_argument(
        "--gap",
        type=float,
        default=1e-5,
        help="per-sample log-joint gap counted as reaching EM's optimum",
    )
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--block", type=int, default=250)
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:
        args.max_steps, args.block = 500, 250
    rows = []
    for name, model, x, initial in cases(2000 if args.smoke else 50000):
        xj = jnp.asarray(x)
        run_em(model, x, initial)  # compile
        em_seconds, result = timed(lambda: run_em(model, x, initial))  # noqa: B023
        target = result.objective - args.gap * len(x)
        runner = SVIRunner(model, xj, initial, block=args.block, learning_rate=args.learning_rate)
        svi_seconds, (steps, value) = timed(lambda: runner.run(target, max_steps=args.max_steps))  # noqa: B023
        rows.append(
            {
                "case": name,
                "em_seconds": em_seconds,
                "em_objective": result.objective,
                "em_iterations": int(result.restarts["n_iter"][0]),
                "svi_seconds": svi_seconds,
                "svi_steps": steps,
                "svi_objective": value,
                "svi_reached": value >= target,
                "ratio": svi_seconds / em_seconds,
            }
        )
    print(
        f"{'case':<52} {'EM s':>7} {'EM it':>6} {'SVI s':>7} {'SVI steps':>9} "
        f"{'reached':>7} {'SVI/EM':>7}"
    )
    for r in rows:
        print(
            f"{r['case']:<52} {r['em_seconds']:>7.3f} {r['em_iterations']:>6d} "
            f"{r['svi_seconds']:>7.3f} {r['svi_steps']:>9d} {str(r['svi_reached']):>7} "
            f"{r['ratio']:>6.1f}x"
        )
    print(
        f"(SVI + AutoDelta, Adam lr {args.learning_rate}, until its log joint is within "
        f"{args.gap} per sample of EM's; float64; compile excluded)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2, default=float)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
