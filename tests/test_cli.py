"""Tests of the ``numpyro-gmm`` command line and of the quick-look plot."""

import argparse
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import sklearn.mixture
import xarray as xr
from matplotlib.figure import Figure

import numpyro_gmm as ngm
import numpyro_gmm.cli.fit as cli_fit
from numpyro_gmm import cli
from numpyro_gmm.datasets import load_example
from numpyro_gmm.pipeline import DEFAULTS, METHODS, method_options
from numpyro_gmm.plotting import plot_mixture
from numpyro_gmm.progress import Every
from numpyro_gmm.sklearn import GaussianMixture

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The covariance site of the builder model gaussian_mixture, per covariance type.
COVARIANCE_SITES = {
    "full": "covariances",
    "tied": "covariance",
    "diag": "variances",
    "spherical": "variances",
}
FAST = ["--n-init", "2", "--max-iter", "200", "--tol", "1e-4", "--random-state", "0"]


def _run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- successful fits


def test_fit_default_example_writes_netcdf_and_png(tmp_path, capsys):
    out, png = tmp_path / "fit.nc", tmp_path / "fit.png"
    argv = ["fit", "-k", "2", *FAST, "--out", str(out), "--plot", str(png)]
    rc, stdout, stderr = _run(argv, capsys)
    assert rc == 0, stderr
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    with xr.open_datatree(out) as dt:
        assert set(dt.children) == {
            "posterior",
            "sample_stats",
            "log_likelihood",
            "observed_data",
            "restarts",
            "em_trace",
            "assignments",
        }
        assert dt["restarts"]["objective"].shape == (2,)  # --n-init 2
        labels = dt["assignments"]["label"].values[0, 0]
        assert labels.shape == (272,) and set(np.unique(labels)) == {0, 1}
        post = dt["posterior"]
        assert post["locs"].shape == (1, 1, 2, 2)
        assert post["covariances"].dims[-3:] == ("component", "feature", "feature_bis")
        assert list(post["feature"].values) == ["eruptions", "waiting"]
        # The well-known maximum-likelihood fit of Old Faithful with two full components.
        order = np.argsort(post["locs"].values[0, 0, :, 0])
        np.testing.assert_allclose(
            post["locs"].values[0, 0][order], [[2.036, 54.48], [4.290, 79.97]], rtol=5e-3
        )
        np.testing.assert_allclose(post["weights"].values[0, 0][order], [0.356, 0.644], atol=5e-3)
        lp = float(dt["sample_stats"]["lp"].item())
        np.testing.assert_allclose(lp, -1130.26, rtol=1e-4)
        # lp is the total log-likelihood: the sum of the pointwise log-likelihood
        np.testing.assert_allclose(lp, float(dt["log_likelihood"]["obs"].sum()), rtol=1e-4)
        assert dt["observed_data"]["obs"].shape == (272, 2)
        assert dt["em_trace"]["lower_bound"].size >= 1
        assert dt.attrs["covariance_type"] == "full"
        assert dt.attrs["method"] == "em"
        assert "faithful" in dt.attrs["data_source"]
        assert dt.attrs["command"].startswith("numpyro-gmm fit --example faithful")
        assert int(dt.attrs["x64"]) == 0
        # the objective is the estimator's, under the package's one convention
        assert "objective_convention" in dt.attrs
        np.testing.assert_allclose(float(dt.attrs["objective"]), lp)
    assert "converged: True" in stdout
    assert "log-likelihood: -1130" in stdout
    assert str(out) in stdout and str(png) in stdout
    assert "Traceback" not in stderr
    assert "numpyro-gmm: fitting 2 components" in stderr  # progress without --quiet
    # By time (a line a second at most; this fit is quicker), and a last line per loop.
    assert re.search(r"Iteration \d+: .*restart.*: [012] converged", stderr), stderr
    assert "Fit done in" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc", "fit.png"]


