"""Faults of the command line: bad input, failed and interrupted writes, SIGINT.

Input errors exit with status 2 and one line on stderr; a failure or an interruption
(KeyboardInterrupt, SIGINT: status 130) during the fit or the write leaves no partial output
and keeps an existing output file as it was.
"""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

import numpyro_gmm.cli.fit as cli_fit
from numpyro_gmm import cli
from numpyro_gmm.fit_result import FitResult, Restarts
from numpyro_gmm.mixture.params import GMMParams
from numpyro_gmm.sklearn import GaussianMixture

OLD = b"previous result"


@pytest.fixture
def data_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (40, 2)), rng.normal(3, 1, (40, 2))])
    path = tmp_path / "data.csv"
    np.savetxt(path, x, delimiter=",", header="duration,waiting", comments="", fmt="%.10g")
    return path


def _main(argv, capsys):
    capsys.readouterr()
    status = cli.main([str(a) for a in argv])
    return status, capsys.readouterr().err


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda d: d / "missing.csv", [], r"data file '.*missing.csv' does not exist"),
        (lambda d: d / "data.csv", ["--columns", "duration,nope"], r"column 'nope' not found"),
        (lambda d: d / "bad.csv", ["--columns", "a,b"], r"non-numeric value 'abc' on line 3"),
        (lambda d: d / "bad.csv", [], r"has a missing value on line 4"),
    ],
    ids=["missing-file", "missing-column", "non-numeric", "missing-cell"],
)
def test_input_errors_exit_2_with_one_line(tmp_path, capsys, data_csv, make_input, extra, message):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\nabc,3\n4,\n5,6\n", encoding="utf-8")
    out = tmp_path / "fit.nc"
    status, err = _main(["fit", make_input(tmp_path), *extra, "--out", out, "--no-plot"], capsys)
    assert status == 2
    lines = [line for line in err.splitlines() if "note:" not in line]
    assert len(lines) == 1 and lines[0].startswith("numpyro-gmm: error: "), err
    assert re.search(message, lines[0]), err
    assert not out.exists()


def test_a_large_reg_covar_is_a_warning_that_names_the_option(tmp_path, capsys, data_csv):
    out = tmp_path / "fit.nc"
    argv = ["fit", data_csv, "--reg-covar", "100", "--out", out, "--no-plot", "--quiet"]
    status, err = _main(argv, capsys)
    assert status == 0 and out.exists()
    assert re.search(r"warning: reg_covar=100 is more than a tenth .* --reg-covar <= 0\.\d+", err)


class _StubMixture(GaussianMixture):
    """Stands in for GaussianMixture where a test is about the writing, not the fit.

    ``fit`` stores a fixed result (identity covariances, the first rows as means) without
    running the engine; everything after it (``predict``, ``to_datatree``) is the real one.
    """

    def fit(self, X, y=None):
        x = self._prepare(X, reset=True)
        k, d = self.n_components, x.shape[1]
        params = GMMParams(np.full(k, 1.0 / k), x[:k].copy(), np.eye(d)[None].repeat(k, 0))
        result = FitResult(
            params=params,
            objective=-1.0 * len(x),
            best_restart=0,
            restarts=Restarts.single(-1.0 * len(x), 1, True),
            trace=np.array([[-1.0]]),
            covariance_type="full",
            covariances=np.eye(d)[None].repeat(k, 0),
            n_samples=len(x),
        )
        self._store(result)
        return self


class _Interrupting(_StubMixture):
    def fit(self, x):
        raise KeyboardInterrupt


def _partial_then(exception):
    """A DataTree.to_netcdf that writes half a file, then fails with ``exception``."""

    def to_netcdf(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"\x89HDF\r\n\x1a\n partial")
        raise exception

    return to_netcdf


@pytest.mark.parametrize(
    ("where", "status", "message"),
    [
        ("fit", 130, "numpyro-gmm: interrupted"),
        ("write", 130, "numpyro-gmm: interrupted"),
        ("write-oserror", 2, "numpyro-gmm: error: cannot write"),
        ("plot", 130, "numpyro-gmm: interrupted"),
    ],
)
def test_failure_or_interrupt_leaves_no_partial_output(
    tmp_path, capsys, monkeypatch, data_csv, where, status, message
):
    out, png = tmp_path / "fit.nc", tmp_path / "fit.png"
    out.write_bytes(OLD)
    png.write_bytes(OLD)
    monkeypatch.setattr(
        cli_fit, "_estimator_class", lambda: _Interrupting if where == "fit" else _StubMixture
    )
    if where == "write":
        monkeypatch.setattr(xr.DataTree, "to_netcdf", _partial_then(KeyboardInterrupt()))
    if where == "write-oserror":
        error = OSError(28, "No space left on device")
        monkeypatch.setattr(xr.DataTree, "to_netcdf", _partial_then(error))
    if where == "plot":
        from matplotlib.figure import Figure

        monkeypatch.setattr(Figure, "savefig", _partial_then(KeyboardInterrupt()))
    status_, err = _main(["fit", data_csv, "--out", out, "--plot", png, "--quiet"], capsys)
    assert status_ == status
    assert err.strip().splitlines()[-1].startswith(message), err
    assert _leftovers(tmp_path) == []
    assert png.read_bytes() == OLD
    if where == "plot":
        # The netCDF file was complete before the interruption: written whole, readable.
        with xr.open_datatree(out) as tree:
            assert "posterior" in tree.children
    else:
        assert out.read_bytes() == OLD


def test_sigint_during_the_fit_exits_130_without_output(tmp_path, data_csv):
    out = tmp_path / "fit.nc"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    # A long fit (tol 0: never stops early); SIGINT comes once the fit has started.
    command = [sys.executable, "-m", "numpyro_gmm.cli", "fit", str(data_csv), "--tol", "0"]
    command += ["--max-iter", "1000000", "--n-init", "2", "--out", str(out), "--no-plot"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        # SIGINT once the iterations run (a progress line), not while JAX starts or compiles.
        deadline = time.monotonic() + 240
        line = ""
        while not line.startswith("Iteration") and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line or process.poll() is None, "the command ended before fitting"
        assert process.poll() is None, "the fit ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # never leave a child running, whatever failed
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "numpyro-gmm: interrupted"
    assert not out.exists() and _leftovers(tmp_path) == []
