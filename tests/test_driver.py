"""The shared driver: restarts in one compiled program, selection, segments, failure flags."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from numpyro_gmm import ConvergenceWarning, EmptyComponentWarning, driver, fitting
from numpyro_gmm.errors import FitFailedError
from numpyro_gmm.fitting import InitialValues, fit_gaussian_mixture
from numpyro_gmm.mixture.estep import sufficient_statistics
from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances
from numpyro_gmm.pipeline import fit_mixture

from helpers import make_mixture_data


def log_likelihood_by_scipy(x, weights, means, covariances):
    log_prob = np.stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(x)
            for w, m, c in zip(weights, means, covariances, strict=True)
        ],
        axis=1,
    )
    return float(np.sum(logsumexp(log_prob, axis=1)))


def hard_problem(seed=0):
    """Eight clusters in 2-D: random-from-data restarts end in different local optima."""
    x, _, _ = make_mixture_data(
        np.random.default_rng(seed), n_samples=800, n_features=2, n_components=8, separation=4.0
    )
    return x


def test_restarts_compile_once_and_run_as_one_program():
    x = hard_problem()

    def compiled():
        return sum(
            p.fit._cache_size() for p in (fitting._QUICK_PROGRAMS, fitting._OPTIMIZED_PROGRAMS)
        )

    before = compiled()
    kwargs = dict(num_restarts=8, init_params="random_from_data", max_iter=300, tol=1e-4)
    first = fit_gaussian_mixture(jnp.asarray(x, jnp.float32), 8, rng_key=1, **kwargs)
    assert compiled() == before + 1
    # New data of the same shape, a new seed: no new compilation.
    second = fit_gaussian_mixture(jnp.asarray(x[::-1] * 1.5, jnp.float32), 8, rng_key=2, **kwargs)
    assert compiled() == before + 1
    for result in (first, second):
        assert result.restarts.objective.shape == (8,)
        assert result.trace.shape == (8, 300)
        assert result.restarts.n_iter.shape == (8,)


def test_best_restart_is_chosen_by_the_objective(x64):
    x = hard_problem()
    result = fit_gaussian_mixture(
        jnp.asarray(x),
        8,
        num_restarts=12,
        rng_key=0,
        init_params="random_from_data",
        max_iter=500,
        tol=1e-6,
    )
    objectives = result.restarts.objective
    # The restarts really reach different optima, so the choice matters.
    assert objectives.max() - objectives.min() > 1.0
    assert result.best_restart == int(np.argmax(objectives))
    assert result.objective == objectives.max()
    # The reported objective is the log-likelihood of the returned parameters.
    expected = log_likelihood_by_scipy(
        x, result.params.weights, result.params.means, result.covariances
    )
    assert result.objective == pytest.approx(expected, rel=1e-10)
    # Each restart's trace ends at (about) its final objective, per sample.
    last = np.array([t[n - 1] for t, n in zip(result.trace, result.restarts.n_iter, strict=True)])
    np.testing.assert_allclose(last * len(x), objectives, rtol=1e-5)


def test_segmented_run_with_progress_equals_one_program(capsys, x64):
    x = hard_problem(1)
    kwargs = dict(num_restarts=3, rng_key=5, init_params="k-means++", max_iter=300, tol=1e-5)
    whole = fit_gaussian_mixture(jnp.asarray(x), 8, **kwargs)
    pieces = fit_gaussian_mixture(jnp.asarray(x), 8, progress_interval=7, **kwargs)
    np.testing.assert_array_equal(whole.trace, pieces.trace)
    np.testing.assert_array_equal(whole.params.means, pieces.params.means)
    progress = capsys.readouterr().err
    assert "Iteration 7:" in progress and "restart(s) done" in progress


def test_max_iter_reached_is_reported():
    x = hard_problem()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        result = fit_mixture(jnp.asarray(x, jnp.float32), 8, max_iter=3, tol=1e-12)
    assert not result.restarts.converged.any()
    assert (result.restarts.n_iter == 3).all()


class CountingState(NamedTuple):
    value: jax.Array


class CountingInfo(NamedTuple):
    objective: jax.Array
    is_finite: jax.Array


def test_driver_keeps_last_finite_state_and_flags_failure():
    def step(rng_key, state, data):
        del rng_key, data
        new = state.value + 1.0
        broken = jnp.where(new > 3.0, jnp.nan, new)
        return CountingState(broken), CountingInfo(objective=new, is_finite=jnp.isfinite(broken))

    run_state = driver.init_run_state(CountingState(jnp.zeros(())), 10, jnp.float32)
    final = driver.advance(
        jax.random.key(0), step, run_state, None, stop_at=10, tol=0.0, objective_scale=1.0
    )
    assert bool(final.failed) and not bool(final.converged)
    assert int(final.n_iter) == 3 and float(final.kernel_state.value) == 3.0
    np.testing.assert_array_equal(np.asarray(final.trace[:3]), [1.0, 2.0, 3.0])
    assert np.isnan(np.asarray(final.trace[3:])).all()


def test_all_restarts_failing_raises_with_advice(x64):
    # Identical rows leave no spread: with a negligible reg_covar every covariance is
    # numerically singular, so every restart fails.
    x = np.repeat(np.random.default_rng(0).normal(size=(1, 2)), 50, axis=0)
    initial = InitialValues(
        np.array([0.5, 0.5]),
        np.array([[0.0, 0.0], [1.0, 1.0]]),
        precisions_cholesky_from_covariances(jnp.eye(2)[None].repeat(2, 0), "full"),
    )
    with pytest.raises(FitFailedError, match="increase reg_covar"):
        fit_gaussian_mixture(jnp.asarray(x), 2, initial=initial, reg_covar=1e-300, max_iter=5)


def test_a_component_that_loses_its_points_is_reported_and_stays_finite(x64):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(100, 2)), rng.normal(size=(100, 2)) + 8])
    far = np.array([[0.0, 0.0], [8.0, 8.0], [500.0, -500.0]])
    initial = InitialValues(
        np.full(3, 1 / 3),
        far,
        precisions_cholesky_from_covariances(jnp.eye(2)[None].repeat(3, 0), "full"),
    )
    with pytest.warns(EmptyComponentWarning, match=r"Component\(s\) \[2\]"):
        result = fit_mixture(jnp.asarray(x), 3, initial=initial, max_iter=100)
    assert all(np.isfinite(leaf).all() for leaf in result.params)
    assert np.isfinite(result.covariances).all() and np.isfinite(result.objective)
    assert result.counts[2] < 1.0 and result.params.weights[2] < 1e-10


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_chunked_statistics_equal_single_pass(covariance_type, x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(103, 3)))
    result = fit_gaussian_mixture(x, 3, covariance_type=covariance_type, max_iter=5, tol=0.5)
    params = fitting.GMMParams(*(jnp.asarray(leaf) for leaf in result.params))
    whole = sufficient_statistics(x, params, covariance_type, chunk_size=103)
    for chunk_size in (7, 50, 64):
        chunked = sufficient_statistics(x, params, covariance_type, chunk_size=chunk_size)
        for a, b in zip(whole, chunked, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_polish_continues_with_plain_em_in_the_same_program(x64):
    x = hard_problem(2)
    kwargs = dict(rng_key=3, init_params="k-means++", tol=0.0)
    # The engine gives no warnings (the pipeline does, once, on the fit it returns).
    split = fit_gaussian_mixture(jnp.asarray(x), 8, max_iter=3, polish_iter=5, **kwargs)
    whole = fit_gaussian_mixture(jnp.asarray(x), 8, max_iter=8, **kwargs)
    # EM followed by an EM polish is the same trajectory as one longer EM run.
    np.testing.assert_allclose(split.params.means, whole.params.means, rtol=1e-12)
    np.testing.assert_allclose(split.polish_trace[0], whole.trace[0][3:], rtol=1e-12)
    # n_iter counts the loop's steps and the polish's.
    assert split.restarts.n_iter[0] == 8
    assert np.isfinite(split.trace[0]).sum() == 3 and np.isfinite(split.polish_trace[0]).sum() == 5


def test_unknown_method_or_kernel_is_refused():
    with pytest.raises(ValueError, match="Unknown kernel 'nuts'; use one of"):
        fit_gaussian_mixture(jnp.ones((10, 2)), 2, kernel="nuts")
    with pytest.raises(ValueError, match="Unknown method 'nuts'; use one of"):
        fit_mixture(jnp.ones((10, 2)), 2, method="nuts")


def test_max_iter_zero_returns_the_initialization():
    x = jnp.asarray(hard_problem(), jnp.float32)
    result = fit_gaussian_mixture(x, 8, max_iter=0, init_params="k-means++")
    assert result.trace.shape == (1, 0) and result.restarts.n_iter[0] == 0
    assert np.isfinite(result.objective)