def test_options_are_passed_to_the_estimator(tmp_path, capsys, monkeypatch):
    seen = {}

    class Recording(GaussianMixture):
        def __init__(self, **kwargs):
            seen.update(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(cli_fit, "_estimator_class", lambda: Recording)
    argv = [
        "fit", "--example", "galaxies", "-k", "3", "--covariance-type", "diag",
        "--n-init", "3", "--init-params", "random_from_data", "--max-iter", "40",
        "--tol", "0.001", "--reg-covar", "0.01", "--random-state", "7", "--quiet",
        "--out", str(tmp_path / "o.nc"), "--no-plot",
    ]  # fmt: skip
    rc, _, stderr = _run(argv, capsys)
    assert rc == 0, stderr
    assert seen == {
        "n_components": 3,
        "covariance_type": "diag",
        "tol": 0.001,
        "reg_covar": 0.01,
        "max_iter": 40,
        "n_init": 3,
        "init_params": "random_from_data",
        "random_state": 7,
        "verbose": 0,
        "verbose_interval": Every(seconds=cli_fit.PROGRESS_SECONDS),
        "method": "em",
        "method_options": None,
    }
    with xr.open_datatree(tmp_path / "o.nc") as dt:
        assert int(dt.attrs["n_init"]) == 3 and dt.attrs["init_params"] == "random_from_data"
        assert int(dt["sample_stats"]["n_iter"].item()) <= 40


def test_default_paths_in_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, _, stderr = _run(["fit", "--example", "faithful", "--quiet", *FAST], capsys)
    assert rc == 0, stderr
    assert (tmp_path / "fit.nc").stat().st_size > 0
    assert (tmp_path / "fit.png").read_bytes()[:8] == PNG_MAGIC


def test_the_plot_is_named_after_the_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    words = ["fit", "--example", "faithful", "--out", "my.nc", "--quiet", *FAST]
    rc, _, stderr = _run(words, capsys)
    assert rc == 0, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my.nc", "my.png"]


@pytest.mark.parametrize(
    ("covariance_type", "cov_name", "cov_shape"),
    [
        ("spherical", "variances", (1, 1, 3)),
        ("diag", "variances", (1, 1, 3, 1)),
        ("tied", "covariance", (1, 1, 1, 1)),
    ],
)
def test_galaxies_one_dimensional(tmp_path, capsys, covariance_type, cov_name, cov_shape):
    out = tmp_path / "gal.nc"
    argv = ["fit", "--example", "galaxies", "-k", "3", "--covariance-type", covariance_type]
    rc, stdout, stderr = _run([*argv, *FAST, "--out", str(out), "--no-plot", "--quiet"], capsys)
    assert rc == 0, stderr
    assert not (tmp_path / "fit.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["gal.nc"]
    assert stderr == ""
    with xr.open_datatree(out) as dt:
        assert COVARIANCE_SITES[covariance_type] == cov_name
        assert list(dt["posterior"].data_vars) == ["weights", "locs", cov_name]
        assert dt["posterior"][cov_name].shape == cov_shape
        assert dt["observed_data"]["obs"].shape == (82, 1)
        assert list(dt["posterior"]["feature"].values) == ["velocity"]
        assert dt.attrs["covariance_type"] == covariance_type
    assert "velocity=" in stdout


def test_csv_input_drops_non_numeric_columns_with_note(tmp_path, capsys):
    x, _ = load_example("faithful")
    lines = ["id,kind,eruptions,waiting"]
    lines += [f"{i},{'long' if e > 3 else 'short'},{e},{w}" for i, (e, w) in enumerate(x)]
    data = _write_csv(tmp_path / "geyser.csv", "\n".join(lines) + "\n")
    out = tmp_path / "o.nc"
    rc, stdout, stderr = _run(
        ["fit", data, "--columns", "eruptions,waiting", *FAST, "--out", str(out), "--no-plot"],
        capsys,
    )
    assert rc == 0, stderr
    with xr.open_datatree(out) as dt:
        assert list(dt["posterior"]["feature"].values) == ["eruptions", "waiting"]
        # the CSV's values, in the precision of the fit (float64 unless --float32)
        obs = dt["observed_data"]["obs"].values
        assert obs.dtype == np.float64
        np.testing.assert_array_equal(obs, x)
    rc, _, stderr = _run(
        ["fit", data, "--columns", "eruptions,waiting", *FAST, "--float32", "--out", str(out)]
        + ["--no-plot", "--quiet"],
        capsys,
    )
    assert rc == 0, stderr
    with xr.open_datatree(out) as dt:
        assert dt["observed_data"]["obs"].values.dtype == np.float32
    # Without --columns: every numeric column (here also "id"), the text column dropped.
    rc, _, stderr = _run(["fit", data, *FAST, "--out", str(out), "--no-plot", "--quiet"], capsys)
    assert rc == 0, stderr
    assert "note: dropping non-numeric column 'kind'" in stderr
    with xr.open_datatree(out) as dt:
        assert list(dt["posterior"]["feature"].values) == ["id", "eruptions", "waiting"]


def test_semicolon_csv_and_unnamed_index_column(tmp_path, capsys):
    x, _ = load_example("faithful")
    lines = [";a;b"] + [f"{i + 1};{e};{w}" for i, (e, w) in enumerate(x)]
    data = _write_csv(tmp_path / "r.csv", "\n".join(lines))
    out = tmp_path / "o.nc"
    rc, _, stderr = _run(["fit", data, *FAST, "--out", str(out), "--no-plot", "--quiet"], capsys)
    assert rc == 0, stderr
    assert "no name" in stderr
    with xr.open_datatree(out) as dt:
        assert list(dt["posterior"]["feature"].values) == ["a", "b"]


def test_x64_flag_is_restored(tmp_path, capsys):
    import jax

    before = bool(jax.config.read("jax_enable_x64"))
    out = tmp_path / "o.nc"
    rc, _, stderr = _run(["fit", "--x64", *FAST, "--out", str(out), "--no-plot", "--quiet"], capsys)
    assert rc == 0, stderr
    assert bool(jax.config.read("jax_enable_x64")) == before
    with xr.open_datatree(out) as dt:
        assert int(dt.attrs["x64"]) == 1
        assert "--x64" in dt.attrs["command"]
        # fit.nc is built inside --x64: the data in float64
        obs = dt["observed_data"]["obs"].values
        assert obs.dtype == np.float64
        np.testing.assert_array_equal(obs, load_example("faithful")[0])


# --------------------------------------------------------------------------- errors


def _error_cases(tmp_path):
    nan_csv = _write_csv(tmp_path / "nan.csv", "a,b\n1,2\nNA,3\n4,5\n")
    nan2_csv = _write_csv(tmp_path / "nan2.csv", "a,b\n1,2\nnan,3\n4,5\n")
    text_csv = _write_csv(tmp_path / "text.csv", "a,b\n1,2\nx,3\n4,5\n")
    empty_csv = _write_csv(tmp_path / "empty.csv", "")
    header_csv = _write_csv(tmp_path / "header.csv", "a,b\n")
    ragged_csv = _write_csv(tmp_path / "ragged.csv", "a,b\n1,2\n3\n")
    noheader_csv = _write_csv(tmp_path / "nohead.csv", "1,2\n3,4\n")
    words_csv = _write_csv(tmp_path / "words.csv", "a,b\nx,y\nz,w\n")
    small_csv = _write_csv(tmp_path / "small.csv", "a\n1\n2\n")
    inf_csv = _write_csv(tmp_path / "inf.csv", "a\n1\ninf\n2\n")
    return [
        (["fit", str(tmp_path / "missing.csv")], "does not exist"),
        (["fit", str(tmp_path)], "is a directory"),
        (["fit", nan_csv, "--columns", "a"], "missing value on line 3"),
        (["fit", nan2_csv], "missing value on line 3"),
        (["fit", text_csv, "--columns", "a,b"], "non-numeric value 'x' on line 3"),
        (["fit", nan_csv, "--columns", "a,c"], "column 'c' not found"),
        (["fit", "--example", "faithful", "--columns", "speed"], "column 'speed' not found"),
        (["fit", empty_csv], "is empty"),
        (["fit", header_csv], "no data rows"),
        (["fit", ragged_csv], "line 3"),
        (["fit", noheader_csv], "add a header row"),
        (["fit", words_csv], "no numeric columns"),
        (["fit", small_csv, "-k", "3"], "fewer than the 3 components"),
        (["fit", inf_csv], "infinite value"),
        (["fit", "--example", "iris"], "unknown example 'iris'"),
        (["fit", "--out", str(tmp_path / "nodir" / "o.nc")], "does not exist"),
        (["fit", "--out", str(tmp_path / "same"), "--plot", str(tmp_path / "same")], "same file"),
    ]


def test_input_errors_give_one_line_and_exit_status_2(tmp_path, capsys):
    workdir = tmp_path / "work"
    workdir.mkdir()
    for argv, expected in _error_cases(tmp_path):
        out, png = workdir / "o.nc", workdir / "o.png"
        args = [*argv, *FAST]
        if "--out" not in args:
            args += ["--out", str(out), "--plot", str(png)]
        rc, stdout, stderr = _run(args, capsys)
        assert rc == 2, (argv, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) >= 1 and lines[-1].startswith("numpyro-gmm: error: "), (argv, stderr)
        assert [ln for ln in lines if "error" in ln] == [lines[-1]], (argv, stderr)
        assert expected in lines[-1], (argv, lines[-1])
        assert "Traceback" not in stderr and stdout == ""
        assert list(workdir.iterdir()) == [], argv


def test_failed_fit_keeps_existing_outputs(tmp_path, capsys, monkeypatch):
    class Failing(GaussianMixture):
        def fit(self, X, y=None):
            raise ValueError("Fitting the mixture model failed because some components\nmore")

    monkeypatch.setattr(cli_fit, "_estimator_class", lambda: Failing)
    out, png = tmp_path / "fit.nc", tmp_path / "fit.png"
    out.write_bytes(b"old nc")
    png.write_bytes(b"old png")
    rc, _, stderr = _run(["fit", "--out", str(out), "--plot", str(png), "--quiet"], capsys)
    assert rc == 2
    assert stderr.strip() == (
        "numpyro-gmm: error: the fit failed: Fitting the mixture model failed because some "
        "components"
    )
    assert out.read_bytes() == b"old nc" and png.read_bytes() == b"old png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc", "fit.png"]


def test_usage_errors_exit_2(capsys):
    for argv in (
        ["fit", "-k", "0"],
        ["fit", "--covariance-type", "banded"],
        ["fit", "--tol", "-1"],
        ["fit", "a.csv", "--example", "faithful"],
        ["fit", "--plot", "p.png", "--no-plot"],
        ["fit", "--method", "nuts"],
        ["fit", "--random-state", "-1"],
        ["fit", "--random-state", str(2**64)],
    ):
        rc, _, stderr = _run(argv, capsys)
        assert rc == 2, argv
        # One line, like every other error, naming the option and where the help is.
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert stderr.startswith("numpyro-gmm: error: ") and "--help" in stderr, stderr
        assert argv[-2] in stderr or "not allowed with" in stderr, stderr
    rc, _, stderr = _run([], capsys)
    assert rc == 2 and "usage: numpyro-gmm" in stderr


# --------------------------------------------------------------------------- help


def test_help_documents_every_option_with_default(capsys):
    rc, stdout, _ = _run(["fit", "--help"], capsys)
    assert rc == 0
    text = " ".join(stdout.split())
    for option in [
        "--example",
        "--columns",
        "-k",
        "--components",
        "--covariance-type",
        "--method",
        "--n-init",
        "--init-params",
        "--max-iter",
        "--tol",
        "--reg-covar",
        "--random-state",
        "--x64",
        "--out",
        "--plot",
        "--no-plot",
        "--quiet",
        "DATA.csv",
    ]:
        assert option in text, option
    # the defaults are the package's (numpyro_gmm.pipeline.DEFAULTS), not the CLI's own
    for default in [
        "(default: 1)",
        f"(default: {DEFAULTS.covariance_type})",
        f"(default: {METHODS[0]})",
        f"(default: {DEFAULTS.num_restarts})",
        f"(default: {DEFAULTS.init_params})",
        f"(default: {DEFAULTS.max_iter})",
        f"(default: {DEFAULTS.tol:g})",
        f"(default: {DEFAULTS.reg_covar:g})",
        "(default: none, a fresh seed that is printed and saved",
        "(default: fit.nc)",
        "(default: the --out path with .png",
        "faithful",
        "galaxies",
    ]:
        assert default in text, default
    # every option's help text states its default
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fit_parser = subparsers.choices["fit"]
    for action in fit_parser._actions:
        if action.dest != "help":
            assert "default" in (action.help or ""), action.dest
    defaults = {a.dest: a.default for a in fit_parser._actions}
    assert defaults["n_init"] == DEFAULTS.num_restarts
    assert defaults["init_params"] == DEFAULTS.init_params
    assert defaults["max_iter"] == DEFAULTS.max_iter
    assert defaults["tol"] == DEFAULTS.tol
    assert defaults["reg_covar"] == DEFAULTS.reg_covar
    assert defaults["covariance_type"] == DEFAULTS.covariance_type
    assert tuple(next(a for a in fit_parser._actions if a.dest == "method").choices) == METHODS


def test_module_entry_point_help():
    repo_root = str(Path(cli.__file__).resolve().parents[2])  # numpyro_gmm/cli/__init__.py
    pythonpath = os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "numpyro_gmm.cli", "fit", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": pythonpath},
    )
    assert proc.returncode == 0, proc.stderr
    assert "--covariance-type" in proc.stdout


