"""Faults of the command line: bad input, failed and interrupted writes, SIGINT.

Input errors exit with status 2 and one line on stderr; a failure or an interruption
(KeyboardInterrupt, SIGINT: status 130) during the fit or the write leaves no partial output
and keeps an existing output file as it was.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
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
        (lambda d: d / "bad.csv", ["--columns", "b"], r"has a missing value on line 4"),
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
    # A compilation cache of its own, so that the child never waits on the suite's shared one;
    # Python's fault handler, so that a child that hangs can be made to show where (SIGABRT).
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "NUMPYRO_GMM_COMPILATION_CACHE": str(tmp_path / "compilation-cache"),
        "PYTHONFAULTHANDLER": "1",
    }
    # A long fit (tol 0: never stops early); SIGINT comes once the fit has started.
    command = [sys.executable, "-m", "numpyro_gmm.cli", "fit", str(data_csv), "--tol", "0"]
    command += ["--max-iter", "1000000", "--n-init", "2", "--out", str(out), "--no-plot"]
    # Its own session, so that the whole group can be killed; stdout unread, so not a pipe.
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_stderr():
        for line in process.stderr:
            lines.put(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    err, hung = "", None
    try:
        # SIGINT once the iterations run (a progress line), not while JAX starts or compiles;
        # every wait is bounded, so a child that hangs silently cannot hang the test.
        deadline = time.monotonic() + 240
        while not err.splitlines()[-1:] or not err.splitlines()[-1].startswith("Iteration"):
            assert process.poll() is None, f"the command ended before fitting: {err}"
            try:
                err += lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no progress line within 240 s: {err}") from None
        # Ctrl-C, repeated as a user would if the first one seems lost.
        for _ in range(3):
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                continue
        if process.poll() is None:
            hung = _signal_state(process.pid)
            process.send_signal(signal.SIGABRT)  # the fault handler prints every thread's stack
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if process.poll() is None:  # never leave a child running, whatever failed
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    reader.join(timeout=10)  # it ends at the closed pipe, having queued the last lines
    process.stderr.close()
    while not lines.empty():
        err += lines.get()
    assert hung is None, (
        f"no exit within 90 s of SIGINT; the child's signal state: {hung}; the test's blocked "
        f"signals: {sorted(signal.pthread_sigmask(signal.SIG_BLOCK, []))}; its stderr, ending "
        f"with its threads' stacks at SIGABRT:\n{err}"
    )
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "numpyro-gmm: interrupted"
    assert not out.exists() and _leftovers(tmp_path) == []


def _signal_state(pid: int) -> str:
    """The blocked, ignored and caught signal masks of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            return "; ".join(line.strip() for line in status if line.startswith("Sig"))
    except OSError as exc:
        return f"unavailable ({exc})"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "note:" not in line]
    assert len(lines) == 1 and lines[0].startswith("numpyro-gmm: error: "), err
    return lines[0]


def _table(path, header, rows):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    return path


def test_a_non_numeric_cell_is_an_error_unless_its_column_is_left_out(
    tmp_path, capsys, monkeypatch
):
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.6f}" for v in rng.normal(size=3)) for _ in range(400)]
    rows[199] = rows[199].rsplit(",", 1)[0] + ",abc"  # data row 200 is line 201
    path = _table(tmp_path / "typo.csv", "a,b,c", rows)
    out = tmp_path / "fit.nc"
    monkeypatch.setattr(cli_fit, "_estimator_class", lambda: _StubMixture)
    status, err = _main(["fit", path, "--out", out, "--no-plot", "--quiet"], capsys)
    assert status == 2 and not out.exists()
    line = _one_error_line(err)
    assert "column 'c'" in line and "'abc'" in line and "line 201" in line, line
    assert "--columns" in line
    # Naming the columns to use: the others are not read.
    status, err = _main(
        ["fit", path, "--columns", "a,b", "--out", out, "--no-plot", "--quiet"], capsys
    )
    assert status == 0, err
    with xr.open_datatree(out) as tree:
        assert list(tree["posterior"]["feature"].values) == ["a", "b"]


@pytest.mark.parametrize(
    ("method", "option", "words"),
    [
        ("gradient_em", "step_size=abc", ["--option", "step_size", "a number", "'abc'"]),
        ("biglearn_em", "standardize=maybe", ["--option", "standardize", "true or false"]),
        ("biglearn_em", "polish_iter=1.5", ["--option", "polish_iter", "an integer"]),
        ("gradient_em", "linkage=3", ["--option", "linkage", "text"]),
        ("biglearn_em", "p_join=0.5", ["--option", "p_join", "valid options: "]),
        ("em", "step_size=1", ["--option", "step_size", "takes no method options"]),
        ("em", "step_size", ["--option", "KEY=VALUE"]),
    ],
)
def test_option_errors_name_the_option(tmp_path, capsys, monkeypatch, method, option, words):
    """Checked before the data are read (the file does not exist) or a fit starts."""
    monkeypatch.setattr(cli_fit, "_estimator_class", lambda: pytest.fail("fit started"))
    argv = ["fit", tmp_path / "absent.csv", "--method", method, "--option", option]
    status, err = _main([*argv, "--out", tmp_path / "fit.nc", "--no-plot"], capsys)
    assert status == 2
    line = err.strip().splitlines()[-1]
    # argparse's own errors (a malformed KEY=VALUE) say which subcommand: "numpyro-gmm fit:"
    assert re.match(r"numpyro-gmm( fit)?: error: ", line), err
    for word in words:
        assert word in line, (word, line)
    assert "absent.csv" not in line


