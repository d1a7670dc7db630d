"""The scale-out benchmarks keep working: their smoke sizes run, print their tables and write
their JSON reports."""

from helpers import run_benchmark_smoke


def test_bench_scale_smoke(tmp_path):
    stdout, report = run_benchmark_smoke("bench_scale.py", tmp_path)
    assert "correctness, not speed-up" in stdout
    assert report["numpyro_gmm"][0]["seconds_per_pass"] > 0
    assert report["sklearn"]["means_difference_vs_numpyro_gmm"] < 1e-4
    assert {row["devices"] for row in report["devices"]} == {1, 8}
    assert all(row["means_difference_vs_1_device"] < 1e-10 for row in report["devices"])


def test_bench_streaming_memmap_smoke(tmp_path):
    stdout, report = run_benchmark_smoke("bench_streaming_memmap.py", tmp_path)
    assert "file/peak" in stdout
    result = report["result"]
    assert result["pass_kinds"] == ["stepwise", "exact"]
    assert result["n"] == 50_000
