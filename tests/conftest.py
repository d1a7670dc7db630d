"""Shared fixtures: CPU only, dtype switching, synthetic mixtures."""

import os
import sys
from pathlib import Path

# No test may read outside the repository: every file opened under the repository's parent
# folder (a sibling checkout, shared notes next to it) but not inside the repository is recorded by
# this audit hook and fails the test that opened it (see _no_reads_outside_the_repository).
# Subprocesses are other interpreters: tests/test_repository.py greps their sources instead.
_REPOSITORY = str(Path(__file__).resolve().parent.parent)
_PARENT = os.path.dirname(_REPOSITORY)
_PYTHON = os.path.abspath(sys.base_prefix)
_OPENED_OUTSIDE: list[str] = []


def _outside_the_repository(path) -> bool:
    """Whether ``path`` lies under the repository's parent folder but not in the repository.

    Hidden folders next to the repository (``.cache``, ``.pyenv``, ``.local`` where the
    repository sits in a home folder) and the Python installation are not siblings of it.
    """
    path = os.path.abspath(path)
    if not path.startswith(_PARENT + os.sep) or path.startswith(_PYTHON + os.sep):
        return False
    if path == _REPOSITORY or path.startswith(_REPOSITORY + os.sep):
        return False
    return not path[len(_PARENT) + 1 :].startswith(".")


def _record_opens_outside(event: str, args: tuple) -> None:
    if event != "open" or not args or isinstance(args[0], int) or args[0] is None:
        return
    try:
        path = os.fsdecode(args[0])
    except TypeError:
        return
    if _outside_the_repository(path):
        _OPENED_OUTSIDE.append(path)


sys.addaudithook(_record_opens_outside)

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
def _no_reads_outside_the_repository():
    """Fail the test if it opened a file outside the repository (see the audit hook above)."""
    before = len(_OPENED_OUTSIDE)
    yield
    opened = _OPENED_OUTSIDE[before:]
    if opened:
        pytest.fail(f"opened outside the repository {_REPOSITORY}: {sorted(set(opened))}")


def pytest_sessionfinish(session, exitstatus):
    """Fail the run on files opened outside the repository outside any test (collection)."""
    if _OPENED_OUTSIDE and session.exitstatus == 0:
        print(f"\nopened outside the repository: {sorted(set(_OPENED_OUTSIDE))}", file=sys.stderr)
        session.exitstatus = 1


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
