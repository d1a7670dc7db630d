"""One table of covariance types: unknown names fail loudly everywhere, shapes and expansions
agree with what the functions produce."""

import importlib
import inspect
import pkgutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpyro_gmm.mixture
from numpyro_gmm.mixture.estep import SufficientStats
from numpyro_gmm.mixture.params import GMMParams
from numpyro_gmm.mixture.priors import GaussianMixturePrior

TYPES = ["full", "tied", "diag", "spherical"]
K, D = 3, 2
TYPO = "ful"


def _mixture_modules():
    return [
        importlib.import_module(f"numpyro_gmm.mixture.{info.name}")
        for info in pkgutil.iter_modules(numpyro_gmm.mixture.__path__)
    ]


def _functions_taking_covariance_type() -> dict[str, object]:
    """Every public function defined in a ``numpyro_gmm.mixture`` module with that argument."""
    found = {}
    for module in _mixture_modules():
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            if "covariance_type" in inspect.signature(function).parameters:
                found[f"{module.__name__.rsplit('.', 1)[-1]}.{name}"] = function
    return found


# Inputs shaped for "full" (what a user who typed "ful" meant), K = 3 components, D = 2.
def _covariances():
    a = np.random.default_rng(0).normal(size=(K, D, D))
    return a @ np.swapaxes(a, -1, -2) + np.eye(D)


def _params():
    from numpyro_gmm.mixture.params import precisions_cholesky_from_covariances

    return GMMParams(
        jnp.full(K, 1.0 / K),
        jnp.asarray(np.random.default_rng(1).normal(size=(K, D))),
        precisions_cholesky_from_covariances(_covariances(), "full"),
    )


def _x():
    return jnp.asarray(np.random.default_rng(2).normal(size=(20, D)))


def _stats():
    return SufficientStats(
        jnp.full(K, 5.0), jnp.zeros((K, D)), jnp.asarray(5.0 * _covariances()), jnp.zeros(())
    )


def _prior():
    return GaussianMixturePrior(
        mean_loc=np.zeros(D),
        mean_precision=np.asarray(1.0),
        covariance_df=np.asarray(D + 2.0),
        covariance_scale=np.eye(D),
    )


def _responsibilities(rows, row_index):
    del row_index
    return jnp.full((K, rows.shape[0]), 1.0 / K)


# name -> callable(covariance_type) that calls the function with otherwise valid arguments.
CALLS = {
    "covariance.check_covariance_type": lambda f, ct: f(ct),
    "covariance.covariance_shape": lambda f, ct: f(ct, K, D),
    "covariance.dispatch": lambda f, ct: f(ct, {t: t for t in TYPES}),
    "covariance.expand_to_full": lambda f, ct: f(_covariances(), ct, K, D),
    "covariance.is_matrix_type": lambda f, ct: f(ct),
    "params.precisions_cholesky_from_covariances": lambda f, ct: f(_covariances(), ct),
    "params.covariances_from_precisions_cholesky": lambda f, ct: f(
        _params().precisions_cholesky, ct
    ),
    "params.precisions_from_precisions_cholesky": lambda f, ct: f(
        _params().precisions_cholesky, ct
    ),
    "params.precisions_cholesky_from_precisions": lambda f, ct: f(_covariances(), ct),
    "params.log_det_precisions_cholesky": lambda f, ct: f(_params().precisions_cholesky, ct, D),
    "params.full_precisions": lambda f, ct: f(_params().precisions_cholesky, ct, K, D),
    "params.full_covariances": lambda f, ct: f(_covariances(), ct, K, D),
    "params.n_parameters": lambda f, ct: f(K, D, ct),
    "estep.log_prob_from_differences": lambda f, ct: f(
        jnp.ones((K, 4, D)), _params().precisions_cholesky, ct
    ),
    "estep.component_log_prob": lambda f, ct: f(_x(), _params(), ct),
    "estep.chunk_statistics": lambda f, ct: f(_x(), jnp.ones(20), _params(), ct),
    "estep.sufficient_statistics": lambda f, ct: f(_x(), _params(), ct, 8),
    "estep.recentre": lambda f, ct: f(_stats(), jnp.zeros((K, D)), jnp.ones((K, D)), ct),
    "estep.statistics_from_responsibilities": lambda f, ct: f(
        _x(), _responsibilities, jnp.zeros((K, D)), ct, 8
    ),
    "mstep.m_step": lambda f, ct: f(_stats(), jnp.zeros((K, D)), None, ct, 1e-6),
    "priors.log_prior": lambda f, ct: f(_params(), GaussianMixturePrior(), ct),
    "init.initialize": lambda f, ct: f(jax.random.key(0), _x(), K, "k-means++", ct, 1e-6, 8),
    "affine.standardization": lambda f, ct: f(np.asarray(_x()), ct),
    "affine.to_standard": lambda f, ct: f(_params(), np.zeros(D), np.ones(D), ct),
    "affine.from_standard": lambda f, ct: f(_params(), np.zeros(D), np.ones(D), ct),
    "affine.covariances_from_standard": lambda f, ct: f(_covariances(), np.ones(D), ct),
    "affine.prior_to_standard": lambda f, ct: f(_prior(), np.zeros(D), np.ones(D), ct),
}


