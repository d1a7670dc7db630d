"""Test helpers: synthetic data, dtype tolerances and the scikit-learn reference."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]


def make_mixture_data(rng, *, n_samples, n_features, n_components, separation=5.0):
    """Sample a Gaussian mixture with random SPD covariances; returns (x, labels, means)."""
    means = rng.normal(scale=separation, size=(n_components, n_features))
    labels = rng.integers(0, n_components, n_samples)
    factors = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    factors += np.eye(n_features) * 0.5
    noise = np.einsum("nde,ne->nd", factors[labels], rng.normal(size=(n_samples, n_features)))
    return means[labels] + noise, labels, means


def match_components(estimate, reference):
    """Permutation ``p`` with ``estimate[p]`` closest to ``reference`` (Hungarian matching)."""
    cost = np.linalg.norm(reference[:, None, :] - estimate[None, :, :], axis=-1)
    _, columns = linear_sum_assignment(cost)
    return columns


def relative_error(actual, expected):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-12)))


def run_benchmark_smoke(script: str, tmp_path: Path) -> tuple[str, object]:
    """Run ``benchmarks/<script> --smoke`` and return its stdout and its JSON report."""
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return completed.stdout, json.loads(out.read_text())


def lognormal_scales_model(y):
    """A 1-D, K = 3 NumPyro mixture as users write it: LogNormal scales, so not conjugate
    (generalized EM)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(3)))
    with numpyro.plate("components", 3):
        loc = numpyro.sample("loc", dist.Normal(0.0, 10.0))
        scale = numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", y.shape[0]):
        numpyro.sample(
            "y", dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(loc, scale)), obs=y
        )


def zscore(x) -> np.ndarray:
    """Every column centred and scaled to unit variance (the benchmarks' standardization)."""
    x = np.asarray(x, float)
    return (x - x.mean(axis=0)) / x.std(axis=0)