# --------------------------------------------------------------------------- plotting


def _line_count(fig):
    return len(fig.axes[0].get_lines())


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_plot_mixture_2d_draws_two_ellipses_per_component(covariance_type):
    x, names = load_example("faithful")
    gm = sklearn.mixture.GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(x)
    fig = Figure()
    ax = fig.add_subplot()
    got = plot_mixture(
        x, gm.weights_, gm.means_, gm.covariances_, covariance_type, feature_names=names, ax=ax
    )
    assert got is fig
    # 2 ellipses + 1 mean marker per component
    assert _line_count(fig) == 3 * 2
    assert ax.get_xlabel() == "eruptions" and ax.get_ylabel() == "waiting"
    # the 1-sigma ellipse of component 0 is centred on its mean
    ellipse = ax.get_lines()[0].get_xydata()
    centre = (ellipse.max(axis=0) + ellipse.min(axis=0)) / 2
    np.testing.assert_allclose(centre, gm.means_[0], rtol=1e-3)
    # points coloured by the predicted label: as many colours as components
    colors = ax.collections[0].get_facecolors()
    assert len({tuple(c) for c in np.round(colors, 6)}) == 2


def test_plot_mixture_1d_mixture_density_integrates_to_one():
    x, _ = load_example("galaxies")
    gm = sklearn.mixture.GaussianMixture(3, random_state=0).fit(x)
    fig = plot_mixture(
        x, gm.weights_, gm.means_, gm.covariances_, "full", ax=Figure().add_subplot()
    )
    lines = fig.axes[0].get_lines()
    assert len(lines) == 1 + 3  # the mixture and the three weighted components
    grid, mixture = lines[0].get_xdata(), lines[0].get_ydata()
    np.testing.assert_allclose(np.trapezoid(mixture, grid), 1.0, atol=1e-2)
    comp_sum = sum(line.get_ydata() for line in lines[1:])
    np.testing.assert_allclose(comp_sum, mixture, rtol=1e-12)
    assert fig.axes[0].get_xlabel() == "x0"


