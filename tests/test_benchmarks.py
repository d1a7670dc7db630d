"""Every benchmark and reproduction script keeps working: its smoke size runs, prints its table
and writes its JSON report."""

import pytest

from helpers import run_benchmark_smoke


@pytest.mark.parametrize(
    ("script", "header"),
    [
        ("bench_em_speed.py", "speed-up"),
        ("bench_em_memory.py", "ratio"),
        ("bench_em_vs_svi.py", "SVI/EM"),
        ("repro_biglearn_grid.py", "test KL"),
        ("repro_biglearn_pendigits.py", "NMI"),
        ("bench_biglearn_speed.py", "ratio to EM"),
        ("bench_workflows.py", "bic_small"),
        ("bench_global_map.py", "P(reach)"),
    ],
)
def test_benchmark_smoke_size_runs(script, header, tmp_path):
    stdout, report = run_benchmark_smoke(script, tmp_path)
    assert header in stdout
    assert report


def test_overparameterized_smoke_size_runs(tmp_path):
    stdout, report = run_benchmark_smoke("repro_overparameterized.py", tmp_path)
    assert "(iii) GEM" in stdout
    (row,) = report["results"]
    assert row["m"] == 3 and row["seeds"] == 2
    for key in ("p_em_random", "p_em_kmeanspp", "p_gradient"):
        assert 0.0 <= row[key] <= 1.0


def test_global_map_equal_time_probability_is_exact():
    """EM's chance at equal time: at least one of r restarts drawn without replacement from
    the pool reaches the best-known MAP, checked against enumerating every draw."""
    import itertools
    import sys

    from helpers import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_global_map import best_of_r_probability

    pool = [True, False, False, True, False, False, False]
    for draws in range(1, len(pool) + 2):
        subsets = list(itertools.combinations(pool, min(draws, len(pool))))
        expected = sum(any(s) for s in subsets) / len(subsets)
        assert best_of_r_probability(sum(pool), len(pool), draws) == pytest.approx(expected)
    assert best_of_r_probability(0, 5, 3) == 0.0
