"""Compile latency: padded programs give the unpadded results, sweeps and cross-validation
reuse programs, run-time ``max_iter``, and the time breakdown of ``verbose``."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_gmm import fitting, timing
from numpyro_gmm.compilation_cache import ENV_VAR
from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances

from helpers import lognormal_scales_model, make_mixture_data


def _unpadded(monkeypatch):
    monkeypatch.setattr(fitting, "component_capacity", lambda n_components: n_components)
    monkeypatch.setattr(fitting, "row_capacity", lambda n_samples: n_samples)


def _data(n_samples=150, n_features=2, seed=0):
    x, _, _ = make_mixture_data(
        np.random.default_rng(seed), n_samples=n_samples, n_features=n_features, n_components=3
    )
    return x


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_a_padded_fit_equals_the_unpadded_one(monkeypatch, dtype, covariance_type, init_params):
    x = jnp.asarray(_data(), dtype)  # 150 rows, 3 components: compiled as 256 rows, 8 components
    assert fitting.row_capacity(150) == 256 and fitting.component_capacity(3) == 8
    # In float32 two restarts can tie to round-off, and which one wins is then a coin flip.
    restarts = 2 if dtype == np.float64 else 1
    kwargs = dict(covariance_type=covariance_type, init_params=init_params, num_restarts=restarts)
    padded = fit_gaussian_mixture(x, 3, rng_key=4, **kwargs)
    with monkeypatch.context() as patch:
        _unpadded(patch)
        plain = fit_gaussian_mixture(x, 3, rng_key=4, **kwargs)
    # float64: equal to round-off. float32: the sums are added in another order, which a few
    # dozen iterations along a flat direction of the likelihood can amplify in the parameters,
    # not in the objective.
    rtol = 1e-10 if dtype == np.float64 else 2e-2
    for got, want in zip(padded.params, plain.params, strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    assert padded.best_restart == plain.best_restart
    np.testing.assert_array_equal(padded.restarts.n_iter, plain.restarts.n_iter)
    objective_rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(
        padded.restarts.objective, plain.restarts.objective, rtol=objective_rtol
    )
    assert padded.counts.shape == (3,) and padded.trace.shape == plain.trace.shape


def test_padded_user_initial_values_equal_the_unpadded_fit(monkeypatch, x64):
    x = jnp.asarray(_data(), jnp.float64)
    covariances = np.stack([np.eye(2) * s for s in (0.5, 1.0, 2.0)])
    initial = InitialValues(
        weights=np.array([0.2, 0.3, 0.5]),
        means=np.array([[-3.0, 0.0], [0.0, 0.0], [3.0, 1.0]]),
        precisions_cholesky=np.asarray(precisions_cholesky_from_covariances(covariances, "full")),
    )
    padded = fit_gaussian_mixture(x, 3, initial=initial)
    with monkeypatch.context() as patch:
        _unpadded(patch)
        plain = fit_gaussian_mixture(x, 3, initial=initial)
    for got, want in zip(padded.params, plain.params, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_large_fits_are_neither_padded_nor_compiled_quickly():
    big = fitting._layout(200_000, 16, 16, "full", 100, 4, paddable=True)
    assert big == fitting._Layout(16, 200_000, False, 4)  # restarts vectorized in one call
    small = fitting._layout(272, 2, 3, "full", 100, 4, paddable=True)
    assert small == fitting._Layout(8, 512, True, 1)  # restarts one at a time
    # Kernels other than plain maximum-likelihood EM are never padded.
    unpadded = fitting._layout(272, 2, 3, "full", 100, 4, paddable=False)
    assert unpadded == fitting._Layout(3, 272, True, 4)


def test_restart_r_is_the_same_whatever_the_number_of_restarts(x64):
    # scikit-learn's test_multiple_init asserts n_init=5 is never worse than n_init=1 to the
    # last bit; one program per restart makes restart 0 identical in both.
    x = jnp.asarray(np.random.RandomState(0).randn(50, 5))
    for covariance_type in ("full", "tied", "diag", "spherical"):
        one = fit_gaussian_mixture(x, 2, covariance_type=covariance_type, num_restarts=1)
        five = fit_gaussian_mixture(x, 2, covariance_type=covariance_type, num_restarts=5)
        np.testing.assert_array_equal(five.trace[0], one.trace[0])
        assert five.objective >= one.objective


def test_max_iter_is_a_run_time_value(x64):
    x = jnp.asarray(_data(), jnp.float64)
    jax.clear_caches()
    with timing.measure() as first:
        short = fit_gaussian_mixture(x, 2, max_iter=3, tol=0.0, rng_key=11)
    with timing.measure() as second:
        longer = fit_gaussian_mixture(x, 2, max_iter=9, tol=0.0, rng_key=11)
    assert first.trace > 0  # the first call traced a program
    assert second.programs == 0  # 3 and 9 share one (trace capacity 16)
    assert short.trace.shape == (1, 3) and longer.trace.shape == (1, 9)
    assert int(short.restarts.n_iter[0]) == 3 and int(longer.restarts.n_iter[0]) == 9
    np.testing.assert_allclose(longer.trace[0, :3], short.trace[0], rtol=1e-12)


# A sweep over K on all 272 rows, then 5-fold cross-validation over the same K, in a fresh
# process without a persistent cache: prints how many programs each compiled.
_COUNT = """
import json, warnings
import jax
import numpy as np
from sklearn.model_selection import cross_val_score
from numpyro_gmm import GaussianMixture, timing
from numpyro_gmm.datasets import load_example
warnings.simplefilter("ignore")
x = load_example("faithful")[0]
with timing.measure() as sweep:
    for k in range(1, 7):
        GaussianMixture(k, random_state=0).fit(x).bic(x)
