"""Streaming EM: exact out-of-core EM equals full-batch EM; stepwise EM reaches its objective."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from numpyro_gmm.fitting import ConvergenceWarning, InitialValues, fit_gaussian_mixture
from numpyro_gmm.mixture.estep import recentre, statistics_from_responsibilities
from numpyro_gmm.mixture.init import initialize
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.streaming import fit_streaming, step_sizes

from helpers import make_mixture_data

K = 4


@pytest.fixture(scope="module")
def data():
    x, _, _ = make_mixture_data(
        np.random.default_rng(3), n_samples=3001, n_features=3, n_components=K, separation=5.0
    )
    return x


def _initial(x, covariance_type="full"):
    params = initialize(
        jax.random.key(0), jnp.asarray(x), K, "random_from_data", covariance_type, 1e-6, 256
    )
    return InitialValues(*(np.asarray(leaf) for leaf in params))


def _full_batch(x, initial, n_iter, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_gaussian_mixture(
            jnp.asarray(x), K, initial=initial, max_iter=n_iter, tol=0.0, **kwargs
        )


def _streaming(source, initial, n_passes, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_streaming(
            source,
            K,
            method="exact",
            initial=initial,
            max_passes=n_passes,
            tol=0.0,
            block_size=500,
            chunk_size=128,
            **kwargs,
        )


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_exact_streaming_equals_full_batch_em(data, dtype, covariance_type):
    x = data.astype(dtype)
    initial = _initial(x, covariance_type)
    batch = _full_batch(x, initial, 8, covariance_type=covariance_type)
    stream = _streaming(x, initial, 8, covariance_type=covariance_type)
    rtol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(stream.trace, batch.trace[0], rtol=rtol)
    np.testing.assert_allclose(stream.params.means, batch.params.means, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(stream.covariances, batch.covariances, rtol=rtol, atol=rtol)
    assert stream.n_passes == 8 and stream.pass_kinds == ["exact"] * 8
    assert stream.params.means.dtype == dtype


def test_exact_streaming_map_with_prior(data, x64):
    prior = GaussianMixturePrior(
        weight_concentration=jnp.full(K, 3.0),
        mean_loc=jnp.zeros(3),
        mean_precision=jnp.asarray(0.1),
        covariance_df=jnp.asarray(6.0),
        covariance_scale=jnp.eye(3),
    )
    initial = _initial(data)
    batch = _full_batch(data, initial, 5, prior=prior)
    stream = _streaming(data, initial, 5, prior=prior)
    np.testing.assert_allclose(stream.trace, batch.trace[0], rtol=1e-10)
    np.testing.assert_allclose(stream.params.means, batch.params.means, rtol=1e-10)


def test_stepwise_reaches_full_batch_objective(data, dtype):
    """The documented tolerance: within 1e-3 nats per point after the exact passes."""
    x = data.astype(dtype)
    initial = _initial(x)
    batch = fit_gaussian_mixture(jnp.asarray(x), K, initial=initial, max_iter=200, tol=1e-6)
    stepwise = fit_streaming(
        x,
        K,
        initial=initial,
        stepwise_passes=2,
        max_passes=50,
        tol=1e-6,
        block_size=250,
        chunk_size=128,
    )
    assert stepwise.converged
    assert stepwise.pass_kinds[:2] == ["stepwise", "stepwise"]
    full_batch = batch.trace[0][np.isfinite(batch.trace[0])][-1]
    assert abs(stepwise.objective_per_point - full_batch) < 1e-3
    # The stepwise passes do most of the work: far fewer passes than batch EM's iterations.
    assert stepwise.n_passes < int(batch.restart_n_iter[0]) / 2, (
        stepwise.n_passes,
        batch.restart_n_iter,
    )


def test_sources_give_the_same_fit(data, tmp_path):
    x = data.astype(np.float32)
    initial = _initial(x)
    reference = _streaming(x, initial, 3)
    path = tmp_path / "rows.f32"
    memmap = np.memmap(path, np.float32, "w+", shape=x.shape)
    memmap[:] = x
    memmap.flush()
    memmap = np.memmap(path, np.float32, "r", shape=x.shape)
    uneven = np.split(x, [7, 700, 1900, 1901])
    sources = {
        "memmap": memmap,
        "xarray": xr.DataArray(x.T, dims=("feature", "obs")),
        "callable": lambda: (block for block in uneven),
        "list": uneven,
    }
    for name, source in sources.items():
        kwargs = {"sample_dim": "obs"} if name == "xarray" else {}
        fit = _streaming(source, initial, 3, **kwargs)
        np.testing.assert_allclose(fit.trace, reference.trace, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(
            fit.params.means, reference.params.means, rtol=1e-4, atol=1e-4, err_msg=name
        )


def test_streaming_initializes_from_the_source(data):
    fit = fit_streaming(data.astype(np.float32), K, max_passes=30, block_size=512, tol=1e-4)
    assert fit.converged and fit.params.means.shape == (K, 3)


def test_one_shot_iterator_allows_one_pass(data):
    x = data.astype(np.float32)
    initial = _initial(x)
    with pytest.raises(ValueError, match="one-shot iterator"):
        fit_streaming(
            iter(np.array_split(x, 6)), K, method="exact", initial=initial, max_passes=2, tol=0.0
        )


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([np.ones((5, 3)), np.full((5, 3), np.nan)], "NaN or infinite"),
        ([np.ones((5, 3)), np.ones((5, 2))], "same features"),
        ([np.ones((5, 3, 1))], r"\(n_i, D\)"),
    ],
)
def test_bad_blocks_fail_with_clear_errors(blocks, message):
    initial = InitialValues(np.full(2, 0.5), np.zeros((2, 3)), np.stack([np.eye(3)] * 2))
    with pytest.raises(ValueError, match=message):
        fit_streaming(blocks, 2, method="exact", initial=initial, max_passes=1)


def test_bad_options_fail():
    with pytest.raises(ValueError, match="kappa"):
        fit_streaming(np.ones((10, 2)), 2, kappa=0.5)
    with pytest.raises(TypeError, match="source must be"):
        fit_streaming(3.0, 2)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_recentre_matches_statistics_at_the_new_shift(covariance_type, x64):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(50, 3)) + 4.0)
    resp = jax.nn.softmax(jnp.asarray(np.random.default_rng(1).normal(size=(K, 50))), axis=0)

    def responsibilities_fn(rows, row_index):
        return resp[:, row_index]

    old, new = jnp.zeros((K, 3)), jnp.arange(K * 3.0).reshape(K, 3)
    at_old = statistics_from_responsibilities(x, responsibilities_fn, old, covariance_type, 16)
    at_new = statistics_from_responsibilities(x, responsibilities_fn, new, covariance_type, 16)
    moved = recentre(at_old, old, new, covariance_type)
    for got, want in zip(moved, at_new, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-9)


def test_step_sizes_schedule():
    gammas = step_sizes(4, kappa=0.6, t0=1.0)
    np.testing.assert_allclose(gammas, np.arange(1, 5) ** -0.6)
    assert gammas[0] == 1.0


def test_progress_lines_only_when_asked(data, capsys):
    x = data.astype(np.float32)
    initial = _initial(x)
    _streaming(x, initial, 1)
    assert capsys.readouterr().err == ""
    _streaming(x, initial, 1, progress=0.0)
    err = capsys.readouterr().err
    assert "pass 1 (exact)" in err and "blocks" in err
