"""tools/grade.py: reading the self-check verdicts of a notebook."""
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "grade", REPO / "tools" / "grade.py")
grade = importlib.util.module_from_spec(spec)
spec.loader.exec_module(grade)


def _cell(source, text=None):
    outputs = [] if text is None else [
        {"output_type": "stream", "name": "stdout", "text": [text]}]
    return {"cell_type": "code", "source": [source], "outputs": outputs,
            "metadata": {}, "execution_count": None}


def test_verdicts_read_each_self_check_cell(tmp_path, capsys):
    nb = {"cells": [
        _cell("answer = 3"),
        _cell("# Self-check: one\nprint(check())", "✅ Correct (3).\n"),
        _cell("# Self-check: two\nprint(check())", "❌ Not yet: no.\n"),
        _cell("# Self-check: three", "Not answered yet: set x above.\n"),
        _cell("# Self-check: four")],  # never ran
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert grade.verdicts(nb) == ["correct", "not yet", "not answered",
                                  "not run"]
    path = tmp_path / "student.ipynb"
    path.write_text(json.dumps(nb))
    assert grade.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "student.ipynb: 1 of 4 self-checks correct" in out
    assert ("| student.ipynb | correct | not yet | not answered | "
            "not run |") in out


def test_every_stored_chapter_has_two_unanswered_self_checks():
    """As stored, each chapter's self-checks ran and say "not answered"
    (the reader has not answered yet); at least two per chapter, and
    each one's verdict goes through check_answer (so a right answer
    prints the ✅ that grade.py counts)."""
    counts = {}
    for path in sorted(REPO.glob("notebooks/*.ipynb")):
        nb = json.loads(path.read_text())
        found = grade.verdicts(nb)
        assert set(found) <= {"not answered"}, (path.name, found)
        counts[path.name] = len(found)
        for cell in nb["cells"]:
            source = "".join(cell["source"])
            if source.lstrip().startswith("# Self-check"):
                assert "check_answer(" in source or "✅" in source, (
                    path.name, source[:60])
    assert len(counts) == 16
    assert min(counts.values()) >= 2, counts


def test_unreadable_notebook_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert grade.main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grade: cannot read") and err.count("\n") == 1
