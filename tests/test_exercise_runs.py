"""tools/exercise_runs.py and the book's {exercise-run} directive: the
printed output of the solutions, recorded per profile."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "exercise_runs", REPO / "tools" / "exercise_runs.py")
exercise_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exercise_runs)
sys.path.insert(0, str(REPO / "book" / "_ext"))

DIRECTIVE = re.compile(r"^```\{exercise-run\} (\S+)$", re.M)
# Solutions that train or evaluate networks: their dropdown must show
# what our runs printed.
EXPERIMENTS = {
    "ex-relu-which-change", "ex-relu-full-pass", "ex-2gpu-full",
    "ex-results-tencrop", "ex-results-init", "ex-qual-codes",
    "ex-qual-layer", "ex-depth-two", "ex-depth-size", "ex-after-vgg-e",
    "ex-lenet-relu", "ex-zf-occluder"}


def _markdown(source):
    return {"cell_type": "markdown", "metadata": {}, "source": [source]}


def _notebooks():
    return {p.stem: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted((REPO / "notebooks").glob("*.ipynb"))}


def _directives():
    found = {}
    for name, nb in _notebooks().items():
        for cell in nb["cells"]:
            for label in DIRECTIVE.findall("".join(cell["source"])):
                found[label] = name
    return found


def test_solutions_are_the_python_blocks_of_each_solution():
    nb = {"cells": [
        _markdown("```{exercise} A\n:label: ex-a\n\nText.\n```\n\n"
                  "````{solution} ex-a\n:class: dropdown\n\n"
                  "```python\nx = 1\n```\n\nWords.\n\n"
                  "```python\nprint(x)\n```\n````\n\n"
                  "````{solution} ex-b\n:class: dropdown\n\nNo code.\n"
                  "````"),
        {"cell_type": "code", "metadata": {}, "outputs": [],
         "source": ["```python\nnot = 'a solution'\n```"]}]}
    assert exercise_runs.solutions(nb) == {"ex-a": "x = 1\nprint(x)"}


def test_unknown_chapter_is_one_line_and_exit_2(capsys):
    assert exercise_runs.main(["--list", "no_such_chapter"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("exercise_runs: no chapter 'no_such_chapter'")
    assert err.count("\n") == 1


def test_list_names_every_solution_with_code(capsys):
    assert exercise_runs.main(["--list", "7_discussion"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == [
        "ex-depth-two", "ex-depth-size"]


def test_every_experiment_solution_shows_our_runs():
    shown = _directives()
    assert EXPERIMENTS <= set(shown), EXPERIMENTS - set(shown)


def test_every_shown_solution_has_a_current_ci_record():
    """Each {exercise-run} label has a ci record made from the solution's
    code as it is now, and no record raised an error."""
    from book_exercises import find, load
    records = load(str(REPO))
    assert "ci" in records
    notebooks = _notebooks()
    for label, chapter in _directives().items():
        code = exercise_runs.solutions(notebooks[chapter])[label]
        found = find(records, label)
        assert "ci" in found, label
        for profile, (_, sol) in found.items():
            assert sol["code_sha256"] == exercise_runs.code_hash(code), (
                f"{label}: the {profile} record was made from other code; "
                f"run tools/exercise_runs.py --profile {profile} {chapter}")
            assert sol["error"] is None, (label, profile, sol["error"])


def test_directive_renders_each_profile(tmp_path):
    import book_exercises
    folder = tmp_path / "results" / "exercises"
    folder.mkdir(parents=True)
    chapter = {"chapter_seconds": 8.9, "date": "2026-12-04",
               "hardware": "2 CPU threads (X)", "commit": "abc",
               "torch": "2", "solutions": {"ex-a": {
                   "seconds": 0.4, "printed": "0.25\n", "error": None,
                   "code_sha256": "0"}}}
    (folder / "ci.json").write_text(json.dumps(
        {"profile": "ci", "chapters": {"c": chapter}}))
    (folder / "cpu.json").write_text(json.dumps(
        {"profile": "cpu", "chapters": {}}))
    records = book_exercises.load(str(tmp_path))
    assert set(records) == {"ci", "cpu"}
    assert set(book_exercises.find(records, "ex-a")) == {"ci"}
    assert book_exercises.find(records, "ex-b") == {}
    assert book_exercises.seconds(0.44) == "0.4 s"
    assert book_exercises.seconds(600) == "10.0 min"
    assert book_exercises.printed(
        "VGG-E seed 0:   0%|          | 0/1 [00:00<?, ?epoch/s]\n"
        "+1.00 ± 0.95\n") == "+1.00 ± 0.95"


def test_printed_keeps_stdout_results_and_the_error():
    outputs = [
        {"output_type": "stream", "name": "stderr", "text": ["bar 0%|\n"]},
        {"output_type": "stream", "name": "stdout", "text": ["0.25\n"]},
        {"output_type": "execute_result", "data": {"text/plain": ["42"]}},
        {"output_type": "error", "ename": "ValueError", "evalue": "bad"}]
    assert exercise_runs._printed(outputs) == ("0.25\n42\n",
                                               "ValueError: bad")