def test_plot_mixture_more_than_two_features_uses_marginals():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(5, 1, (50, 3))])
    gm = sklearn.mixture.GaussianMixture(2, covariance_type="diag", random_state=0).fit(x)
    ax = Figure().add_subplot()
    plot_mixture(x, gm.weights_, gm.means_, gm.covariances_, "diag", ax=ax)
    assert "first 2 of 3 features" in ax.get_title()
    assert _line_count(ax.figure) == 6


def test_plot_mixture_without_ax_uses_pyplot():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, _ = load_example("faithful")
    fig = plot_mixture(x, [0.5, 0.5], x[:2], np.array([1.0, 2.0]), "spherical")
    try:
        assert isinstance(fig, Figure)
        assert len(fig.axes) == 1
    finally:
        plt.close(fig)


def test_method_options_reach_the_method(tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.nc"
    code = cli.main(["fit", "--example", "faithful", "-k", "2", "--method", "em", "--option",
                 "unknown=1", "--quiet", "--out", str(out), "--no-plot"])  # fmt: skip
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "'unknown'" in err and "takes no method options" in err
    code = cli.main(["fit", "--example", "faithful", "-k", "2", "--option", "bad", "--quiet",
                 "--out", str(out), "--no-plot"])  # fmt: skip
    assert code == 2
    capsys.readouterr()
    # Names are checked against method_options(method) before the data are read or a fit
    # starts; the message names the option and lists the valid ones.
    monkeypatch.setattr(cli_fit, "_estimator_class", lambda: pytest.fail("fit started"))
    code = cli.main(["fit", str(tmp_path / "absent.csv"), "--method", "biglearn_em",
                     "--option", "p_joint=0.5", "--option", "polish_iters=3",
                     "--out", str(out), "--no-plot"])  # fmt: skip
    assert code == 2 and not out.exists()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpyro-gmm: error: "), lines
    assert "'polish_iters'" in lines[0] and "biglearn_em" in lines[0]
    assert "valid options: " + ", ".join(sorted(method_options("biglearn_em"))) in lines[0]
    assert "absent.csv" not in lines[0]
    # A valid option reaches the estimator.
    seen = {}

    class Recording(GaussianMixture):
        def fit(self, X, y=None):
            seen["method_options"] = self.method_options
            raise ValueError("stop here")

    monkeypatch.setattr(cli_fit, "_estimator_class", lambda: Recording)
    code = cli.main(["fit", "--method", "gradient_em", "--option", "step_size=0.5",
                     "--option", "learn_covariance=false", "--quiet", "--no-plot",
                     "--out", str(out)])  # fmt: skip
    assert code == 2 and "stop here" in capsys.readouterr().err
    assert seen["method_options"] == {"step_size": 0.5, "learn_covariance": False}


def _structure(dt):
    """Groups, and per group each variable's dims."""
    return {name: {var: dt[name][var].dims for var in dt[name].data_vars} for name in dt.children}


@pytest.mark.parametrize(
    ("example", "covariance_type", "method"),
    [
        ("faithful", "full", "em"),
        ("faithful", "tied", "em"),
        ("faithful", "diag", "em"),
        ("galaxies", "spherical", "em"),
        ("faithful", "full", "biglearn_em"),
    ],
)
def test_netcdf_has_the_layout_of_gaussian_mixture_to_datatree(
    tmp_path, capsys, example, covariance_type, method
):
    """fit.nc comes from the one writer: GaussianMixture.to_datatree with the same settings."""
    out = tmp_path / "fit.nc"
    settings = {"n_init": 2, "max_iter": 20, "tol": 1e-4, "random_state": 3}
    argv = ["fit", "--example", example, "-k", "2", "--covariance-type", covariance_type,
            "--method", method, "--n-init", "2", "--max-iter", "20", "--tol", "1e-4",
            "--random-state", "3", "--out", str(out), "--no-plot", "--quiet"]  # fmt: skip
    rc, _, stderr = _run(argv, capsys)
    assert rc == 0, stderr
    x, names = load_example(example)
    gm = GaussianMixture(2, covariance_type=covariance_type, method=method, **settings).fit(x)
    expected = gm.to_datatree(x, feature_names=names)
    with xr.open_datatree(out) as dt:
        got = _structure(dt)
        assert got == _structure(expected)
        assert set(got) == {
            "posterior",
            "sample_stats",
            "log_likelihood",
            "observed_data",
            "restarts",
            "em_trace",
            "assignments",
        }
        assert set(got["posterior"]) == {"weights", "locs", COVARIANCE_SITES[covariance_type]}
        assert set(got["observed_data"]) == set(got["log_likelihood"]) == {"obs"}
        assert list(dt["posterior"]["feature"].values) == names
        # the writer's root attrs, plus the command line's own
        assert set(expected.attrs) - {"created_at"} <= set(dt.attrs)
        assert {"data_source", "command", "x64"} <= set(dt.attrs)
        assert dt.attrs["method"] == method
        assert dt.attrs["objective_convention"] == expected.attrs["objective_convention"]
        # the same fit: the objective is the estimator's objective_
        np.testing.assert_allclose(float(dt["sample_stats"]["lp"].item()), gm.objective_, rtol=1e-5)


# --------------------------------------------------------------------------- saved fits


@pytest.fixture(scope="module")
def saved_fit(tmp_path_factory):
    """A small fit saved by ``fit``, and new rows with their CSV file."""
    directory = tmp_path_factory.mktemp("saved")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2, 1, (30, 2)), rng.normal(2, 1, (30, 2))])
    train = directory / "train.csv"
    np.savetxt(train, x, delimiter=",", header="u,v", comments="", fmt="%.10g")
    new = rng.normal(0, 2.5, (25, 2))
    rows = directory / "new.csv"
    # Columns in another order, plus one the fit does not use: read by name.
    table = np.column_stack([new[:, 1], np.arange(25), new[:, 0]])
    np.savetxt(rows, table, delimiter=",", header="v,id,u", comments="", fmt="%.17g")
    out = directory / "fit.nc"
    argv = ["fit", str(train), "-k", "2", *FAST, "--out", str(out), "--no-plot", "--quiet"]
    status = cli.main(argv)
    assert status == 0
    return out, rows, new


