"""Streaming EM: exact out-of-core EM equals full-batch EM; stepwise EM reaches its objective;
streaming runs through the one pipeline and returns its FitResult."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from numpyro_gmm.errors import ConvergenceWarning
from numpyro_gmm.fit_result import FitResult
from numpyro_gmm.fitting import InitialValues
from numpyro_gmm.mixture.estep import recentre, statistics_from_responsibilities
from numpyro_gmm.mixture.init import initialize
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.pipeline import fit_mixture
from numpyro_gmm.streaming import Stream, fit_streaming, run_streamed, step_sizes

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
    return fit_mixture(
        jnp.asarray(x),
        K,
        method="em",
        initial=initial,
        max_iter=n_iter,
        tol=0.0,
        warn=False,
        **kwargs,
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
    np.testing.assert_allclose(stream.best_trace(), batch.trace[0], rtol=rtol)
    np.testing.assert_allclose(stream.params.means, batch.params.means, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(stream.covariances, batch.covariances, rtol=rtol, atol=rtol)
    assert stream.n_iter == 8 and stream.extras["pass_kinds"] == ["exact"] * 8
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
    np.testing.assert_allclose(stream.best_trace(), batch.trace[0], rtol=1e-10)
    np.testing.assert_allclose(stream.params.means, batch.params.means, rtol=1e-10)


def test_stepwise_reaches_full_batch_objective(data, dtype):
    """The documented tolerance: within 1e-3 nats per point after the exact passes."""
    x = data.astype(dtype)
    initial = _initial(x)
    batch = fit_mixture(jnp.asarray(x), K, method="em", initial=initial, max_iter=200, tol=1e-6)
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
    assert stepwise.extras["pass_kinds"][:2] == ["stepwise", "stepwise"]
    assert stepwise.extras["stream_method"] == "stepwise"
    full_batch = batch.best_trace()[-1]
    assert abs(stepwise.objective / stepwise.n_samples - full_batch) < 1e-3
    # The stepwise passes do most of the work: far fewer passes than batch EM's iterations.
    assert stepwise.n_iter < batch.n_iter / 2, (stepwise.n_iter, batch.n_iter)


def test_streaming_returns_the_pipelines_fit_result(data):
    x = data.astype(np.float32)
    fit = _streaming(x, _initial(x), 3)
    assert isinstance(fit, FitResult)
    assert fit.method == "em" and fit.covariance_type == "full" and fit.best_restart == 0
    assert fit.trace.shape == (1, 3) and fit.restarts.n_iter.tolist() == [3]
    assert fit.objective == fit.restarts.objective[0] and not fit.restarts.failed[0]
    assert fit.n_samples == 3001 and fit.covariances.shape == (K, 3, 3)
    np.testing.assert_allclose(fit.counts.sum(), 3001, rtol=1e-4)
    assert len(fit.extras["seconds_per_pass"]) == 3
    assert fit.extras["stream_method"] == "exact"


def test_fit_mixture_streams_a_stream(data):
    """The pipeline fits a Stream directly: the same fit as fit_streaming."""
    x = data.astype(np.float32)
    initial = _initial(x)
    via_api = _streaming(x, initial, 3)
    stream = Stream(x, method="exact", block_size=500)
    assert stream.n_samples == 3001 and stream.n_features == 3
    via_pipeline = fit_mixture(
        stream, K, initial=initial, max_iter=3, tol=0.0, chunk_size=128, warn=False
    )
    np.testing.assert_allclose(via_pipeline.best_trace(), via_api.best_trace(), rtol=1e-6)
    np.testing.assert_allclose(via_pipeline.params.means, via_api.params.means, rtol=1e-6)


def test_non_convergence_is_reported_by_the_pipeline_once(data):
    x = data.astype(np.float32)
    initial = _initial(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_mixture(
            Stream(x, method="exact", block_size=500),
            K,
            initial=initial,
            max_iter=2,
            tol=0.0,
            warn=False,
        )
    assert not fit.converged and fit.n_iter == 2
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    with pytest.warns(ConvergenceWarning) as record:
        fit_streaming(x, K, method="exact", initial=initial, max_passes=2, tol=0.0)
    assert sum(issubclass(w.category, ConvergenceWarning) for w in record) == 1


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


@pytest.mark.parametrize(
    "settings",
    [
        {"method": "exact", "max_passes": 1},
        {"method": "stepwise", "stepwise_passes": 1, "max_passes": 0},
    ],
    ids=["one-exact-pass", "stepwise-only"],
)
def test_one_shot_iterator_streams_its_single_pass(data, settings):
    """The initialization's rows are replayed in front of the rest of the pass: the fit equals
    that of a re-iterable list of the same blocks, with every row counted once."""
    x = data.astype(np.float32)
    uneven = np.split(x, [7, 700, 1900, 1901])
    common = {"init_rows": 1000, "block_size": 500, "chunk_size": 128, "tol": 0.0, **settings}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = fit_streaming(list(uneven), K, **common)
        one_shot = fit_streaming((block for block in uneven), K, **common)  # a generator
    assert one_shot.n_iter == 1 and one_shot.n_samples == x.shape[0]
    np.testing.assert_allclose(one_shot.counts.sum(), x.shape[0], rtol=1e-4)
    np.testing.assert_allclose(one_shot.best_trace(), reference.best_trace(), rtol=1e-6)
    np.testing.assert_allclose(one_shot.params.means, reference.params.means, rtol=1e-5)


def test_one_shot_iterator_refuses_more_passes_before_reading(data):
    x = data.astype(np.float32)
    blocks = iter(np.array_split(x, 6))
    with pytest.raises(ValueError, match="one-shot iterator.*callable"):
        fit_streaming(blocks, K, method="exact", max_passes=2, tol=0.0)
    with pytest.raises(ValueError, match="one-shot iterator"):
        fit_streaming(blocks, K, stepwise_passes=1, max_passes=1)
    assert len(list(blocks)) == 6  # nothing was read
    fresh = fit_streaming(lambda: iter(np.array_split(x, 6)), K, method="exact", max_passes=50)
    assert fresh.converged and fresh.extras["pass_kinds"][:2] == ["exact", "exact"]


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
    with pytest.raises(ValueError, match="method must be"):
        Stream(np.ones((10, 2)), method="online")
    with pytest.raises(ValueError, match="block_size"):
        Stream(np.ones((10, 2)), block_size=0)


def test_misspelt_covariance_type_fails():
    with pytest.raises(ValueError, match="Unknown covariance_type 'ful'.*'full'"):
        fit_streaming(np.ones((10, 2)), 2, covariance_type="ful")


@pytest.mark.parametrize("source_kind", ["array", "iterable"])
def test_invalid_prior_fails(data, source_kind):
    """Checked against the number of features: up front for an array, after reading the
    initialization sample for an iterable."""
    x = data.astype(np.float32)
    source = x if source_kind == "array" else np.array_split(x, 6)
    wrong_shape = GaussianMixturePrior(weight_concentration=np.full(K + 1, 2.0))
    with pytest.raises(ValueError, match="weight_concentration should have shape"):
        fit_streaming(source, K, prior=wrong_shape, max_passes=1)
    wrong_dimension = GaussianMixturePrior(covariance_df=5.0, covariance_scale=np.eye(2))
    with pytest.raises(ValueError, match="covariance_scale should have shape"):
        fit_streaming(source, K, prior=wrong_dimension, max_passes=1)
    with pytest.raises(ValueError, match="Inverse-Gamma"):
        fit_streaming(
            source,
            K,
            covariance_type="full",
            prior=GaussianMixturePrior(variance_concentration=2.0, variance_rate=1.0),
        )


def test_pipeline_settings_streaming_cannot_honour(data):
    stream = Stream(data.astype(np.float32), block_size=500)
    with pytest.raises(ValueError, match="num_restarts=2"):
        fit_mixture(stream, K, num_restarts=2)
    with pytest.raises(ValueError, match=r"Unknown option\(s\) \['foo'\]"):
        fit_mixture(stream, K, options={"foo": 1})
    with pytest.raises(ValueError, match="Nothing to run"):
        fit_mixture(Stream(data, method="exact"), K, max_iter=0)
    with pytest.raises(TypeError, match="Stream"):
        run_streamed(type("Job", (), {"x": data})(), {})


def test_collapsed_covariance_raises_with_advice(x64):
    rows = np.ones((64, 2))
    initial = InitialValues(np.ones(1), np.ones((1, 2)), np.eye(2)[None])
    with pytest.raises(ValueError, match="not positive definite.*reg_covar"):
        fit_streaming(rows, 1, method="exact", initial=initial, reg_covar=0.0, max_passes=1)


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
