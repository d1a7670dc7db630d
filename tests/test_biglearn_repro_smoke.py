"""The BigLearn-EM reproduction scripts keep working: their smoke sizes run and print a table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "header"),
    [
        ("repro_biglearn_grid.py", "test KL"),
        ("repro_biglearn_pendigits.py", "NMI"),
        ("bench_biglearn_speed.py", "ratio to EM"),
    ],
)
def test_biglearn_script_smoke_size_runs(script, header, tmp_path):
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert header in completed.stdout
    assert json.loads(out.read_text())["benchmark"]