def test_predict_gives_the_labels_of_the_loaded_estimator(saved_fit, tmp_path, capsys):
    fit_path, rows, new = saved_fit
    capsys.readouterr()
    out = tmp_path / "labels.csv"
    rc, stdout, stderr = _run(["predict", str(fit_path), str(rows), "--out", str(out)], capsys)
    assert rc == 0, stderr
    assert str(out) in stdout
    gm = ngm.load_gaussian_mixture(fit_path)
    assert isinstance(gm, GaussianMixture)
    # The command line fitted named columns: the loaded estimator checks them, and it fits
    # quietly (progress was the command line's).
    assert list(gm.feature_names_in_) == ["u", "v"] and gm.verbose == 0
    new = pd.DataFrame(new, columns=["u", "v"])
    with pytest.raises(ValueError, match="feature names"):
        gm.predict(new[["v", "u"]])
    table = np.genfromtxt(out, delimiter=",", names=True)
    assert table.dtype.names == ("label", "prob_0", "prob_1", "log_density")
    np.testing.assert_array_equal(table["label"].astype(int), gm.predict(new))
    probabilities = np.column_stack([table["prob_0"], table["prob_1"]])
    # 17 significant digits: the values read back exactly
    np.testing.assert_array_equal(probabilities, gm.predict_proba(new))
    np.testing.assert_array_equal(table["log_density"], gm.score_samples(new))
    # To standard output by default, the same table.
    rc, stdout, _ = _run(["predict", str(fit_path), str(rows)], capsys)
    assert rc == 0 and stdout == out.read_text(encoding="utf-8")


