"""Every tutorial runs, at its smoke size, and writes its figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

FIGURES = {
    "01_quickstart.py": ["01_faithful_fit.png", "01_objective_trace.png"],
    "02_em_vs_nuts_galaxies.py": [
        "02_map_inside_posterior.png",
        "02_galaxies_fits.png",
        "02_posterior_with_map.png",
        "02_compare_laplace.png",
    ],
    "03_escaping_bad_optima.py": ["03_grid_methods.png"],
    "04_sklearn_users.py": ["04_bic.png"],
}


def test_every_tutorial_is_tested_and_its_figures_are_committed():
    assert sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py")) == sorted(FIGURES)
    for figures in FIGURES.values():
        for figure in figures:
            assert (TUTORIALS / "figures" / figure).is_file(), figure


@pytest.mark.parametrize("script", sorted(FIGURES))
def test_tutorial_runs_at_smoke_size(script, tmp_path):
    env = {
        **os.environ,
        "NUMPYRO_GMM_TUTORIAL_SMOKE": "1",
        "NUMPYRO_GMM_TUTORIAL_FIGURES": str(tmp_path),
        "JAX_PLATFORMS": "cpu",
        "MPLBACKEND": "Agg",
    }
    completed = subprocess.run(
        [sys.executable, str(TUTORIALS / script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for figure in FIGURES[script]:
        assert (tmp_path / figure).stat().st_size > 1000, figure
