"""Write the student edition of the book's sources: every solution gone.

    python tools/student_edition.py OUT

copies what ``jupyter-book build`` reads (``_config.yml``, ``_toc.yml``,
``book/``, ``notebooks/``, ``results/``) into OUT and removes every
``{solution}`` block from the notebooks' Markdown cells and the pages,
leaving the exercises, their self-check cells and every stored output.
It also writes OUT/notebooks-student.zip, the chapters' notebooks as a
student downloads them. ``make book-student`` builds OUT into
``_build/student/html``; ``make book`` is the instructor edition, with
the solutions in dropdowns.

A solution is a MyST fence that opens with three or more backticks and
``{solution}`` and closes with the same backticks alone on a line; code
fences inside it use fewer backticks, as the chapters write them.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COPIED = ("_config.yml", "_toc.yml", "book", "notebooks", "results",
          "alexnet_lib")  # the library: the deviations page reads it
SOLUTION = re.compile(r"(?m)^(?P<fence>`{3,})\{solution\}[^\n]*\n"
                      r"(?:.*\n)*?(?P=fence)[ \t]*(?:\n|\Z)")
NOTE = ("*Student edition: the solutions are in the instructor edition "
        "of this book.*\n")


def strip_solutions(text: str) -> tuple[str, int]:
    """``text`` without its solution blocks, and how many went."""
    stripped, count = SOLUTION.subn("", text)
    return re.sub(r"\n{3,}", "\n\n", stripped), count


def strip_notebook(path: Path) -> int:
    """Strip the solutions of one notebook in place; returns how many."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    removed = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text, count = strip_solutions("".join(cell["source"]))
        if count:
            removed += count
            cell["source"] = text.splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return removed


def write_edition(out: Path) -> dict[str, int]:
    """Copy the sources to ``out`` and strip them; {file: solutions}."""
    if out.resolve() == REPO:
        raise SystemExit("student_edition: OUT must not be the book "
                         "itself; pass a new folder such as "
                         "_build/student-src")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, out / name, ignore=shutil.ignore_patterns(
                "__pycache__", ".ipynb_checkpoints", "vendor", "*.so",
                "*.egg-info"))
        else:
            shutil.copy2(src, out / name)
    if (REPO / "book" / "vendor").is_dir():  # local MathJax: link, no copy
        (out / "book" / "vendor").symlink_to(REPO / "book" / "vendor")
    removed = {}
    for path in sorted((out / "notebooks").glob("*.ipynb")):
        removed[f"notebooks/{path.name}"] = strip_notebook(path)
    for path in sorted((out / "book").glob("*.md")):
        text, count = strip_solutions(path.read_text(encoding="utf-8"))
        if count:
            path.write_text(text, encoding="utf-8")
            removed[f"book/{path.name}"] = count
    config = out / "_config.yml"
    config.write_text(re.sub(r'(?m)^title: *"(.*)"$',
                             r'title: "\1 (student edition)"',
                             config.read_text(encoding="utf-8"), count=1),
                      encoding="utf-8")
    intro = out / "book" / "intro.md"
    title, _, rest = intro.read_text(encoding="utf-8").partition("\n")
    intro.write_text(f"{title}\n\n{NOTE}{rest}", encoding="utf-8")
    with zipfile.ZipFile(out / "notebooks-student.zip", "w",
                         zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((out / "notebooks").glob("*.ipynb")):
            zf.write(path, f"alexnet-book-student/{path.name}")
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder to write (replaced)")
    args = parser.parse_args(argv)
    removed = write_edition(args.out)
    total = sum(removed.values())
    print(f"student edition in {args.out}: {total} solutions removed from "
          f"{sum(1 for v in removed.values() if v)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