def test_score_is_the_estimator_score(saved_fit, capsys):
    fit_path, rows, new = saved_fit
    capsys.readouterr()
    rc, stdout, stderr = _run(["score", str(fit_path), str(rows)], capsys)
    assert rc == 0, stderr
    new = pd.DataFrame(new, columns=["u", "v"])
    assert float(stdout.strip()) == ngm.load_gaussian_mixture(fit_path).score(new)
    assert stderr == ""


def test_info_names_k_method_and_features(saved_fit, capsys):
    fit_path, _, _ = saved_fit
    capsys.readouterr()
    rc, stdout, stderr = _run(["info", str(fit_path)], capsys)
    assert rc == 0, stderr
    gm = ngm.load_gaussian_mixture(fit_path)
    assert "method: em, K=2, covariance_type=full" in stdout
    assert "features: u, v" in stdout
    assert f"converged: {gm.converged_}" in stdout
    assert f"{gm.weights_[0]:.4f}" in stdout and f"{gm.objective_:.6g}" in stdout
    assert "command: numpyro-gmm fit" in stdout


def test_info_summarizes_a_model_map_and_predict_asks_for_the_model(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-3, 1, (30, 2)), rng.normal(3, 1, (30, 2))])
    result = ngm.fit(ngm.models.gaussian_mixture(2), x, num_restarts=2, rng_key=0)
    path = tmp_path / "map.nc"
    result.to_datatree().to_netcdf(path)
    rc, stdout, stderr = _run(["info", str(path)], capsys)
    assert rc == 0, stderr
    assert "NumPyro model MAP: method em, K=2, mixture site 'obs'" in stdout
    assert f"objective: {result.objective:.6g}" in stdout
    assert "restarts: 2" in stdout and "locs (2, 2)" in stdout
    assert "load_map_result" in stdout
    rows = _write_csv(tmp_path / "rows.csv", "x0,x1\n0,0\n")
    rc, _, stderr = _run(["predict", str(path), rows], capsys)
    assert rc == 2 and "load_map_result" in stderr and len(stderr.strip().splitlines()) == 1


