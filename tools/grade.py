"""Grade students' notebooks by their self-check cells.

    python tools/grade.py STUDENT.ipynb [...]            # as handed in
    python tools/grade.py --run --profile ci STUDENT.ipynb [...]

Every exercise chapter ends with cells that start with ``# Self-check``;
each prints one verdict: "✅ Correct ...", "❌ Not yet: ..." or "Not
answered yet ...". This script reads those verdicts from each notebook's
stored outputs (or, with ``--run``, executes the notebook first, under
the given run profile, in a copy; the student's file is not changed) and
prints one line per notebook and a Markdown table of the checks. A
notebook whose self-check cell did not run counts that check as "not
run". Exit status 0, or 2 with one line for a file that cannot be read.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VERDICTS = (("✅", "correct"), ("❌", "not yet"),
            ("Not answered yet", "not answered"))


def verdicts(nb: dict) -> list[str]:
    """One verdict per self-check cell, in order."""
    found = []
    for cell in nb.get("cells", []):
        source = "".join(cell.get("source", ""))
        if cell.get("cell_type") != "code" or not source.lstrip(
                ).startswith("# Self-check"):
            continue
        text = "".join("".join(out.get("text", ""))
                       for out in cell.get("outputs", [])
                       if out.get("output_type") == "stream")
        found.append(next((name for mark, name in VERDICTS if mark in text),
                          "not run"))
    return found


def run_copy(path: Path, profile: str) -> dict:
    """The notebook executed in a temporary copy (errors allowed, so
    one wrong answer does not stop the later checks)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copy2(path, copy)
        env = {**os.environ, "ALEXNET_PROFILE": profile}
        subprocess.run([sys.executable, "-m", "jupyter", "execute",
                        "--inplace", "--allow-errors", str(copy)],
                       cwd=path.parent, env=env, check=True,
                       capture_output=True, timeout=3600)
        return json.loads(copy.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--run", action="store_true", help="execute "
                        "each notebook (in a copy) before grading")
    parser.add_argument("--profile", default="ci", help="run profile for "
                        "--run (default ci: seconds per chapter)")
    args = parser.parse_args(argv)
    rows = []
    for path in args.notebooks:
        try:
            nb = (run_copy(path, args.profile) if args.run else
                  json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            print(f"grade: cannot read {path}: {err}".splitlines()[0],
                  file=sys.stderr)
            return 2
        found = verdicts(nb)
        correct = found.count("correct")
        print(f"{path.name}: {correct} of {len(found)} self-checks "
              f"correct")
        rows.append((path.name, found))
    print("\n| notebook | " + " | ".join(
        f"check {i + 1}" for i in range(max(len(f) for _, f in rows)))
          + " |")
    print("|---" * (1 + max(len(f) for _, f in rows)) + "|")
    for name, found in rows:
        print(f"| {name} | " + " | ".join(found) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