jax.clear_caches()
with timing.measure() as cv:
    for k in range(1, 7):
        cross_val_score(GaussianMixture(k, random_state=0), x, cv=5)
print(json.dumps({"sweep": sweep.programs, "cv": cv.programs}))
"""


def test_cross_validation_over_k_compiles_no_more_than_the_sweep_over_k():
    env = {**os.environ, ENV_VAR: "0"}
    completed = subprocess.run(
        [sys.executable, "-c", _COUNT], env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr
    counts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert counts["cv"] <= counts["sweep"], counts
    # One fit program and one scoring program, plus a few small host-side helpers.
    assert counts["sweep"] <= 12, counts


def test_verbose_reports_where_the_time_went(capsys):
    from numpyro_gmm import GaussianMixture

    x = _data(n_samples=97, seed=3)
    jax.clear_caches()
    GaussianMixture(2, covariance_type="diag", verbose=1, max_iter=5).fit(x)
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("Fit done in"))
    assert "trace" in line and "compile" in line and "program" in line and "run" in line


def test_time_breakdown_adds_up_and_nests():
    with timing.measure() as outer:
        with timing.measure() as inner:
            jax.jit(lambda v: jnp.sin(v) * 3.0)(jnp.arange(7.0)).block_until_ready()
    assert inner.programs >= 1 and outer.programs >= inner.programs
    assert inner.trace + inner.lower + inner.compile <= inner.total + 1e-6
    assert outer.total >= inner.total
    assert "program" in inner.summary()


def test_a_user_model_fit_compiles_one_large_program_and_new_data_compile_nothing():
    import numpyro_gmm as ngm

    rng = np.random.default_rng(3)
    first_y, second_y = (
        np.concatenate([rng.normal(-4, 1, 40), rng.normal(0, 0.5, 40), rng.normal(5, 2, 40)])
        for _ in range(2)
    )
    jax.clear_caches()
    with timing.measure() as first:
        ngm.fit(lognormal_scales_model, first_y, num_restarts=2, rng_key=0, max_iter=500)
    with timing.measure() as second:
        result = ngm.fit(lognormal_scales_model, second_y, num_restarts=2, rng_key=1, max_iter=500)
    # Reading, checking and scoring the model run jitted, not operation by operation (about
    # 200 compilations of single operations before).
    assert first.programs < 70
    assert second.programs == 0
    assert np.isfinite(result.objective)