def test_version(capsys):
    from importlib.metadata import version

    rc, stdout, _ = _run(["--version"], capsys)
    assert rc == 0
    assert stdout.strip() == f"numpyro-gmm {version('numpyro_gmm')}"


def test_cli_defaults_are_the_class_defaults():
    """Every fitting default of ``fit`` is GaussianMixture's (both read pipeline.DEFAULTS)."""
    fit_parser = _subparser("fit")
    defaults = {a.dest: a.default for a in fit_parser._actions}
    signature = inspect.signature(GaussianMixture.__init__).parameters
    shared = {
        "components": "n_components",
        "covariance_type": "covariance_type",
        "method": "method",
        "n_init": "n_init",
        "init_params": "init_params",
        "max_iter": "max_iter",
        "tol": "tol",
        "reg_covar": "reg_covar",
    }
    for dest, name in shared.items():
        assert defaults[dest] == signature[name].default, name
        assert type(defaults[dest]) is type(signature[name].default), name
    # A fresh seed in both; the command line prints and saves the one it drew.
    assert defaults["random_state"] is signature["random_state"].default is None


def _subparser(name):
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[name]


@pytest.mark.parametrize("command", ["fit", "predict", "score", "info"])
def test_every_subcommand_documents_its_defaults(command, capsys):
    rc, stdout, _ = _run([command, "--help"], capsys)
    assert rc == 0 and "usage: numpyro-gmm " + command in stdout
    for action in _subparser(command)._actions:
        if action.dest != "help":
            assert "default" in (action.help or ""), (command, action.dest)


