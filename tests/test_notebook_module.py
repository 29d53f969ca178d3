"""alexnet_lib.notebook: the chapters' first cell, its header, the stop
on missing data, Markdown tables, and the rules every notebook keeps."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import alexnet_lib
from alexnet_lib.experiments import ProxyPlan, proxy_run
from alexnet_lib.notebook import (ChapterStopped, duration, format_points,
                                  check_answer, format_mean_std,
                                  format_value,
                                  show_table)

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
# Stands in for "no network": the cpu profile's download fails at once.
OFFLINE = """\
from alexnet_lib.data import locate
from alexnet_lib.data.errors import DownloadError


def no_network(*args, **kwargs):
    raise DownloadError("no network in this test")


locate.fetch = no_network"""


def _run(cells, tmp_path, monkeypatch, allow_errors=False, **env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            allow_errors=allow_errors,
                            resources={"metadata": {"path": str(tmp_path)}})
    return client, nb


def _errors(cell):
    return [o for o in cell.outputs if o.output_type == "error"]


@pytest.fixture
def empty_data(tmp_path, monkeypatch):
    """No data anywhere but the shipped sample; cpu profile, offline."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    return dict(ALEXNET_DATA=str(tmp_path / "data"), ALEXNET_PROFILE="cpu")


def test_missing_data_stops_the_chapter_in_its_first_cell(
        tmp_path, monkeypatch, empty_data):
    start = ('from alexnet_lib.notebook import start\n'
             'NB = start("9_test", needs=["cifar10"])')
    client, nb = _run([OFFLINE, start, "print(NB.profile)"], tmp_path,
                      monkeypatch, **empty_data)
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    # Jupyter's "run all" and nbclient stop at the first error.
    [error] = _errors(nb.cells[1])
    assert error.ename == "ChapterStopped"
    assert error.evalue.startswith("CIFAR-10 not found: looked for ")
    assert "python -m alexnet_lib fetch cifar10" in error.evalue
    assert error.evalue.endswith(
        "The chapter stops here; run this cell again once the data is "
        "in place.")
    # a short message, not a Python traceback
    assert error.traceback == [f"ChapterStopped: {error.evalue}"]
    assert nb.cells[2].outputs == []
    assert "NameError" not in str(info.value)


def test_cells_run_one_by_one_after_the_stop_fail_with_one_line(
        tmp_path, monkeypatch, empty_data):
    start = ('from alexnet_lib.notebook import start\n'
             'NB = start("9_test", needs=["cifar10"])')
    later = ["print(NB.profile)", "x = 1\nprint(x)"]
    again = ('import os\nos.environ["ALEXNET_PROFILE"] = "ci"\n' + start)
    client, nb = _run([OFFLINE, start, *later, again, "print(NB.profile)"],
                      tmp_path, monkeypatch, allow_errors=True,
                      **empty_data)
    client.execute()  # as nbval or a reader running cell after cell
    enames = [[e.ename for e in _errors(c)] for c in nb.cells]
    assert enames == [[], ["ChapterStopped"], ["ChapterStopped"],
                      ["ChapterStopped"], [], []]
    for cell in nb.cells[2:4]:
        [error] = _errors(cell)
        assert error.evalue == ("not run: 9_test stopped in its first "
                                "cell (CIFAR-10 not found); see there")
        assert len(error.traceback) == 1
    # running the first cell again (here with the ci sample) lifts it
    assert nb.cells[5].outputs[0].text == "ci\n"


def test_header_gets_the_wall_time_and_tables_carry_their_text(
        tmp_path, monkeypatch):
    table = "| a | b |\n|---|---|\n| 1 | 2 |\n\nOne row."
    cells = ['from alexnet_lib.notebook import show_table, start\n'
             'NB = start("9_test", needs=["cifar10", "imagenet-samples"])',
             f"show_table({table!r})",
             "NB.finish()"]
    client, nb = _run(cells, tmp_path, monkeypatch, ALEXNET_PROFILE="ci")
    client.execute()
    [header] = nb.cells[0].outputs
    text = header.data["text/plain"]
    lines = text.splitlines()
    assert [line[:10] for line in lines] == [
        "profile : ", "data    : ", " " * 10, "hardware: ", "torch   : ",
        "time    : "]
    assert lines[0] == "profile : ci"
    assert lines[1] == ("data    : CIFAR-10, shipped sample (1,017 exact "
                        "test / 2,000 train images)")
    assert f"alexnet_lib {alexnet_lib.__version__}" in lines[4]
    # finish() replaced the placeholder in place with this run's time
    assert re.fullmatch(r"time    : \d+\.\d s for the whole notebook "
                        r"\(run of \d{4}-\d\d-\d\d\)", lines[5]), lines[5]
    assert "0x" not in text and "PosixPath" not in text
    [shown] = nb.cells[1].outputs
    assert shown.output_type == "display_data"
    assert shown.data == {"text/markdown": table, "text/plain": table}
    assert nb.cells[2].outputs[0].text.startswith(
        "wall time of this notebook: ")


