"""The over-parameterized reproduction script runs at its smoke size and reports a table."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_repro_overparameterized_smoke(tmp_path):
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "repro_overparameterized.py"),
            "--smoke",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "(iii) GEM" in completed.stdout
    payload = json.loads(out.read_text())
    (row,) = payload["results"]
    assert row["m"] == 3 and row["seeds"] == 2
    for key in ("p_em_random", "p_em_kmeanspp", "p_gradient"):
        assert 0.0 <= row[key] <= 1.0
