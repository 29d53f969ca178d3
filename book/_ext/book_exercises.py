"""The ``{exercise-run}`` directive: what a solution's code printed in
our runs, from the records of ``tools/exercise_runs.py``.

    ```{exercise-run} ex-depth-two
    ```

inside a solution renders, for each profile with a record in
``results/exercises/<profile>.json``, one line (profile, hardware,
date, the solution's wall time after the chapter had run) and the
printed text as a literal block. A profile whose record lacks the label
is named as "not run". The text comes from the JSON only, so the
solution cannot quote a number that no run printed.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from book_deviations import mark_generated

PROFILES = ("ci", "cpu", "gpu")
FOLDER = "results/exercises"
CAVEAT = {"ci": " (ci trains on a few hundred images for an epoch or two: "
                "a number that depends on training shows only that the "
                "code runs.)"}


def load(srcdir: str) -> dict[str, dict]:
    """Profile -> record, for the profiles that have one."""
    folder = Path(srcdir) / FOLDER
    return {p: json.loads((folder / f"{p}.json").read_text(encoding="utf-8"))
            for p in PROFILES if (folder / f"{p}.json").is_file()}


def find(records: dict[str, dict], label: str) -> dict[str, tuple]:
    """Profile -> (chapter record, solution record) for ``label``."""
    found = {}
    for profile, record in records.items():
        for chapter in record["chapters"].values():
            if label in chapter["solutions"]:
                found[profile] = (chapter, chapter["solutions"][label])
    return found


# a progress bar's line, e.g. "VGG-E seed 0:  40%|####  | 2/5 [00:03<...]"
PROGRESS = re.compile(r"^.*\d+%\|.*\|.*\]\s*$")


def printed(text: str) -> str:
    """What the solution printed, without progress-bar lines."""
    return "\n".join(line for line in text.splitlines()
                     if not PROGRESS.match(line)).strip("\n")


def seconds(s: float) -> str:
    return f"{s:,.1f} s" if s < 120 else f"{s / 60:,.1f} min"


class ExerciseRunDirective(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        label = self.arguments[0]
        mark_generated(self.env)
        records = load(self.env.srcdir)
        found = find(records, label)
        if not found:
            raise self.error(f"exercise-run: no record of {label!r} in "
                             f"{FOLDER}/; run tools/exercise_runs.py")
        out: list[nodes.Node] = [nodes.rubric(text="What our runs printed")]
        for profile in PROFILES:
            if profile not in found:
                if profile in records:
                    out.append(nodes.paragraph(
                        text=f"Under {profile}: not run."))
                continue
            chapter, sol = found[profile]
            head = (f"Under {profile} ({chapter['hardware']}, "
                    f"{chapter['date']}): the chapter took "
                    f"{seconds(chapter['chapter_seconds'])}, this solution "
                    f"{seconds(sol['seconds'])}")
            if sol["error"]:
                head += f"; it raised {sol['error']}"
            head += "." + CAVEAT.get(profile, "")
            out.append(nodes.paragraph(text=head))
            text = printed(sol["printed"])
            if text:
                out.append(nodes.literal_block(text, text))
        return out


def setup(app: Sphinx) -> dict:
    app.setup_extension("book_deviations")
    app.add_directive("exercise-run", ExerciseRunDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
