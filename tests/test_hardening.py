"""Bad-input and fault matrix over every public entry point (documented in docs/INPUTS.md).

Entry points: ``ngm.fit`` with the builder model, ``ngm.fit`` with a user-written
(non-conjugate) model, the ``GaussianMixture`` facade and the command line, each with the
methods "em", "gradient_em" and "biglearn_em". Every cell either fails with an error that
says what to do, or gives a fit that is checked (never NaN, never silently wrong).

All fits share one configuration (2 restarts, 30 iterations, data of shape (80, 2) unless
the case is about the shape) so that the compiled programs are reused across cases. A case
that needs a shape of its own runs for every method through the facade and for "em" through
the command line; NUMPYRO_GMM_FULL=1 runs it through every entry point and method.
"""

import functools
import inspect
import os
import re
import warnings
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import xarray as xr

import numpyro_gmm as ngm
from numpyro_gmm import cli
from numpyro_gmm.errors import EmptyComponentWarning
from numpyro_gmm.kernels.biglearn_em import build_kernel as biglearn_kernel

FULL = os.environ.get("NUMPYRO_GMM_FULL") == "1"
METHODS = ("em", "biglearn_em", "gradient_em", "split_merge_em")
ENTRIES = ("builder", "user", "facade", "cli")
N_RESTARTS, MAX_ITER, REG_COVAR = 2, 30, 1e-6
BIGLEARN_FLOOR = inspect.signature(biglearn_kernel).parameters["eigenvalue_floor"].default

_rng = np.random.default_rng(0)
BASE = np.concatenate([_rng.normal(-3.0, 1.0, (40, 2)), _rng.normal(3.0, 1.0, (40, 2))])
NAMES = ["duration", "waiting"]


# --------------------------------------------------------------------------- entry points


class Fit(NamedTuple):
    """A fit seen the same way from every entry point."""

    weights: np.ndarray  # (K,)
    means: np.ndarray  # (K, D)
    variances: np.ndarray  # (K, D): the diagonals of the component covariances
    covariances: np.ndarray | None  # (K, D, D) where the entry point has full covariances
    labels: np.ndarray | None  # (N,)
    names: list | None  # feature names kept by the entry point
    warnings: list  # warning categories raised during the fit


class CLIFailure(Exception):
    """The command line exited non-zero; the message is its standard error."""

    def __init__(self, status: int, stderr: str) -> None:
        super().__init__(stderr)
        self.status = status


@functools.cache
def user_model(n_components: int = 2, concentration: float = 1.0, scale_prior: float = 2.0):
    """A model as a user writes it: LogNormal scales make it non-conjugate.

    Cached: generalized EM compiles once per model function (and data shape).
    """

    def model(x):
        n_features = x.shape[1]
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.full(n_components, concentration)))
        with numpyro.plate("components", n_components):
            locs = numpyro.sample("locs", dist.Normal(jnp.zeros(n_features), 10.0).to_event(1))
            scales = numpyro.sample(
                "scales", dist.LogNormal(jnp.zeros(n_features), scale_prior).to_event(1)
            )
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample(
                "obs",
                dist.MixtureSameFamily(
                    dist.Categorical(probs=weights), dist.Normal(locs, scales).to_event(1)
                ),
                obs=x,
            )

    return model


def _diagonals(covariances: np.ndarray) -> np.ndarray:
    return np.diagonal(covariances, axis1=-2, axis2=-1)


