"""Import layers, bounded program caches that hold no data, and the seams between layers."""

import gc
import subprocess
import sys
import warnings
import weakref

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import numpyro_gmm as ngm
from numpyro_gmm import infer
from numpyro_gmm.program_cache import ProgramCache

_EDGE_PACKAGES = ("numpyro", "xarray", "arviz", "matplotlib", "sklearn", "pandas")


@pytest.mark.parametrize(
    "module",
    [
        "numpyro_gmm.mixture",
        "numpyro_gmm.kernels",
        "numpyro_gmm.kernels.em",
        "numpyro_gmm.kernels.biglearn_em",
        "numpyro_gmm.kernels.gradient_em",
        "numpyro_gmm.kernels.generalized_em",
        "numpyro_gmm.driver",
        "numpyro_gmm.fitting",
        "numpyro_gmm.pipeline",
    ],
)
def test_math_kernels_and_engine_import_no_edge_package(module):
    code = (
        f"import sys, {module}\n"
        "from numpyro_gmm.kernels import available_kernels\n"
        "available_kernels()\n"
        f"print(sorted(m for m in {_EDGE_PACKAGES!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"{module} loads {out.strip()}"


def test_package_import_is_lazy():
    code = (
        "import sys, numpyro_gmm\n"
        f"print(sorted(m for m in {_EDGE_PACKAGES!r} if m in sys.modules))\n"
        "numpyro_gmm.GaussianMixture\n"
        "print('numpyro_gmm.sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["[]", "True"]


def test_numpyro_stays_whole_when_arviz_is_imported_first():
    """arviz registers numpyro lazily; the package's own numpyro imports must not leave
    numpyro.distributions without its submodules (numpyro.factor and NUTS need them)."""
    code = (
        "import arviz, numpyro_gmm.numpyro_bridge, numpyro_gmm.infer, numpyro\n"
        "print(hasattr(numpyro.distributions, 'distribution'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"]


def test_program_cache_is_bounded_and_least_recently_used_first_out():
    cache = ProgramCache(maxsize=2)
    built = []
    for key in ("a", "b", "a", "c", "b"):
        cache.get(key, lambda key=key: built.append(key) or key)
    assert built == ["a", "b", "c", "b"]  # "b" was evicted by "c" ("a" was used more recently)
    assert len(cache) == 2
    assert cache.get(["unhashable"], lambda: "fresh") == "fresh" and len(cache) == 2


def lognormal_model(x):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0))
        scales = numpyro.sample("scales", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample(
            "obs",
            dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, scales)),
            obs=x,
        )


def test_cached_generalized_em_program_keeps_no_data_alive():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, 60), rng.normal(3, 1, 60)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        result = ngm.fit(lognormal_model, x, num_restarts=2, max_iter=20)
    assert len(infer._PROGRAMS) >= 1
    data = weakref.ref(result.mixture.args[0])
    del result
    gc.collect()
    assert data() is None, "a cached program keeps the user's data alive"


def test_rng_key_may_be_a_numpy_integer():
    x = np.random.default_rng(1).normal(size=(50, 2))
    a = ngm.fit(ngm.models.gaussian_mixture(2), x, num_restarts=2, rng_key=np.int64(3))
    b = ngm.fit(ngm.models.gaussian_mixture(2), x, num_restarts=2, rng_key=3)
    np.testing.assert_array_equal(a.params["locs"], b.params["locs"])
    with pytest.raises(TypeError, match="rng_key must be an integer seed or a JAX PRNG key"):
        ngm.fit(ngm.models.gaussian_mixture(2), x, rng_key="three")


def test_warm_start_with_gradient_em_continues_from_the_previous_fit():
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) + 6])
    gm = ngm.GaussianMixture(2, method="gradient_em", warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        gm.fit(x)
        first = gm.objective_
        means = gm.means_.copy()
        gm.fit(x)
    # The second fit polishes the first one's components: same clusters, no worse.
    np.testing.assert_allclose(np.sort(gm.means_, axis=0), np.sort(means, axis=0), atol=1e-2)
    assert gm.objective_ >= first - 1e-3 * abs(first)
    assert "merge_report" not in gm.method_results_  # no new exploration


def test_unknown_covariance_type_is_refused_everywhere():
    x = np.random.default_rng(3).normal(size=(40, 2)).astype(np.float32)
    calls = [
        lambda: ngm.GaussianMixture(2, covariance_type="ful").fit(x),
        lambda: ngm.fit_mixture(jnp.asarray(x), 2, covariance_type="ful"),
        lambda: ngm.fit_streaming(x, 2, covariance_type="ful"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="Unknown covariance_type 'ful'.*'full'"):
            call()


def test_compiled_programs_are_released_when_the_process_holds_many_mappings(monkeypatch):
    import jax

    from numpyro_gmm import program_cache

    square = jax.jit(lambda v: v * v)
    square(1.0)
    assert square._cache_size() == 1
    assert not program_cache.release_compiled_programs_if_crowded()  # far below the limit
    monkeypatch.setattr(program_cache, "_MAX_MEMORY_MAPS", 0)
    assert program_cache.release_compiled_programs_if_crowded()
    assert square._cache_size() == 0
