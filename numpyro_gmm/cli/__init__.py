"""Command line: ``numpyro-gmm fit`` fits a Gaussian mixture to a CSV file or a bundled example;
``predict``, ``score`` and ``info`` use the saved fit.

Examples
--------
Fit two full-covariance components (from seed 0) to the bundled Old Faithful data, writing
``fit.nc`` (an ArviZ-style netCDF file, the layout of
:meth:`numpyro_gmm.GaussianMixture.to_datatree`) and ``fit.png``::

    numpyro-gmm fit -k 2 --random-state 0
    numpyro-gmm fit --example galaxies -k 4 --covariance-type spherical --out galaxies.nc
    numpyro-gmm fit data.csv --columns height,weight -k 3 --no-plot
    numpyro-gmm predict fit.nc new.csv --out labels.csv
    numpyro-gmm score fit.nc new.csv
    numpyro-gmm info fit.nc

Errors in the input (missing file or column, non-numeric or missing cells, too few rows,
unknown method options or values of the wrong type, a file that is not a saved fit) are
reported on one line of standard error and give exit status 2.

Modules: :mod:`~numpyro_gmm.cli.parser` (arguments, defaults from
:data:`numpyro_gmm.pipeline.DEFAULTS`), :mod:`~numpyro_gmm.cli.data` (reading the data),
:mod:`~numpyro_gmm.cli.fit` (the ``fit`` command), :mod:`~numpyro_gmm.cli.saved` (``predict``,
``score``, ``info``), :mod:`~numpyro_gmm.cli.output` (output paths, netCDF attrs, plot,
predictions, summary).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from numpyro_gmm.cli.data import load_data
from numpyro_gmm.cli.fit import run_fit
from numpyro_gmm.cli.parser import (
    COVARIANCE_TYPES,
    DEFAULT_EXAMPLE,
    INIT_PARAMS,
    METHODS,
    PROG,
    CLIError,
    build_parser,
)
from numpyro_gmm.cli.saved import run_info, run_predict, run_score

#: Subcommand -> the function that runs it with the parsed arguments.
COMMANDS = {"fit": run_fit, "predict": run_predict, "score": run_score, "info": run_info}

__all__ = [
    "COVARIANCE_TYPES",
    "DEFAULT_EXAMPLE",
    "INIT_PARAMS",
    "METHODS",
    "PROG",
    "COMMANDS",
    "CLIError",
    "build_parser",
    "load_data",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``numpyro-gmm`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 on success, 2 for usage or input errors (reported on one line of
        stderr as ``numpyro-gmm: error: ...``), 1 for an unexpected internal error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, or a usage error already reported by argparse
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except CLIError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of standard output went away (e.g. `| head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        where = f" {err.filename!r}" if getattr(err, "filename", None) else ""
        print(f"{PROG}: error: cannot write{where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line never shows a traceback
        msg = " ".join(str(err).split()) or "no message"
        print(
            f"{PROG}: error: internal error ({type(err).__name__}: {msg}); please report it",
            file=sys.stderr,
        )
        return 1