def _run_api(entry, x, method, n_components, options):
    options = dict(options)
    if entry == "facade":
        gm = ngm.GaussianMixture(
            n_components,
            method=method,
            n_init=N_RESTARTS,
            max_iter=MAX_ITER,
            reg_covar=options.pop("reg_covar", REG_COVAR),
            random_state=0,
            **options,
        ).fit(x)
        names = getattr(gm, "feature_names_in_", None)
        covariances = np.asarray(gm.covariances_)
        return (
            np.asarray(gm.weights_),
            np.asarray(gm.means_),
            covariances,
            gm.predict(x),
            None if names is None else list(names),
        )
    model = options.pop("model", None)
    if model is None:
        model = (
            ngm.models.gaussian_mixture(n_components)
            if entry == "builder"
            else user_model(n_components)
        )
    result = ngm.fit(
        model, x, method=method, num_restarts=N_RESTARTS, max_iter=MAX_ITER, rng_key=0, **options
    )
    params = {name: np.asarray(value) for name, value in result.params.items()}
    if entry == "builder":
        covariances = params["covariances"]
    else:
        covariances = np.vectorize(np.diag, signature="(d)->(d,d)")(
            params["scales"].astype(np.float64) ** 2
        )
    labels = result.predict(np.asarray(x, dtype=float))
    return params["weights"], params["locs"], covariances, labels, None


