"""Shared fixtures: CPU only, dtype switching, synthetic mixtures."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Eight simulated CPU devices for the data-parallel tests, set before JAX starts; the other
# tests run on the first device as usual.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
# The tests check results, not speed, on small data: XLA's level 0 compiles about twice as
# fast (the suite is mostly compilation). Benchmarks run with XLA's defaults.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] += " --xla_backend_optimization_level=0"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from numpyro_gmm.program_cache import release_compiled_programs_if_crowded  # noqa: E402

from helpers import make_mixture_data  # noqa: E402


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Run the test in float32 and in float64 (JAX x64 switched on for the latter)."""
    with jax.enable_x64(request.param == "float64"):
        yield np.dtype(request.param)


@pytest.fixture
def x64():
    """Run the test with JAX's float64 mode on."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def blobs():
    """Four well-separated 3-D clusters of different shapes, 400 rows."""
    return make_mixture_data(
        np.random.default_rng(0), n_samples=400, n_features=3, n_components=4, separation=6.0
    )


@pytest.fixture(autouse=True)
def _bounded_compiled_programs():
    """Drop JAX's compiled programs when the worker holds many memory mappings.

    A test worker compiles thousands of programs; each holds about 80 mappings, and the
    kernel's vm.max_map_count (65530) would end the worker with a segmentation fault inside
    LLVM. The package's own guard (40000, checked before each fit) is kept lower here, where
    fits run back to back.
    """
    yield
    release_compiled_programs_if_crowded(max_maps=20000)
