"""Plumbing shared by the benchmark scripts: command line, JSON reports, child processes.

Every script takes ``--smoke`` (a tiny run, used by the test suite) and ``--json PATH``
(write the report there). Measurements that must not share a process (peak memory, one
dtype mode per process) run in a child process that prints one marked JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULT_MARKER = "BENCH_RESULT_JSON:"

__all__ = [
    "REPO_ROOT",
    "RESULT_MARKER",
    "ChildFailed",
    "emit_child_result",
    "ensure_importable",
    "finish",
    "run_child",
    "script_parser",
]


class ChildFailed(RuntimeError):
    """A benchmark child process exited with a non-zero status."""

    def __init__(self, label: str, returncode: int) -> None:
        super().__init__(f"{label} run failed with exit code {returncode}")
        self.returncode = returncode


def ensure_importable() -> None:
    """Make ``numpyro_gmm`` importable from a source checkout that is not installed."""
    try:
        import numpyro_gmm  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))


def script_parser(doc: str | None, smoke_help: str = "tiny run for CI") -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark script shares."""
    description = (doc or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    return parser


def finish(
    report: dict[str, Any], json_path: Path | None, print_table: Callable[[dict], None]
) -> int:
    """Print the report's table and write the report as JSON when asked; exit status 0."""
    print_table(report)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, default=_to_json))
        print(f"results written to {json_path}")
    return 0


def _to_json(value: Any) -> Any:
    """JSON form of values ``json`` does not know: NumPy scalars and paths."""
    return value.item() if hasattr(value, "item") else str(value)


def emit_child_result(result: dict[str, Any]) -> int:
    """Print a child's result as the marked JSON line its parent reads back."""
    print(RESULT_MARKER + json.dumps(result))
    return 0


def run_child(argv: Sequence[str], label: str) -> dict[str, Any]:
    """Run a child process and return the result it printed with :func:`emit_child_result`."""
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ChildFailed(label, proc.returncode)
    line = next(row for row in proc.stdout.splitlines() if row.startswith(RESULT_MARKER))
    return json.loads(line[len(RESULT_MARKER) :])
