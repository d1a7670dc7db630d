"""The repository stands on its own: no test, benchmark or tutorial reads outside it."""

import re
from pathlib import Path

import conftest
import pytest

ROOT = Path(__file__).resolve().parent.parent
# A relative path climbing out of a folder, a sibling's notes, this machine's folders.
OUTSIDE = re.compile(r"""["']\.\.[/"']|\.\./|os\.pardir|shared/notes|["']/work/|["']/root/""")


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
    assert conftest._outside_the_repository(ROOT.parent / "shared" / "notes" / "x.md")
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
    assert OUTSIDE.search('open("../shared/notes.md")') and OUTSIDE.search("os.pardir")
    assert not OUTSIDE.search('Path(__file__).resolve().parent.parent / "tutorials"')
    found = []
    for path in sources():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if path.suffix == ".ipynb" and '"image/png"' in line:
                continue
            if OUTSIDE.search(line) and path.name != "test_repository.py":
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
