"""Data parallelism: fits over 8 simulated CPU devices equal single-device fits.

The sharded fits run once per module on the 8 simulated CPU devices that ``conftest.py`` asks
for (``XLA_FLAGS`` must be set before JAX starts).
"""

import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from numpyro_gmm.parallel import ShardedRows, data_mesh, shard_rows

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import warnings
import jax
import numpy as np
from helpers import make_mixture_data
from numpyro_gmm.fitting import fit_gaussian_mixture, log_joint
from numpyro_gmm.pipeline import fit_mixture
from numpyro_gmm.mixture.priors import GaussianMixturePrior
from numpyro_gmm.parallel import data_mesh
from numpyro_gmm.sklearn import GaussianMixture

warnings.simplefilter("ignore")
assert len(jax.devices()) == 8, jax.devices()
mesh = data_mesh(8)
out = {}

def data(n_samples, dtype):
    x, _, _ = make_mixture_data(np.random.default_rng(n_samples), n_samples=n_samples,
                                n_features=3, n_components=3, separation=6.0)
    return x.astype(dtype)

def differences(one, many, n_iter):
    scale = max(1.0, float(np.max(np.abs(one[1]))))
    return {
        "weights": float(np.max(np.abs(one[0] - many[0]))),
        "means": float(np.max(np.abs(one[1] - many[1]))) / scale,
        "covariances": float(np.max(np.abs(one[2] - many[2])) / max(1.0, np.max(np.abs(one[2])))),
        "objective": abs(one[3] - many[3]) / abs(one[3]),
        "n_iter": n_iter,
    }

def engine(name, n_samples, dtype, method="em", covariance_type="full", **kwargs):
    # The engine directly, with chunks smaller than a device's block (several per device).
    x = data(n_samples, dtype)
    common = dict(covariance_type=covariance_type, rng_key=1, chunk_size=100, **kwargs)
    fits = [fit_gaussian_mixture(jax.numpy.asarray(x), 3, kernel=method, **common),
            fit_gaussian_mixture(x, 3, kernel=method, mesh=mesh, **common)]
    one, many = ((f.params.weights, f.params.means, f.covariances, f.objective) for f in fits)
    out[name] = differences(one, many, [f.n_iter for f in fits])

def method(name, n_samples, dtype, method, covariance_type="full", **kwargs):
    # Through the pipeline: method-level stages (standardization, merging, polish) too.
    x = data(n_samples, dtype)
    common = dict(covariance_type=covariance_type, rng_key=1, **kwargs)
    fits = [fit_mixture(jax.numpy.asarray(x), 3, method=method, **common),
            fit_mixture(x, 3, method=method, mesh=mesh, **common)]
    one, many = ((f.params.weights, f.params.means, f.covariances, f.objective) for f in fits)
    out[name] = differences(one, many, [f.n_iter for f in fits])

def facade(name, n_samples, dtype):
    x = data(n_samples, dtype)
    fits = [GaussianMixture(3, random_state=0, devices=devices).fit(x)
            for devices in (None, 8)]
    one, many = ((f.weights_, f.means_, f.covariances_, f.objective_) for f in fits)
    out[name] = differences(one, many, [f.n_iter_ for f in fits])

prior = GaussianMixturePrior(weight_concentration=np.full(3, 2.0), mean_loc=np.zeros(3),
                             mean_precision=np.asarray(0.01), covariance_df=np.asarray(5.0),
                             covariance_scale=np.eye(3))
for covariance_type in ("tied", "diag", "spherical"):
    engine(f"em-{covariance_type}-float32", 2003, "float32", "em", covariance_type,
           init_params="kmeans", max_iter=30)
facade("em-full-float32", 2003, "float32")
engine("biglearn_em-float32", 1501, "float32", "biglearn_em", max_iter=8)
with jax.enable_x64(True):
    engine("em-full-float64", 2003, "float64", "em", init_params="random", max_iter=30)
    engine("em-map-divisible-float64", 2000, "float64", "em", max_iter=30, prior=prior)
    method("gradient_em-float64", 1501, "float64", "gradient_em", "spherical", max_iter=40,
           options={"polish_iter": 10})
    x = data(1501, "float64")
    params = fit_mixture(jax.numpy.asarray(x), 3, max_iter=3).params
    values = [log_joint(x, params, "full", prior), log_joint(x, params, "full", prior, mesh=mesh)]
    out["log_joint-float64"] = {"objective": abs(values[0] - values[1]) / abs(values[0])}
result = out
"""


@pytest.fixture(scope="module")
def sharded_differences():
    namespace: dict = {}
    with warnings.catch_warnings():
        exec(compile(_SCRIPT, "<sharded fits>", "exec"), namespace)
    return namespace["result"]


# Relative tolerances: the sums are the same up to float reassociation over 8 blocks.
_TOLERANCE = {"float32": 2e-4, "float64": 1e-9}


@pytest.mark.parametrize(
    "case",
    [
        "em-tied-float32",
        "em-diag-float32",
        "em-spherical-float32",
        "em-full-float32",
        "biglearn_em-float32",
        "em-full-float64",
        "em-map-divisible-float64",
        "gradient_em-float64",
        "log_joint-float64",
    ],
)
def test_eight_devices_equal_one_device(sharded_differences, case):
    result = sharded_differences[case]
    tolerance = _TOLERANCE[case.rsplit("-", 1)[1]]
    for key in ("weights", "means", "covariances", "objective"):
        assert result.get(key, 0.0) < tolerance, (key, result)
    if "n_iter" in result and case.endswith("float64"):
        assert result["n_iter"][0] == result["n_iter"][1], result


def test_shard_rows_pads_to_the_device_count():
    mesh = data_mesh(1)
    x = np.arange(10.0, dtype=np.float32).reshape(5, 2)
    rows = shard_rows(x, mesh)
    assert isinstance(rows, ShardedRows) and rows.n_samples == 5
    np.testing.assert_array_equal(np.asarray(rows.array), x)
    assert shard_rows(rows, mesh) is rows


def test_data_mesh_rejects_impossible_requests():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        data_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="empty"):
        data_mesh([])
