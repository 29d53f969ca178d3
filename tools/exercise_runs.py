"""Run the code of the exercise solutions and record what it printed.

    python tools/exercise_runs.py [--profile ci] [--store] [--json PATH] CHAPTER [...]
    python tools/exercise_runs.py --list CHAPTER [...]

For each chapter (``notebooks/CHAPTER.ipynb``) this executes the
notebook's code cells under the given run profile, up to its closing
``NB.finish()`` cell, and then, in the same kernel and in the order of
the page, the Python blocks of every exercise solution, as a student who
pastes each solution after reading the chapter would. For each solution
it records the wall time, what the code printed, and the error if it
raised one. The records go into ``results/exercises/<profile>.json``
(chapters already there and not named are kept), which the book's
``{exercise-run}`` directive shows inside each solution. Each entry keeps
a hash of the solution's code, so a test can tell when a solution
changed after its record was made.

Without ``--store`` the records a chapter writes go to a temporary
folder, so ``results/`` keeps those of the stored pages; ``--store``
also writes each executed chapter back to ``notebooks/``
(all its cells run, ``NB.finish()`` included, before the solutions), so
one execution re-stores the page and records its solutions. ``--list``
prints the solutions that have code, without running them.
Exit status 0, or 2 with one line for a chapter that does not exist.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# ````{solution} LABEL ... ```` with the directive's options first
SOLUTION = re.compile(r"^````\{solution\} (\S+)\n(.*?)^````$", re.S | re.M)
PYTHON = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
OUTPUT_LIMIT = 4000  # characters of printed output kept per solution


def solutions(nb: dict) -> dict[str, str]:
    """Label -> the solution's Python code (its blocks joined), for the
    solutions that have code, in the order of the page."""
    found = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for label, body in SOLUTION.findall("".join(cell["source"])):
            blocks = PYTHON.findall(body)
            if blocks:
                found[label] = "\n".join(b.rstrip("\n") for b in blocks)
    return found


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()[:12]


def _is_finish(cell: dict) -> bool:
    return "NB.finish()" in "".join(cell["source"])


def _printed(outputs: list[dict]) -> tuple[str, str | None]:
    """(text printed, error line or None) of one executed cell."""
    text, error = [], None
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") == "stdout":
            text.append("".join(out.get("text", "")))  # not progress bars
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data:
                text.append("".join(data["text/plain"]) + "\n")
        elif kind == "error":
            error = f"{out.get('ename')}: {out.get('evalue')}"
    joined = "".join(text)
    if len(joined) > OUTPUT_LIMIT:
        joined = joined[:OUTPUT_LIMIT] + "\n[... cut ...]\n"
    return joined, error


def run_chapter(path: Path, profile: str, store: bool = False) -> dict:
    """Execute the chapter, then its solutions; one record per solution.
    With ``store``, every cell runs (``NB.finish()`` too) and the
    executed chapter is written back to ``path`` before the solutions
    run, so one execution both re-stores the page and records them."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    wanted = solutions(nb)
    os.environ["ALEXNET_PROFILE"] = profile
    # Without store the chapter's records go to a scratch folder, so
    # results/ keeps those of the stored page (the kernel inherits this
    # process's environment when it starts).
    scratch = None if store else tempfile.TemporaryDirectory()
    saved = os.environ.get("ALEXNET_RESULTS")
    if scratch is not None:
        os.environ["ALEXNET_RESULTS"] = scratch.name
    try:
        return _execute(nb, path, wanted, store)
    finally:
        if scratch is not None:
            scratch.cleanup()
            if saved is None:
                os.environ.pop("ALEXNET_RESULTS", None)
            else:
                os.environ["ALEXNET_RESULTS"] = saved


def _execute(nb, path: Path, wanted: dict[str, str], store: bool) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(nb, timeout=4 * 3600, kernel_name="python3",
                            store_widget_state=True,
                            resources={"metadata": {"path": str(path.parent)}})
    records = {}
    start = time.perf_counter()
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if _is_finish(cell) and not store:
                break
            client.execute_cell(cell, i)
        chapter_s = time.perf_counter() - start
        if store:
            client.set_widgets_metadata()
            nbformat.write(nb, path)
        for label, code in wanted.items():
            cell = nbformat.v4.new_code_cell(code)
            nb.cells.append(cell)
            t = time.perf_counter()
            try:
                client.execute_cell(cell, len(nb.cells) - 1)
            except CellExecutionError:
                pass  # the error is in the cell's outputs
            printed, error = _printed(cell.outputs)
            records[label] = {"seconds": round(time.perf_counter() - t, 1),
                              "printed": printed, "error": error,
                              "code_sha256": code_hash(code)}
            print(f"  {label}: {records[label]['seconds']} s"
                  + (f", error {error}" if error else ""), flush=True)
    return {"chapter_seconds": round(chapter_s, 1), "solutions": records}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("chapters", nargs="+",
                   help="notebook names, e.g. 6_results")
    p.add_argument("--profile", default="ci", choices=("ci", "cpu", "gpu"))
    p.add_argument("--json", type=Path, default=None,
                   help="record file (default results/exercises/"
                        "<profile>.json)")
    p.add_argument("--list", action="store_true",
                   help="print the solutions with code, run nothing")
    p.add_argument("--store", action="store_true",
                   help="also write each executed chapter back to "
                        "notebooks/ (before its solutions run)")
    args = p.parse_args(argv)
    paths = [ROOT / "notebooks" / f"{Path(c).stem}.ipynb"
             for c in args.chapters]
    for path in paths:
        if not path.is_file():
            print(f"exercise_runs: no chapter {path.stem!r} in notebooks/; "
                  f"give a notebook name such as 6_results", file=sys.stderr)
            return 2
    if args.list:
        for path in paths:
            nb = json.loads(path.read_text(encoding="utf-8"))
            for label, code in solutions(nb).items():
                print(f"{path.stem} {label} {code.count(chr(10)) + 1} lines")
        return 0
    import torch

    from alexnet_lib.sysinfo import git_commit, hardware_summary
    out = args.json or ROOT / "results" / "exercises" / f"{args.profile}.json"
    record = (json.loads(out.read_text()) if out.is_file()
              else {"profile": args.profile, "chapters": {}})
    for path in paths:
        print(f"{path.stem} under {args.profile}", flush=True)
        chapter = run_chapter(path, args.profile, args.store)
        chapter.update(
            date=datetime.date.today().isoformat(), commit=git_commit(),
            hardware=hardware_summary(), torch=torch.__version__)
        record["chapters"][path.stem] = chapter
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1, ensure_ascii=False,
                                  sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
