"""The README's Python examples run, in order, as one program, so they cannot go stale."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of ``text``, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found():
    blocks = python_blocks("text\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = 2\n```\n")
    assert blocks == ["a = 1\n", "b = 2\n"]


def test_readme_python_blocks_run_in_order(tmp_path):
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 5
    marker = "README BLOCK"
    clock = "__import__('time').perf_counter()"
    program = f"_readme_started = {clock}\n" + "\n".join(
        f"print({f'{marker} {i}'!r}, f'{{{clock} - _readme_started:.1f}} s', flush=True)\n{block}"
        for i, block in enumerate(blocks)
    )
    program += f"\nprint({f'{marker} done'!r}, f'{{{clock} - _readme_started:.1f}} s')\n"
    (tmp_path / "readme_examples.py").write_text(program)
    completed = subprocess.run(
        [sys.executable, "readme_examples.py"],
        cwd=tmp_path,  # the examples write files (map.nc, big.npy): keep them out of the repo
        capture_output=True,
        text=True,
        timeout=600,
    )
    reached = re.findall(rf"^{marker} (\S+) ", completed.stdout, flags=re.MULTILINE)
    assert completed.returncode == 0, (
        f"README block {reached[-1] if reached else '?'} failed:\n{completed.stderr[-4000:]}"
    )
    assert reached[-1] == "done", completed.stdout[-4000:]
    print(*re.findall(rf"^{marker} .*$", completed.stdout, flags=re.MULTILINE), sep="\n")