def test_every_function_taking_a_covariance_type_is_covered():
    missing = set(_functions_taking_covariance_type()) - set(CALLS)
    assert not missing, f"add these to CALLS: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_a_typo_in_covariance_type_raises_everywhere(name):
    module_name, function_name = name.split(".")
    module = importlib.import_module(f"numpyro_gmm.mixture.{module_name}")
    function = getattr(module, function_name)
    with pytest.raises(ValueError, match="Unknown covariance_type 'ful'.*Did you mean 'full'"):
        CALLS[name](function, TYPO)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_valid_calls_of_the_typo_table_work(name):
    """The same calls with the intended type succeed (the failure above is the typo's)."""
    module_name, function_name = name.split(".")
    function = getattr(importlib.import_module(f"numpyro_gmm.mixture.{module_name}"), function_name)
    CALLS[name](function, "full")


def test_a_non_string_covariance_type_raises():
    from numpyro_gmm.mixture.covariance import check_covariance_type, dispatch

    with pytest.raises(ValueError, match="Unknown covariance_type None"):
        check_covariance_type(None)
    with pytest.raises(ValueError, match="Unknown covariance_type"):
        dispatch(["full"], {t: t for t in TYPES})


def test_dispatch_returns_the_entry_and_refuses_a_missing_one():
    from numpyro_gmm.mixture.covariance import dispatch

    table = {t: i for i, t in enumerate(TYPES)}
    assert [dispatch(t, table) for t in TYPES] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not supported here"):
        dispatch("diag", {"full": 0, "tied": 1})


def test_covariance_types_have_one_definition():
    from numpyro_gmm import _types
    from numpyro_gmm.mixture import covariance

    assert covariance.COVARIANCE_TYPES is _types.COVARIANCE_TYPES
    assert covariance.COVARIANCE_TYPES == tuple(TYPES)


# (b) covariance_shape against the shapes the functions produce.


def _random_covariances(rng, covariance_type, k, d):
    a = rng.normal(size=(k, d, d))
    full = a @ np.swapaxes(a, -1, -2) + np.eye(d)
    return {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.5, 2.0, size=(k, d)),
        "spherical": rng.uniform(0.5, 2.0, size=k),
    }[covariance_type]


