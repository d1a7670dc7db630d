"""Every tutorial notebook runs at its smoke size, shows its figures inline and saves them.

The notebooks run with nbclient in a temporary folder (``NUMPYRO_GMM_TUTORIAL_SMOKE=1``,
figures into that folder), so the committed outputs and figures are never overwritten.
"""

import base64
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

FIGURES = {
    "01_quickstart.ipynb": ["01_faithful_fit.png", "01_objective_trace.png"],
    "02_em_vs_nuts_galaxies.ipynb": [
        "02_map_inside_posterior.png",
        "02_galaxies_fits.png",
        "02_posterior_with_map.png",
        "02_compare_laplace.png",
    ],
    "03_escaping_bad_optima.ipynb": ["03_grid_methods.png"],
    "04_sklearn_users.ipynb": ["04_bic.png"],
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def inline_images(notebook) -> list[bytes]:
    """The PNG images of the notebook's outputs, decoded."""
    return [
        base64.b64decode(output["data"]["image/png"])
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]


def output_text(notebook) -> str:
    return "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def test_every_notebook_is_tested_and_committed_executed():
    assert sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.ipynb")) == sorted(FIGURES)
    assert not list(TUTORIALS.glob("[0-9][0-9]_*.py")), "the notebooks are the source"
    for name, figures in FIGURES.items():
        notebook = nbformat.read(TUTORIALS / name, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.execution_count is not None for cell in code), f"{name} not executed"
        source = "\n".join(cell.source for cell in code)
        assert 'matplotlib.use("Agg")' not in source, name
        assert "benchmarks" not in source, f"{name} imports from benchmarks/"
        assert len(inline_images(notebook)) >= len(figures), f"{name}: figures not inline"
        assert all(image.startswith(PNG_MAGIC) for image in inline_images(notebook))
        text = json.dumps(notebook)
        for path in (str(TUTORIALS.parent.parent), "site-packages"):
            assert path not in text, f"{name} names a path of the machine it ran on: {path}"
        assert "Traceback" not in output_text(notebook), name
        for figure in figures:
            assert (TUTORIALS / "figures" / figure).is_file(), figure


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_notebook_runs_at_smoke_size(name, tmp_path, monkeypatch):
    monkeypatch.setenv("NUMPYRO_GMM_TUTORIAL_SMOKE", "1")
    monkeypatch.setenv("NUMPYRO_GMM_TUTORIAL_FIGURES", str(tmp_path))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    committed = (TUTORIALS / name).read_bytes()
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    assert (TUTORIALS / name).read_bytes() == committed
    assert len(inline_images(notebook)) >= len(FIGURES[name])
    for figure in FIGURES[name]:
        assert (tmp_path / figure).read_bytes().startswith(PNG_MAGIC), figure
        assert (tmp_path / figure).stat().st_size > 1000, figure
