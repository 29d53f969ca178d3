"""The student edition: the book's sources with every solution removed
(tools/student_edition.py, ``make book-student``), built like the book."""
import importlib.util
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "student_edition", REPO / "tools" / "student_edition.py")
student = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student)


def _count(pattern: str, folder: Path) -> int:
    total = 0
    for path in sorted(folder.glob("notebooks/*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        total += sum(len(re.findall(pattern, "".join(c["source"])))
                     for c in cells)
    return total


def test_strip_keeps_the_exercise_and_the_code_fences_around():
    text = ("```{exercise} Sum\n:label: ex-sum\n\nAdd.\n```\n\n"
            "````{solution} ex-sum\n:class: dropdown\n\n```python\n"
            "print(1 + 1)\n```\n````\n\n```python\nkept = True\n```\n")
    stripped, count = student.strip_solutions(text)
    assert count == 1
    assert "{solution}" not in stripped and "print(1 + 1)" not in stripped
    assert "```{exercise} Sum" in stripped and "kept = True" in stripped


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student") / "src"
    removed = student.write_edition(out)
    return out, removed


def test_every_solution_goes_and_every_exercise_stays(edition):
    out, removed = edition
    solutions = _count(r"\{solution\}", REPO)
    assert solutions >= 40 and sum(removed.values()) == solutions
    assert _count(r"\{solution\}", out) == 0
    assert _count(r"\{exercise\}", out) == _count(r"\{exercise\}", REPO)
    assert _count(r"# Self-check", out) == _count(r"# Self-check", REPO)
    assert '(student edition)"' in (out / "_config.yml").read_text()
    with zipfile.ZipFile(out / "notebooks-student.zip") as zf:
        names = sorted(Path(n).name for n in zf.namelist())
    assert names == sorted(p.name for p in REPO.glob("notebooks/*.ipynb"))


def test_student_edition_builds_without_warnings(edition, tmp_path):
    from test_book import jupyter_book
    out, _ = edition
    proc = subprocess.run(
        [jupyter_book(), "build", str(out), "--path-output",
         str(tmp_path), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    page = (tmp_path / "_build" / "html" / "notebooks" /
            "4_2_dropout.html").read_text()
    assert "ex-dropout-factor" in page  # the exercise is there
    assert not re.search(r'class="[^"]*\bsolution\b', page)