@pytest.mark.parametrize("covariance_type", TYPES)
def test_covariance_shape_is_the_shape_the_functions_produce(covariance_type):
    from numpyro_gmm.mixture.covariance import covariance_shape
    from numpyro_gmm.mixture.estep import sufficient_statistics
    from numpyro_gmm.mixture.init import initialize
    from numpyro_gmm.mixture.mstep import m_step
    from numpyro_gmm.mixture.params import (
        covariances_from_precisions_cholesky,
        precisions_cholesky_from_covariances,
        precisions_from_precisions_cholesky,
    )

    expected = covariance_shape(covariance_type, K, D)
    assert (
        expected
        == {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[covariance_type]
    )
    x = jnp.asarray(np.random.default_rng(3).normal(size=(40, D)))
    params = initialize(jax.random.key(1), x, K, "kmeans", covariance_type, 1e-6, 16)
    assert params.precisions_cholesky.shape == expected
    stats = sufficient_statistics(x, params, covariance_type, 16)
    new_params, covariances = m_step(stats, params.means, params, covariance_type, 1e-6)
    assert covariances.shape == expected
    assert new_params.precisions_cholesky.shape == expected
    assert (
        covariances_from_precisions_cholesky(params.precisions_cholesky, covariance_type).shape
        == expected
    )
    assert (
        precisions_from_precisions_cholesky(params.precisions_cholesky, covariance_type).shape
        == expected
    )
    given = _random_covariances(np.random.default_rng(4), covariance_type, K, D)
    assert given.shape == expected
    assert precisions_cholesky_from_covariances(given, covariance_type).shape == expected


# (c) expand_to_full against an independent construction.


def _reference_full(values: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    if covariance_type == "full":
        return np.array(values)
    if covariance_type == "tied":
        return np.stack([np.array(values) for _ in range(k)])
    if covariance_type == "diag":
        return np.stack([np.diag(row) for row in values])
    return np.stack([value * np.identity(d) for value in values])


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_expand_to_full_matches_an_independent_construction(covariance_type, backend):
    from numpyro_gmm.mixture.covariance import expand_to_full
    from numpyro_gmm.mixture.params import full_covariances, full_precisions

    values = _random_covariances(np.random.default_rng(5), covariance_type, K, D)
    values = values.astype(np.float32)
    given = values if backend == "numpy" else jnp.asarray(values)
    expanded = expand_to_full(given, covariance_type, K, D)
    if backend == "numpy":
        assert isinstance(expanded, np.ndarray)
    else:
        assert isinstance(expanded, jax.Array)
    assert expanded.dtype == np.float32
    assert expanded.shape == (K, D, D)
    np.testing.assert_array_equal(
        np.asarray(expanded), _reference_full(values, covariance_type, K, D)
    )
    # The params wrappers are the same expansion.
    np.testing.assert_array_equal(
        np.asarray(full_covariances(given, covariance_type, K, D)), np.asarray(expanded)
    )
    factor = jnp.sqrt(jnp.asarray(values)) if covariance_type in ("diag", "spherical") else None
    if factor is not None:
        np.testing.assert_array_equal(
            np.asarray(full_precisions(factor, covariance_type, K, D)),
            _reference_full(np.asarray(factor**2), covariance_type, K, D),
        )


def test_expand_to_full_infers_the_number_of_features_except_for_spherical():
    from numpyro_gmm.mixture.covariance import expand_to_full

    diag = np.ones((K, D))
    assert expand_to_full(diag, "diag", K).shape == (K, D, D)
    assert expand_to_full(np.eye(D), "tied", K).shape == (K, D, D)
    with pytest.raises(ValueError, match="n_features"):
        expand_to_full(np.ones(K), "spherical", K)


def test_expand_to_full_of_a_tied_numpy_matrix_is_writable():
    from numpyro_gmm.mixture.covariance import expand_to_full

    expanded = expand_to_full(np.eye(D), "tied", K, D)
    expanded[0, 0, 0] = 5.0
    assert expanded[1, 0, 0] == 1.0


def test_expand_to_full_works_under_jit():
    from numpyro_gmm.mixture.covariance import expand_to_full

    values = jnp.arange(1.0, K + 1.0)
    jitted = jax.jit(lambda v: expand_to_full(v, "spherical", K, D))
    np.testing.assert_array_equal(
        np.asarray(jitted(values)), _reference_full(np.asarray(values), "spherical", K, D)
    )


# (d) the host-side checks give the same message.


def _typo_message() -> str:
    from numpyro_gmm.mixture.covariance import check_covariance_type

    with pytest.raises(ValueError) as info:
        check_covariance_type(TYPO)
    return str(info.value)


def test_check_options_gives_the_same_message():
    from numpyro_gmm import validation

    with pytest.raises(ValueError) as info:
        validation.check_options(
            n_components=2,
            covariance_type=TYPO,
            init_params="kmeans",
            reg_covar=1e-6,
            tol=1e-3,
            max_iter=10,
            n_init=1,
        )
    assert str(info.value) == _typo_message()


def test_check_initial_values_and_check_prior_give_the_same_message():
    from numpyro_gmm import validation

    with pytest.raises(ValueError) as info:
        validation.check_initial_values(
            None, None, np.ones(K), n_components=K, n_features=D, covariance_type=TYPO
        )
    assert str(info.value) == _typo_message()
    with pytest.raises(ValueError) as info:
        validation.check_prior(
            GaussianMixturePrior(), n_components=K, n_features=D, covariance_type=TYPO
        )
    assert str(info.value) == _typo_message()


def test_model_builder_and_conjugate_mapping_give_the_same_message():
    from numpyro_gmm.models import gaussian_mixture
    from numpyro_gmm.numpyro_bridge.conjugate import ConjugateMixture

    with pytest.raises(ValueError) as info:
        gaussian_mixture(K, TYPO)
    assert str(info.value) == _typo_message()
    mapping = ConjugateMixture(TYPO, GaussianMixturePrior(mean_loc=np.zeros(D)), "w", "m", "c", {})
    with pytest.raises(ValueError) as info:
        mapping.from_sites({"w": np.ones(K) / K, "m": np.zeros((K, D)), "c": np.ones(K)})
    assert str(info.value) == _typo_message()


@pytest.mark.parametrize("covariance_type", TYPES)
def test_conjugate_from_sites_shapes(covariance_type):
    from numpyro_gmm.mixture.covariance import covariance_shape
    from numpyro_gmm.numpyro_bridge.conjugate import ConjugateMixture

    shape = covariance_shape(covariance_type, K, D)
    mapping = ConjugateMixture(
        covariance_type, GaussianMixturePrior(mean_loc=np.zeros(D)), "w", "m", "c", {}
    )
    _, means, covariances = mapping.from_sites(
        {"w": np.ones(K) / K, "m": np.zeros(K * D), "c": np.ones(int(np.prod(shape)))}
    )
    assert means.shape == (K, D)
    assert covariances.shape == shape


@pytest.mark.parametrize("covariance_type", TYPES)
def test_validation_accepts_precisions_of_the_table_shape(covariance_type):
    from numpyro_gmm import validation
    from numpyro_gmm.mixture.covariance import covariance_shape

    precisions = _random_covariances(np.random.default_rng(6), covariance_type, K, D)
    _, _, checked = validation.check_initial_values(
        None, None, precisions, n_components=K, n_features=D, covariance_type=covariance_type
    )
    assert checked.shape == covariance_shape(covariance_type, K, D)
    wrong = np.ones((K + 1,) + covariance_shape(covariance_type, K, D)[1:])
    if covariance_type != "tied":
        with pytest.raises(ValueError, match="should have the shape"):
            validation.check_initial_values(
                None, None, wrong, n_components=K, n_features=D, covariance_type=covariance_type
            )