def test_progress_segments_follow_the_clock():
    every = Every(seconds=1.0)
    assert every.throttle().interval == 1.0
    assert every.segment(0, None) == 1  # first a single step, to measure its time
    assert every.segment(1, 2.0) == 1  # slow steps (or a compilation): one at a time
    assert every.segment(1, 1e-4) == 2  # fast steps: the segment at most doubles...
    assert every.segment(4096, 1e-4) == 5000  # ...up to about half the interval
    by_steps = Every.of(10)
    assert by_steps == Every(iterations=10) and by_steps.segment(10, 1e-4) == 10
    assert by_steps.throttle().interval == 0.0  # a line after every segment
    assert Every.of(None) is None and Every.of(every) is every
    for bad in ({}, {"iterations": 1, "seconds": 1.0}, {"iterations": 0}, {"seconds": -1.0}):
        with pytest.raises(ValueError):
            Every(**bad)


def test_progress_by_time_through_the_estimator(capsys):
    x, _ = load_example("faithful")
    gm = GaussianMixture(2, n_init=2, verbose=1, verbose_interval=Every(seconds=60.0))
    gm.fit(x)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("Iteration")]
    # within one minute: the first segment's line and each loop's last line only
    assert len(lines) <= 4 and lines[-1].endswith("converged"), err


def test_pair_plot_shows_every_pair_of_features():
    from numpyro_gmm.plotting import plot_mixture_pairs

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(5, 1, (40, 3))])
    gm = sklearn.mixture.GaussianMixture(2, covariance_type="full", random_state=0).fit(x)
    fig = Figure(layout="constrained")
    got = plot_mixture_pairs(
        x, gm.weights_, gm.means_, gm.covariances_, "full", feature_names=["a", "b", "c"], fig=fig
    )
    assert got is fig and len(fig.axes) == 9
    grid = np.array(fig.axes).reshape(3, 3)
    for i in range(3):
        for j in range(3):
            ax = grid[i, j]
            if i == j:  # histogram, the mixture's marginal density and one per component
                assert len(ax.patches) > 3 and len(ax.get_lines()) == 1 + 2
            else:  # 2 ellipses and a mean marker per component, points coloured by label
                assert len(ax.get_lines()) == 3 * 2
                colors = ax.collections[0].get_facecolors()
                assert len({tuple(c) for c in np.round(colors[:, :3], 6)}) == 2
    # the 1-sd ellipse of component 0 in panel (row c, column a) is centred on its means
    ellipse = grid[2, 0].get_lines()[0].get_xydata()
    centre = (ellipse.max(axis=0) + ellipse.min(axis=0)) / 2
    np.testing.assert_allclose(centre, gm.means_[0, [0, 2]], rtol=1e-3, atol=1e-3)
    assert [ax.get_xlabel() for ax in grid[-1]] == ["a", "b", "c"]
    assert [ax.get_ylabel() for ax in grid[1:, 0]] == ["b", "c"]
    assert "K=2" in fig.get_suptitle() and len(fig.legends[0].get_texts()) == 2
    # Many features: the first max_features only, and the title says so.
    wide = np.column_stack([x, x[:, :2]])
    means = np.column_stack([gm.means_, gm.means_[:, :2]])
    fig = plot_mixture_pairs(wide, gm.weights_, means, np.ones((2, 5)), "diag",
                             max_features=4, fig=Figure())  # fmt: skip
    assert len(fig.axes) == 16 and "first 4 of 5 features" in fig.get_suptitle()


def test_fit_plots_pairs_for_more_than_two_columns(tmp_path, capsys):
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-2, 1, (30, 3)), rng.normal(2, 1, (30, 3))])
    data = tmp_path / "three.csv"
    np.savetxt(data, x, delimiter=",", header="p,q,r", comments="", fmt="%.10g")
    png = tmp_path / "pairs.png"
    argv = ["fit", str(data), "-k", "2", *FAST, "--out", str(tmp_path / "o.nc"), "--plot", str(png)]
    rc, _, stderr = _run([*argv, "--quiet"], capsys)
    assert rc == 0, stderr
    assert png.read_bytes()[:8] == PNG_MAGIC
    from matplotlib.image import imread

    height, width = imread(png).shape[:2]
    assert height >= 700 and width >= 700  # a grid of panels, not one 6.4 x 4.8 plot
