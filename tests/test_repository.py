"""The repository stands on its own: no test, benchmark or tutorial reads outside it."""

import re
from pathlib import Path

import conftest
import pytest

ROOT = Path(__file__).resolve().parent.parent
# A relative path climbing out of a folder; the absolute folders of the machine it runs on
# (the repository's parent and the home folder) are looked for as they are found, not named.
OUTSIDE = re.compile(r"""["']\.\.[/"']|\.\./|os\.pardir""")
MACHINE_PATHS = tuple(
    f"{folder}/" for folder in {str(ROOT.parent), str(Path.home())} if folder not in ("", "/")
)


def names_a_path_outside(line: str) -> bool:
    return bool(OUTSIDE.search(line)) or any(path in line for path in MACHINE_PATHS)


def test_the_audit_hook_records_opens_outside_the_repository():
    before = len(conftest._OPENED_OUTSIDE)
    sibling = Path(conftest._PARENT) / "no-such-sibling-of-the-repository" / "notes.md"
    with pytest.raises(FileNotFoundError):
        open(sibling)  # the audit event comes before the attempt: nothing is read
    recorded = conftest._OPENED_OUTSIDE[before:]
    del conftest._OPENED_OUTSIDE[before:]  # not a failure of this test
    assert recorded == [str(sibling)]
    (ROOT / "README.md").read_text()
    open(ROOT / "tests" / ".." / "README.md").close()
    assert len(conftest._OPENED_OUTSIDE) == before


def test_the_check_tells_inside_from_outside():
    assert not conftest._outside_the_repository(ROOT / "tests" / "conftest.py")
    assert not conftest._outside_the_repository(ROOT)
    assert conftest._outside_the_repository(ROOT.parent / "a-sibling" / "notes" / "x.md")
    assert conftest._outside_the_repository(f"{ROOT}-other/file")  # a sibling with a prefix
    assert not conftest._outside_the_repository("/tmp/x")  # temporary folders are fine
    assert not conftest._outside_the_repository(ROOT.parent / ".cache" / "jax" / "entry")


def sources() -> list[Path]:
    folders = ("tests", "benchmarks", "tutorials", "docs")
    suffixes = {".py", ".ipynb", ".md", ".rst", ".toml", ".cfg", ".sh"}
    return [
        path
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in suffixes
        and path.is_file()
        and not any(
            part.startswith((".", "_build")) or part == "generated"
            for part in path.relative_to(ROOT).parts
        )
    ] + [ROOT / ".ci" / "run", ROOT / "pyproject.toml"]


def test_no_source_names_a_path_outside_the_repository():
    assert names_a_path_outside('open("../data/notes.md")') and names_a_path_outside("os.pardir")
    assert names_a_path_outside(f"see {ROOT.parent}/elsewhere/file.csv")
    assert not names_a_path_outside('Path(__file__).resolve().parent.parent / "tutorials"')
    found = []
    for path in sources():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if path.suffix == ".ipynb" and '"image/png"' in line:
                continue
            if names_a_path_outside(line) and path.name != "test_repository.py":
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