def test_an_out_of_range_option_value_names_the_option(tmp_path, capsys, data_csv):
    argv = ["fit", data_csv, "--method", "biglearn_em", "--option", "polish_iter=-3"]
    status, err = _main([*argv, "--out", tmp_path / "fit.nc", "--no-plot", "--quiet"], capsys)
    assert status == 2
    line = _one_error_line(err)
    assert line.startswith("numpyro-gmm: error: --option polish_iter=-3: "), line
    assert "polish_iter must be an integer >= 0" in line


def _input_faults(d):
    """The CLI column of docs/INPUTS.md, plus the saved-fit commands' own faults."""
    offset = [f"{1e8 + v:.4f},{v:.4f}" for v in np.random.default_rng(0).normal(size=40)]
    return {
        "NaN": (["fit", _table(d / "nan.csv", "a,b", ["1,2", "3,4", "NA,5", "6,7"])],
                r"column 'a' has a missing value on line 4"),
        "inf": (["fit", _table(d / "inf.csv", "a,b", ["1,2", "inf,5", "6,7"])],
                r"column 'a' of .* has an infinite value in data row 2"),
        "empty": (["fit", _table(d / "empty.csv", "a,b", [])],
                  r"has a header but no data rows"),
        "one row": (["fit", _table(d / "one.csv", "a,b", ["1,2"])],
                    r"has only 1 row; a mixture fit needs at least 2"),
        "N < K": (["fit", _table(d / "few.csv", "a,b", ["1,2", "3,4"]), "-k", "3"],
                  r"fewer than the 3 components asked for; lower --components"),
        "non-numeric cell": (["fit", _table(d / "typo.csv", "a,b", ["1,2", "3,x", "5,6"])],
                             r"column 'b' has a non-numeric value 'x' on line 3"),
        "offset 1e8, --float32": (["fit", _table(d / "big.csv", "a,b", offset), "--float32"],
                                  r"cannot be represented in float32"),
        "predict: no fit file": (["predict", d / "absent.nc", d / "nan.csv"],
                                 r"fit file '.*absent.nc' does not exist"),
        "predict: not a fit": (["predict", d / "nan.csv", d / "nan.csv"],
                               r"cannot be read as a saved fit"),
        "score: no rows": (["score", d / "nan.csv"], r"give the rows to score"),
        "info: a directory": (["info", d], r"is a directory"),
    }  # fmt: skip


def test_every_input_fault_exits_2_with_one_line(tmp_path, capsys):
    for name, (argv, message) in _input_faults(tmp_path).items():
        out = tmp_path / "out" / "fit.nc"
        out.parent.mkdir(exist_ok=True)
        extra = ["--out", out, "--no-plot", "--quiet"] if argv[0] == "fit" else []
        status, err = _main([*argv, *extra], capsys)
        assert status == 2, (name, err)
        line = _one_error_line(err)
        assert re.search(message, line), (name, line)
        assert not out.exists(), name


def test_predict_messages_fit_a_saved_fits_features(tmp_path, capsys, data_csv):
    """``predict`` needs every feature of the fit: it says how to map other column names and
    never suggests leaving a column out."""
    fit = tmp_path / "fit.nc"
    status, _ = _main(["fit", data_csv, "--out", fit, "--no-plot", "--quiet"], capsys)
    assert status == 0
    renamed = _table(tmp_path / "renamed.csv", "x,y", ["1,50", "4,80"])
    status, err = _main(["predict", fit, renamed], capsys)
    line = _one_error_line(err)
    assert status == 2 and "column 'duration' not found" in line, line
    assert line.endswith("the fit's features are 'duration', 'waiting': name the file's "
                         "columns for them, in order, with --columns"), line
    typo = _table(tmp_path / "typo.csv", "duration,waiting", ["1,50", "4,x"])
    status, err = _main(["predict", fit, typo], capsys)
    line = _one_error_line(err)
    assert status == 2 and line.endswith("non-numeric value 'x' on line 3 of "
                                         f"{str(typo)!r}; fix the value"), line
    out = tmp_path / "labels.csv"
    status, err = _main(["predict", fit, renamed, "--columns", "x,y", "--out", out], capsys)
    assert status == 0 and out.exists(), err
