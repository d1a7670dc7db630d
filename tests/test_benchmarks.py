"""The benchmark scripts keep working: their smoke sizes run and report a table."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("bench_em_speed.py", "speed-up"),
        ("bench_em_memory.py", "ratio"),
        ("bench_em_vs_svi.py", "SVI/EM"),
    ],
)
def test_benchmark_smoke_size_runs(script, expected, tmp_path):
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert expected in completed.stdout
    assert out.stat().st_size > 0