def test_show_table_rejects_text_without_a_table():
    with pytest.raises(ValueError) as info:
        show_table("no table here")
    assert str(info.value) == (
        "show_table needs a Markdown table: a '| a | b |' header row then "
        "a '|---|---|' row; use show_markdown for other text")


def test_stop_renders_as_one_line():
    err = ChapterStopped("CIFAR-10 not found.")
    assert err._render_traceback_() == [
        "ChapterStopped: CIFAR-10 not found."]


def test_format_mean_std_and_duration():
    assert format_mean_std([0.1234, 0.1334]) == "12.84 ± 0.71"
    assert format_mean_std([0.05]) == "5.00"
    assert format_mean_std([-0.01, -0.03], sign=True) == "-2.00 ± 1.41"
    assert format_mean_std([0.5], unit="%") == "50.00%"
    assert format_mean_std([3.0, 5.0], 1) == "4.00 ± 1.41"
    assert format_points([-1.26, -0.70, -0.55]) == "-0.84 ± 0.37"
    assert format_points([0.5]) == "+0.50"
    assert [duration(s) for s in (18.84, 99.9, 620.4)] == [
        "18.8 s", "99.9 s", "10.3 min"]
    assert format_value(40.7) == "40.7" and format_value(None) == "–"
    assert format_value(0.12345, 3) == "0.123"


def test_proxy_run_shows_one_progress_bar_per_run(capsys):
    from alexnet_lib.data import CifarTensors
    from alexnet_lib.models import create_model
    import torch
    g = torch.Generator().manual_seed(0)
    data = CifarTensors(torch.randint(0, 256, (64, 3, 32, 32), generator=g,
                                      dtype=torch.uint8),
                        torch.randint(0, 10, (64,), generator=g),
                        [str(i) for i in range(10)])
    plan = ProxyPlan(epochs=2, low_lr_epochs=1, batch_size=32,
                     train_eval_images=32)
    proxy_run(lambda: create_model("alexnet_cifar"), data, data, plan,
              seed=3, mean=data.images.float().mean(0), name="tiny")
    out = capsys.readouterr()
    assert out.out == ""  # nothing printed per epoch
    final = out.err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(r"tiny seed 3: 100%\|.*\| 2/2 .*running error "
                    r"\d\.\d{3}, test error \d\.\d{3}, \d+ images/s\]",
                    final), final


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_chapter_starts_with_start_and_guesses_no_paths(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code"]
    first = code[0]
    assert re.search(rf'NB = start\("{path.stem}",\s+needs=\[', first)
    assert len(first.splitlines()) <= 12
    tag = f"alexnet-book@v{alexnet_lib.__version__}"
    assert tag in first  # Colab/Kaggle install the book's own version
    assert "KAGGLE_KERNEL_RUN_TYPE" in first
    assert "NB.finish()" in code[-1]
    for source in code:
        for guess in ("BESIDE", "ALEXNET_DATA", "data_root(", "shared",
                      '/ "imagenet-samples"', '/ "imagenet_class_index',
                      "find_imagenet(", "find_cifar10(", "import Markdown"):
            assert guess not in source, (path.name, guess)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_markdown_outputs_carry_the_same_text(path):
    nb = json.loads(path.read_text())
    counts = [c.get("execution_count") for c in nb["cells"]
              if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1))
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            assert "<IPython.core.display" not in "".join(
                data.get("text/plain", ""))
            if "text/markdown" in data:
                assert data["text/plain"] == data["text/markdown"]


def test_nbval_fails_once_and_skips_the_cells_after_a_stop(
        tmp_path, monkeypatch, empty_data):
    """Under nbval a missing data set is one failure; the cells after it
    are skipped with the stop's reason, not buried in NameErrors."""
    import subprocess
    import sys
    start = ('from alexnet_lib.notebook import start\n'
             'NB = start("9_test", needs=["cifar10"])')
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(c) for c in
        (OFFLINE, start, "print(NB.profile)", "print(NB.data)")])
    folder = tmp_path / "book"
    folder.mkdir()
    nbformat.write(nb, folder / "9_test.ipynb")
    repo = Path(__file__).parents[1]
    (folder / "conftest.py").write_text(
        (repo / "conftest.py").read_text())
    env = {**__import__("os").environ, **empty_data}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
         "-p", "no:cacheprovider", "-rs", "-q", "9_test.ipynb"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert re.search(r"\b1 failed, 1 passed, 2 skipped\b", out), out[-3000:]
    assert "not run: 9_test stopped in its first cell (CIFAR-10 not " \
           "found); see there" in out
    assert "NameError" not in out


def test_check_answer_says_what_is_right_and_what_to_do():
    hint = "use aliased_share"
    assert check_answer(None, 57.6, "x", hint) == \
        "Not answered yet: set x above."
    assert check_answer(57.5, 57.6, "x", hint, tolerance=0.5) == \
        "✅ Correct (57.6)."
    assert check_answer(50, 57.6, "x", hint, tolerance=0.5) == \
        "❌ Not yet: use aliased_share"
    assert check_answer("a lot", 57.6, "x", hint) == \
        "❌ x should be a number, got 'a lot'."
    assert check_answer(99, 99, "field", hint) == "✅ Correct (99)."
