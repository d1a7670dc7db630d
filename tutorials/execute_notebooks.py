"""Execute the tutorial notebooks in place, so that their committed outputs are current.

Usage: ``python tutorials/execute_notebooks.py [NN_name.ipynb ...]`` (default: all). Each
notebook runs with ``tutorials/`` as its working directory, so its figures go to
``tutorials/figures/``. ``NUMPYRO_GMM_TUTORIAL_SMOKE=1`` runs the small version (do not commit
that). The outputs are checked for absolute paths of the machine they ran on.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path, cwd: Path, timeout: int | None = None) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` with ``cwd`` as working directory; return it with outputs."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return notebook


def absolute_paths(notebook: nbformat.NotebookNode, roots: list[str]) -> list[str]:
    """Output lines of ``notebook`` that name one of ``roots`` (absolute paths)."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            found += [line for line in text.splitlines() if any(r in line for r in roots)]
    return found


def main(names: list[str]) -> int:
    paths = [HERE / n for n in names] or sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    roots = [str(HERE.parent), str(Path.home()), "site-packages"]
    for path in paths:
        started = time.perf_counter()
        notebook = execute(path, HERE)
        leaked = absolute_paths(notebook, roots)
        if leaked:
            print(f"{path.name}: outputs name absolute paths:", *leaked, sep="\n  ")
            return 1
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