def _run_cli(x, method, n_components, tmp_path, capsys):
    array = np.asarray(x, dtype=float)
    array = array[:, None] if array.ndim == 1 else array
    n_features = array.shape[1]
    if isinstance(x, pd.DataFrame):
        names = list(x.columns)
    else:
        names = NAMES if n_features == len(NAMES) else [f"f{j}" for j in range(n_features)]
    path, out = tmp_path / "data.csv", tmp_path / "fit.nc"
    np.savetxt(path, array, delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    argv = ["fit", str(path), "-k", str(n_components), "--method", method]
    # The facade's defaults (tol, init), so that both run the same compiled programs.
    argv += ["--n-init", str(N_RESTARTS), "--max-iter", str(MAX_ITER), "--tol", "1e-3"]
    argv += ["--init-params", "kmeans", "--random-state", "0"]
    argv += ["--out", str(out), "--no-plot", "--quiet"]
    capsys.readouterr()
    status = cli.main(argv)
    stderr = capsys.readouterr().err
    if status != 0:
        assert not out.exists(), "a failed run must not leave an output file"
        raise CLIFailure(status, stderr)
    with xr.open_datatree(out) as tree:
        post = tree["posterior"]
        weights = post["weights"].values[0, 0]
        means = post["locs"].values[0, 0]
        covariances = post["covariances"].values[0, 0]
        kept = [str(v) for v in post["feature"].values]
    caught = [w for w in stderr.splitlines() if "warning:" in w]
    return weights, means, covariances, None, kept, caught


def run_entry(entry, x, method, *, n_components=2, tmp_path=None, capsys=None, **options):
    """Fit ``x`` through ``entry``; return a :class:`Fit` or raise the entry's error."""
    if entry == "cli":
        weights, means, covariances, labels, names, caught = _run_cli(
            x, method, n_components, tmp_path, capsys
        )
    else:
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            weights, means, covariances, labels, names = _run_api(
                entry, x, method, n_components, options
            )
        caught = [w.category for w in records]
    covariances = np.asarray(covariances)
    full = covariances.ndim == 3
    return Fit(
        np.asarray(weights, float),
        np.asarray(means, float).reshape(len(weights), -1),
        _diagonals(covariances) if full else covariances.reshape(len(weights), -1),
        covariances if full else None,
        labels,
        names,
        caught,
    )


# --------------------------------------------------------------------------- checks


def assert_valid(fit: Fit) -> None:
    """Finite parameters on the simplex and positive variances."""
    for field in ("weights", "means", "variances"):
        assert np.isfinite(getattr(fit, field)).all(), f"non-finite {field}: {fit}"
    assert np.isclose(fit.weights.sum(), 1.0, atol=1e-4)
    assert (fit.weights >= 0).all() and (fit.variances > 0).all()
    if fit.covariances is not None:
        smallest = np.linalg.eigvalsh(np.asarray(fit.covariances, np.float64)).min()
        assert smallest > 0, f"a covariance is not positive definite (eigenvalue {smallest})"


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Labels equal up to a renaming of the components."""
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def sorted_means(fit: Fit) -> np.ndarray:
    return fit.means[np.argsort(fit.means[:, 0])]


_REFERENCE: dict = {}


def reference(entry, method, tmp_path, capsys) -> Fit:
    """The fit of BASE by ``entry`` and ``method`` (cached: other cells compare with it)."""
    if (entry, method) not in _REFERENCE:
        _REFERENCE[entry, method] = run_entry(entry, BASE, method, tmp_path=tmp_path, capsys=capsys)
    return _REFERENCE[entry, method]


# --------------------------------------------------------------------------- the matrix

SINGULAR = r"ill-defined empirical covariance.*increase reg_covar|not positive definite"


class Either(NamedTuple):
    """Either an error matching ``error`` or a fit that passes ``check``."""

    error: str
    check: object

    def __call__(self, fit, entry, method, **kwargs):
        self.check(fit, entry, method, **kwargs)


UNSUPPORTED = "runs on conjugate Gaussian mixtures.*method='em' fits any mixture model"


class Warns(NamedTuple):
    """A fit that warns with a message matching ``message`` (a ``warning:`` line of the command
    line) and passes ``check``."""

    message: str
    check: object


class Case(NamedTuple):
    data: object
    expect: object  # a regex of the expected error, or a check(fit, entry, method, ...)
    n_components: int = 2
    shared_shape: bool = True  # runs for every method in the default (CI) selection
    options: dict = {}


def _nan():
    x = BASE.copy()
    x[3, 1] = np.nan
    return pd.DataFrame(x, columns=NAMES)


def _inf():
    x = BASE.copy()
    x[5, 0] = -np.inf
    return x


def check_constant_column(fit, entry, method, **_):
    assert_valid(fit)
    # Every component sits on the constant. One holding a point or two, under a user model's
    # priors and generalized EM's few L-BFGS steps, gets there only to about 1%.
    heavy = fit.weights > 0.05
    np.testing.assert_allclose(fit.means[heavy, 1], 5.0, rtol=1e-7)
    np.testing.assert_allclose(fit.means[:, 1], 5.0, rtol=1e-2)
    variance = fit.variances[:, 1]
    if entry in ("facade", "cli") and method == "em":
        # Maximum likelihood: the empirical variance (0) plus reg_covar.
        np.testing.assert_allclose(variance, REG_COVAR, rtol=1e-3)
    elif entry in ("facade", "cli") and method == "biglearn_em":
        # BigLearn-EM floors the eigenvalues of standardized covariances (default 1e-5).
        np.testing.assert_allclose(variance, BIGLEARN_FLOOR, rtol=1e-3)
    elif entry in ("facade", "cli"):
        # Gradient EM: a small learned variance, not its unit starting value.
        assert (variance < 1e-3).all(), variance
    elif entry == "builder":
        # MAP: a constant feature has variance 1 in the prior scale cov(x) / K^(2/D) (K = D = 2,
        # models.py), so the joint mode of the Normal-Inverse-Wishart posterior is
        # 0.5 / (N_k + nu0 + D + 2), nu0 = D + 2.
        n_k = fit.weights * len(BASE)
        np.testing.assert_allclose(variance, 0.5 / (n_k + 8) + REG_COVAR, rtol=2e-3)
    else:
        # A user's model without a variance floor: its MAP has a vanishing scale on the
        # constant feature (finite, documented in docs/INPUTS.md); a component of a point or
        # two may stop (converged to tol) before its scale has shrunk.
        assert (variance[heavy] < 1e-6).all() and np.isfinite(variance).all()


def check_duplicates(fit, entry, method, **_):
    assert_valid(fit)
    assert (fit.means > -6).all() and (fit.means < 6).all()


def _scaled_check(factor):
    def check(fit, entry, method, tmp_path, capsys):
        assert_valid(fit)
        ref = reference(entry, method, tmp_path, capsys)
        np.testing.assert_allclose(
            sorted_means(fit) / factor, sorted_means(ref), rtol=2e-2, atol=2e-2
        )
        if fit.labels is not None:
            assert same_partition(fit.labels, ref.labels)

    return check


def check_offset(fit, entry, method, tmp_path, capsys):
    # float64 data are fitted in float64 by the facade and the command line: an offset of
    # 1e8 loses nothing.
    assert_valid(fit)
    ref = reference(entry, method, tmp_path, capsys)
    np.testing.assert_allclose(sorted_means(fit) - 1e8, sorted_means(ref), atol=1e-2)
    if fit.labels is not None:
        assert same_partition(fit.labels, ref.labels)


def check_same_as_array(fit, entry, method, tmp_path, capsys):
    ref = reference(entry, method, tmp_path, capsys)
    np.testing.assert_allclose(fit.means, ref.means, rtol=1e-6)
    np.testing.assert_allclose(fit.variances, ref.variances, rtol=1e-6)
    if entry in ("facade", "cli"):
        assert fit.names == NAMES, "column names must be kept"


def check_integers(fit, entry, method, tmp_path, capsys):
    assert_valid(fit)
    as_float = run_entry(
        entry, np.round(BASE * 10).astype(float), method, tmp_path=tmp_path, capsys=capsys
    )
    np.testing.assert_allclose(fit.means, as_float.means, rtol=1e-6)


def check_one_feature(fit, entry, method, **_):
    assert_valid(fit)
    np.testing.assert_allclose(sorted_means(fit)[:, 0], [-3.0, 3.0], atol=0.5)


def check_finite(fit, entry, method, **_):
    assert_valid(fit)


def check_one_component(fit, entry, method, **_):
    assert_valid(fit)
    x = BASE
    mean, covariance = x.mean(axis=0), np.cov(x.T, bias=True)
    np.testing.assert_allclose(fit.means[0], mean, atol=1e-4 if entry != "user" else 1e-3)
    if entry in ("facade", "cli"):
        expected = covariance + REG_COVAR * np.eye(2)
    elif entry == "builder":
        # MAP of one Normal-Inverse-Wishart component with m0 = mean(x): the joint mode
        # (Psi0 + N S) / (nu0 + N + D + 2), nu0 = D + 2, Psi0 = cov(x) / K^(2/D) shrunk by 1e-3
        # towards its diagonal (K = 1).
        n = len(x)
        prior_scale = (1 - 1e-3) * covariance + 1e-3 * np.diag(np.diag(covariance))
        expected = (prior_scale + n * covariance) / (n + 8) + REG_COVAR
    else:
        expected = np.diag(np.diag(covariance))  # diagonal model, weak priors
        np.testing.assert_allclose(fit.variances[0], np.diag(expected), rtol=5e-2)
        return
    np.testing.assert_allclose(fit.covariances[0], expected, rtol=1e-3, atol=1e-4)


def check_collapse(fit, entry, method, **_):
    assert_valid(fit)
    assert fit.weights.min() < 1e-3
    if entry != "user":
        assert EmptyComponentWarning in fit.warnings


def check_revived(fit, entry, method, **_):
    """The split-merge search gives the emptied component rows again (a split)."""
    assert_valid(fit)
    assert fit.weights.min() > 0.05
    assert EmptyComponentWarning not in fit.warnings


_FAR = np.array([[-3.0, -3.0], [3.0, 3.0], [1e3, 1e3]])
COLLAPSE_OPTIONS = {
    "facade": {
        "weights_init": [0.4, 0.4, 0.2],
        "means_init": _FAR,
        "precisions_init": np.eye(2)[None].repeat(3, 0),
    },
    "builder": {
        "initial_values": {
            "weights": np.array([0.4, 0.4, 0.2]),
            "locs": _FAR,
            "covariances": np.eye(2)[None].repeat(3, 0),
        }
    },
    "user": {
        "initial_values": {
            "weights": np.array([0.4, 0.4, 0.2]),
            "locs": _FAR,
            "scales": np.ones((3, 2)),
        }
    },
}

CASES = {
    "nan": Case(_nan(), r"contains NaN at row 3, column 'waiting'.*impute"),
    "inf": Case(_inf(), r"contains infinity at row 5, column 0.*Remove"),
    "empty": Case(np.empty((0, 2)), r"empty"),
    "one_row": Case(BASE[:1], r"at least 2 samples.*one row has no spread.*Use more data"),
    "n_lt_k": Case(BASE[:3], r"n_samples >= n_components", n_components=5),
    "constant_column": Case(np.c_[BASE[:, 0], np.full(80, 5.0)], check_constant_column),
    "duplicated_rows": Case(np.repeat(BASE[::4], 4, axis=0), check_duplicates),
    "scale_1e8": Case(BASE * 1e8, _scaled_check(1e8)),
    "scale_1e-8": Case(
        BASE * 1e-8,
        Warns(
            r"reg_covar=1e-06 is more than a tenth.*Rescale the data.*<= [\d.]+e-16", check_finite
        ),
    ),
    "offset_1e8_float32": Case(
        BASE + 1e8, r"cannot be represented in float32.*Subtract the column means"
    ),
    "integers": Case(np.round(BASE * 10).astype(np.int64), check_integers),
    "dataframe": Case(pd.DataFrame(BASE, columns=NAMES), check_same_as_array),
    "xarray": Case(
        xr.DataArray(BASE, dims=("obs", "feature"), coords={"feature": NAMES}),
        check_same_as_array,
    ),
    "one_feature": Case(BASE[:, :1], check_one_feature, shared_shape=False),
    "200_features": Case(
        np.c_[BASE, _rng.normal(size=(80, 198))], check_finite, shared_shape=False
    ),
    "one_component": Case(BASE, check_one_component, n_components=1, shared_shape=False),
    "collapsing_weight": Case(BASE, check_collapse, n_components=3, shared_shape=False),
}

# Cells whose outcome differs from the case's default (entry, method) -> expectation.
OVERRIDES = {
    # A non-conjugate model runs generalized EM only.
    **{(c, "user", m): UNSUPPORTED for c in CASES for m in METHODS[1:]},
    # Errors raised before the model is read keep their own message for user models too.
    **{
        (c, "user", m): CASES[c].expect
        for c in ("nan", "inf", "empty", "offset_1e8_float32", "one_row", "n_lt_k")
        for m in METHODS
    },
    # A user's model has no reg_covar, and its priors are in absolute units (Normal(0, 10)
    # means, LogNormal(0, 2) scales): its MAP on rescaled data is not the rescaled MAP.
    # Finite, as documented; not compared with the unscaled fit.
    ("scale_1e-8", "user", "em"): check_finite,
    ("scale_1e8", "user", "em"): check_finite,
    # The facade and the command line fit float64 data in float64.
    **{("offset_1e8_float32", e): check_offset for e in ("facade", "cli")},
    # The command line reports input errors in its own words.
    ("nan", "cli"): r"column 'waiting' has a missing value on line 5",
    ("inf", "cli"): r"column 'duration' of .* has an infinite value in data row 6",
    ("empty", "cli"): r"has a header but no data rows",
    ("one_row", "cli"): r"has 1 rows, fewer than the 2 components asked for",
    ("n_lt_k", "cli"): r"has 3 rows, fewer than the 5 components asked for",
    ("scale_1e-8", "cli"): Warns(
        r"reg_covar=1e-06 is more than a tenth.*--reg-covar", check_finite
    ),
    # With N = 80 < D = 200, full covariances are singular but for reg_covar: depending on
    # the start, a finite fit (with warnings) or the error that says what to do.
    **{("200_features", e): Either(SINGULAR, check_finite) for e in ("builder", "facade", "cli")},
    ("collapsing_weight", "facade", "split_merge_em"): check_revived,
    # Gradient EM given complete initial values is a warm start: it polishes them.
    **{
        ("collapsing_weight", e, m): r"takes no initial_values.*method='em'"
        for e in ("builder", "user")
        for m in METHODS[1:]
    },
}

# Cells that do not apply: the command line has no initial values and reads CSV files.
NOT_APPLICABLE = {("collapsing_weight", "cli"), ("xarray", "cli")}


def _in_default_selection(case: str, entry: str, method: str) -> bool:
    """Every case runs for every method (through the facade at least) and, with "em", through
    every entry point; cells with a shape of their own run only there.

    Each new shape costs a compilation per entry point and method (generalized EM on a
    user's model the most); NUMPYRO_GMM_FULL=1 adds the remaining cells.
    """
    if FULL or CASES[case].shared_shape:
        return True
    return entry == "facade" or (method == "em" and entry == "cli")


def _cells():
    for case in CASES:
        for entry in ENTRIES:
            if (case, entry) in NOT_APPLICABLE:
                continue
            for method in METHODS:
                if _in_default_selection(case, entry, method):
                    yield pytest.param(case, entry, method, id=f"{case}-{entry}-{method}")


def _expectation(case, entry, method):
    for key in ((case, entry, method), (case, entry)):
        if key in OVERRIDES:
            return OVERRIDES[key]
    return CASES[case].expect


@pytest.mark.parametrize(("case", "entry", "method"), list(_cells()))
def test_input_matrix(case, entry, method, tmp_path, capsys):
    spec = CASES[case]
    expect = _expectation(case, entry, method)
    options = dict(spec.options)
    if case == "collapsing_weight":
        options.update(COLLAPSE_OPTIONS[entry])
    if case == "one_component" and entry == "user":
        options["model"] = user_model(1)
    if case == "collapsing_weight" and entry == "user":
        options["model"] = user_model(3)
    run = lambda: run_entry(  # noqa: E731
        entry,
        spec.data,
        method,
        n_components=spec.n_components,
        tmp_path=tmp_path,
        capsys=capsys,
        **options,
    )
    if isinstance(expect, str):
        if entry == "cli":
            with pytest.raises(CLIFailure) as failure:
                run()
            message = str(failure.value)
            assert failure.value.status == 2
            assert message.count("\n") == 1 and message.startswith("numpyro-gmm: error: ")
            assert re.search(expect, message), message
        else:
            with pytest.raises((ValueError, TypeError), match=expect):
                run()
        return
    if isinstance(expect, Warns):
        # run_entry records the warnings: the command line's "warning:" lines, the API's
        # warning classes (the message is checked in test_validation).
        fit = run()
        if entry == "cli":
            assert any(re.search(expect.message, line) for line in fit.warnings), fit.warnings
        else:
            assert ngm.RegularizationWarning in fit.warnings, fit.warnings
        expect.check(fit, entry, method, tmp_path=tmp_path, capsys=capsys)
        return
    try:
        fit = run()
    except (ValueError, TypeError, CLIFailure) as error:
        if not (isinstance(expect, Either) and re.search(expect.error, str(error))):
            raise
        return
    expect(fit, entry, method, tmp_path=tmp_path, capsys=capsys)


# --------------------------------------------------------------------------- invalid priors


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weight_concentration": np.nan}, "weight_concentration contains NaN or infinity"),
        ({"weight_concentration": -1.0}, "weight_concentration must be > 0.*use 1"),
        ({"mean_precision": np.inf}, "mean_precision contains NaN or infinity"),
        ({"mean_precision": 0.0}, "mean_precision must be > 0"),
        ({"mean_loc": [np.nan, 0.0]}, "mean_loc contains NaN"),
        ({"covariance_scale": np.full((2, 2), np.nan)}, "covariance_scale contains NaN"),
        ({"variance_concentration": 0.0}, "variance_concentration must be > 0"),
        ({"variance_rate": -1.0}, "variance_rate must be > 0"),
        ({"n_features": 0}, "n_features must be an integer >= 1"),
    ],
)
def test_builder_refuses_invalid_hyperparameters(options, message):
    with pytest.raises(ValueError, match=message):
        ngm.models.gaussian_mixture(2, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"covariance_df": 0.5}, r"covariance_df must be > n_features - 1 = 1.*default is"),
        ({"covariance_scale": -np.eye(2)}, "covariance_scale must be symmetric positive"),
        ({"covariance_scale": np.eye(3)}, r"covariance_scale should have shape \(2, 2\)"),
        ({"mean_loc": [0.0, 0.0, 0.0]}, r"mean_loc should be a scalar or have shape \(2,\)"),
        ({"weight_concentration": 0.5}, "Dirichlet with concentration 0.5 < 1.*MAP does not"),
    ],
)
def test_fit_refuses_priors_that_do_not_fit_the_data(options, message):
    model = ngm.models.gaussian_mixture(2, **options)
    with pytest.raises(ValueError, match=message):
        ngm.fit(model, BASE, num_restarts=N_RESTARTS, max_iter=MAX_ITER)


@pytest.mark.parametrize(
    ("method", "option"), [("biglearn_em", "p_joint"), ("gradient_em", "step_size")]
)
def test_method_options_must_be_plain_values(method, option):
    # They configure the compiled program; an array would fail deep inside JAX.
    with pytest.raises(
        TypeError, match=f"Method option {option}=array.*number, a bool or a string"
    ):
        ngm.fit(ngm.models.gaussian_mixture(2), BASE, method=method, **{option: np.ones(2)})


def test_user_model_with_unbounded_prior_density_is_refused():
    with pytest.raises(ValueError, match="site 'weights'.*concentration 0.5 < 1.*NUTS"):
        ngm.fit(user_model(2, concentration=0.5), BASE, num_restarts=N_RESTARTS)


def test_user_model_with_invalid_prior_parameter_is_refused():
    with pytest.raises(ValueError, match="invalid scale parameter.*finite parameters"):
        ngm.fit(user_model(2, scale_prior=np.nan), BASE, num_restarts=N_RESTARTS)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"weight_concentration": [1.0, np.inf]}, "NaN or infinity"),
        ({"variance_concentration": 1.0, "variance_rate": -1.0}, "must be > 0"),
    ],
)
def test_facade_refuses_invalid_prior(fields, message):
    prior = ngm.GaussianMixturePrior(**fields)
    with pytest.raises(ValueError, match=message):
        ngm.GaussianMixture(2, covariance_type="spherical", prior=prior).fit(BASE)


# --------------------------------------------------------------------------- conjugate models


@pytest.mark.parametrize(
    ("n_components", "covariance_type", "scale"),
    [
        (1, "full", 1.0),
        (1, "tied", 1.0),
        (2, "full", 1e-8),
        (2, "diag", 1e-8),
        (1, "spherical", 1.0),
    ],
)
def test_builder_models_are_recognized_as_conjugate(n_components, covariance_type, scale):
    # K = 1 makes a full covariance site as large as a tied one, and data on a 1e-8 scale
    # make every hyperparameter tiny: the closed-form path must still be found (before,
    # both fell back to generalized EM or refused biglearn_em).
    from numpyro_gmm.numpyro_bridge import read_model
    from numpyro_gmm.numpyro_bridge.conjugate import match_conjugate

    model = ngm.models.gaussian_mixture(n_components, covariance_type)
    conjugate = match_conjugate(read_model(model, BASE * scale))
    assert conjugate is not None
    assert conjugate.covariance_type == covariance_type
