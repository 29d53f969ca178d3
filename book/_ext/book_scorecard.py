"""The ``{scorecard}`` and ``{results-schema}`` directives.

Every experiment in the book writes one small JSON record,
``results/<experiment>.json`` (``alexnet_lib.results.record_result`` does
the writing). ``{scorecard}`` reads them all at build time and renders one
row per record; ``{results-schema}`` renders ``SCHEMA`` below, the one
definition of what a record holds. A record with a missing field or a
field of the wrong type is a build warning (an error under ``-W``) that
names the file and the field.

This module reads JSON only: it does not import ``alexnet_lib`` (or
torch), so the book builds in seconds.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

from book_deviations import inline, mark_generated, table
from book_exercises import load as load_exercise_runs
from book_verdicts import (NOT_TESTED, RULE, UNTESTED, VERDICTS,
                           verdict_counts, verdict_of)

logger = logging.getLogger(__name__)

NUMBER = (int, float)
# field: (accepted types, type as shown, meaning)
SCHEMA: dict[str, tuple[tuple[type, ...], str, str]] = {
    "experiment": ((str,), "str", "unique name; the file is "
                   "results/<experiment>.json"),
    "chapter": ((str,), "str", "notebook file name without .ipynb, "
                "e.g. 3_5_overall_architecture (linked when it exists)"),
    "claim": ((str,), "str", "the paper's claim, in a sentence, "
              "with its section"),
    "paper": ((str, *NUMBER), "str | number", "the paper's number as "
              "printed, e.g. \"60 million\" or 17.0"),
    "ours": ((str, *NUMBER), "str | number", "our measured number"),
    "unit": ((str,), "str", "unit of paper and ours, e.g. \"%\" "
             "(may be empty)"),
    "profile": ((str,), "str", "run profile: ci, cpu, gpu or imagenet"),
    "data": ((str,), "str", "data set and subset used, or \"none\""),
    "hardware": ((str,), "str", "alexnet_lib.sysinfo.hardware_summary()"),
    "wall_time_s": (NUMBER, "number", "wall time of the experiment, s"),
    "commit": ((str, type(None)), "str | null", "git commit of the "
               "library that produced it (null outside a checkout)"),
    "date": ((str,), "str", "ISO date of the run, YYYY-MM-DD"),
    "details": ((dict,), "object", "anything else worth keeping "
                "(per-run numbers, seeds, n runs); not shown here"),
}
COLUMNS = ["Chapter", "Claim", "Verdict", "Measured", "Profile",
           "Wall time"]
RECORD_COLUMNS = ["Experiment", "Paper", "Ours", "Data", "Hardware",
                  "Date", "Commit"]
COLOURS = {"reproduced": "#2e7d32", "same direction, smaller": "#9e9d24",
           "not reproduced": "#ef6c00", "opposite": "#c62828",
           "not tested here": "#757575"}


def check_record(record: object) -> list[str]:
    """Problems with one record, as messages; empty when it is valid."""
    if not isinstance(record, dict):
        return ["is not a JSON object"]
    problems = []
    for key, (types, shown, _) in SCHEMA.items():
        if key not in record:
            problems.append(f"has no field {key!r} ({shown})")
        elif (not isinstance(record[key], types)
              or isinstance(record[key], bool)):
            problems.append(f"field {key!r} should be {shown}, got "
                            f"{type(record[key]).__name__}")
    return problems


def load_records(folder: Path) -> list[tuple[Path, dict]]:
    """Valid records sorted by chapter, experiment; warns on bad ones."""
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            logger.warning("scorecard: cannot read %s: %s", path, err)
            continue
        problems = check_record(record)
        if problems:
            logger.warning("scorecard: %s %s (see the schema on the "
                           "scorecard page)", path, "; ".join(problems))
            continue
        records.append((path, record))
    return sorted(records, key=lambda pr: (pr[1]["chapter"],
                                           pr[1]["experiment"]))


def show(value: object, unit: str = "") -> str:
    """Numbers with thousands separators and the unit; text as written."""
    if isinstance(value, str):
        return value
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"
    if not unit:
        return text
    return f"{text}%" if unit == "%" else f"{text} {unit}"


class ScorecardDirective(SphinxDirective):
    optional_arguments = 1  # folder of records, default results

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0] if self.arguments else "results"
        folder = Path(self.env.srcdir) / name
        mark_generated(self.env)
        records = load_records(folder) if folder.is_dir() else []
        if not records:
            return [nodes.paragraph(
                text=f"No results yet: {name}/ holds no experiment "
                     "records. Each chapter's notebook writes its own "
                     "when it runs.")]
        rows = [self._row(record) for _, record in records]
        rows += [[inline(where), inline(claim),
                  [nodes.emphasis(text=NOT_TESTED)], inline(why),
                  [nodes.Text("–")], [nodes.Text("–")]]
                 for where, claim, why in UNTESTED]
        counts = verdict_counts([r for _, r in records])
        summary = nodes.paragraph(
            text=f"{len(records)} record{'' if len(records) == 1 else 's'} "
                 f"in {name}/, read when this page was built, and "
                 f"{len(UNTESTED)} claims the book does not measure: "
                 + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + ".")
        full = [[[nodes.literal(text=r["experiment"])],
                 [nodes.Text(show(r["paper"], r["unit"]))],
                 [nodes.Text(show(r["ours"], r["unit"]))],
                 [nodes.Text(r["data"])], [nodes.Text(r["hardware"])],
                 [nodes.Text(r["date"])],
                 [nodes.literal(text=r["commit"] or "none")]]
                for _, r in records]
        heading = nodes.rubric(text="Every record in full")
        return [_chart(counts), summary,
                nodes.paragraph("", "", *inline(RULE)),
                table(COLUMNS, rows, [12, 30, 10, 36, 6, 6]), heading,
                table(RECORD_COLUMNS, full, [14, 16, 24, 18, 12, 8, 8])]

    def _row(self, r: dict) -> list[list[nodes.Node]]:
        verdict, why = verdict_of(r)
        return [
            self._chapter(r["chapter"]),
            inline(r["claim"]),
            [nodes.strong(text=verdict)],
            [nodes.Text(why)],
            [nodes.Text(r["profile"])],
            [nodes.Text(_minutes(r["wall_time_s"]))],
        ]

    def _chapter(self, chapter: str) -> list[nodes.Node]:
        """A link to the chapter's page (its title) when it exists."""
        docname = f"notebooks/{chapter}"
        if docname not in self.env.found_docs:
            return [nodes.Text(chapter)]
        ref = addnodes.pending_xref(
            "", refdomain="std", reftype="doc", reftarget="/" + docname,
            refexplicit=False, refdoc=self.env.docname)
        ref += nodes.inline(text=chapter)
        return [ref]


def chapter_seconds(records: list[dict]) -> tuple[float, float]:
    """(the stored execution's seconds, seconds from scratch) of one
    chapter's records. A record's ``wall_time_s`` is the notebook's time
    when it was written, except a ``full_size_*`` record's, which is its
    training run's. A stored execution may have read trained networks
    from the run cache (runs marked ``cached``, with the ``seconds``
    their training took): from scratch, those are trained again, as are
    the full-size runs. Runs shared by several records count once."""
    own = [r["wall_time_s"] for r in records
           if not r["experiment"].startswith("full_size")] or [0.0]
    again: dict[tuple, float] = {}
    for r in records:
        if r["experiment"].startswith("full_size"):
            again[("full_size", r["experiment"])] = r["wall_time_s"]
        details = r.get("details")
        runs = details.get("runs") if isinstance(details, dict) else None
        for arm in (runs.values() if isinstance(runs, dict) else []):
            for run in (arm if isinstance(arm, list) else []):
                if isinstance(run, dict) and run.get("cached"):
                    key = (run.get("seed"), round(run["seconds"], 1))
                    again[key] = run["seconds"]
    return max(own), max(own) + sum(again.values())


def _reading_order(chapter: str) -> tuple[int, ...]:
    """'6_1_qualitative' -> (6, 1), '10_after_alexnet' -> (10,)."""
    found = re.match(r"\d+(?:_\d+)*", chapter)
    return tuple(int(n) for n in found.group().split("_")) if found else ()


def ci_seconds(srcdir: str) -> dict[str, float]:
    """Chapter -> seconds of its last execution under ci, from the
    exercise runs' record (tools/exercise_runs.py), when there is one."""
    chapters = load_exercise_runs(srcdir).get("ci", {}).get("chapters", {})
    return {c: r["chapter_seconds"] for c, r in chapters.items()}


class ChapterTimesDirective(ScorecardDirective):
    """One row per chapter: the profile and hardware of its stored
    records, the time of the stored execution and the time from scratch
    (chapter_seconds), and its time under ci where recorded."""

    def run(self) -> list[nodes.Node]:
        folder = Path(self.env.srcdir) / "results"
        mark_generated(self.env)
        by_chapter: dict[str, list[dict]] = {}
        for _, r in load_records(folder) if folder.is_dir() else []:
            by_chapter.setdefault(r["chapter"], []).append(r)
        if not by_chapter:
            return [nodes.paragraph(text="No chapter has recorded a run "
                                         "yet.")]
        ci = ci_seconds(self.env.srcdir)
        rows = []
        for c, records in sorted(by_chapter.items(),
                                 key=lambda kv: _reading_order(kv[0])):
            stored, scratch = chapter_seconds(records)
            latest = max(records, key=lambda r: r["date"])
            rows.append([self._chapter(c), [nodes.Text(latest["profile"])],
                         [nodes.Text(latest["hardware"])],
                         [nodes.Text(_minutes(stored))],
                         [nodes.Text(_minutes(scratch))],
                         [nodes.Text(_minutes(ci[c]) if c in ci else "–")],
                         [nodes.Text(latest["date"])]])
        note = nodes.paragraph(text=(
            "Stored run: the execution whose outputs the page shows, which "
            "may have read networks trained earlier from the run cache. "
            "From scratch: that execution plus the training of every "
            "network it read from the cache (and, for §6, the two "
            "full-size runs), the time a reader with an empty cache needs "
            "on the same hardware. ci: the chapter under the ci profile, "
            "as make test runs it."))
        return [table(["Chapter", "Profile", "Hardware", "Stored run",
                       "From scratch", "ci", "Date"], rows,
                      [26, 7, 21, 10, 11, 10, 15]), note]


def _chart(counts: dict[str, int]) -> nodes.raw:
    """One horizontal bar per verdict, as inline SVG (no script)."""
    top = max(counts.values()) or 1
    bars = []
    for i, (verdict, n) in enumerate(counts.items()):
        y = 8 + 26 * i
        width = 360 * n / top
        bars.append(
            f'<text x="0" y="{y + 14}" font-size="13">{verdict}</text>'
            f'<rect x="180" y="{y}" width="{width:.0f}" height="18" '
            f'fill="{COLOURS[verdict]}"/>'
            f'<text x="{186 + width:.0f}" y="{y + 14}" font-size="13">'
            f'{n}</text>')
    height = 16 + 26 * len(counts)
    svg = (f'<svg role="img" aria-label="verdict counts" width="600" '
           f'height="{height}" xmlns="http://www.w3.org/2000/svg" '
           f'font-family="sans-serif">{"".join(bars)}</svg>')
    return nodes.raw("", f'<div class="verdict-chart">{svg}</div>',
                     format="html")


def _minutes(seconds: float) -> str:
    return (f"{seconds:,.0f} s" if seconds < 120
            else f"{seconds / 60:,.0f} min")


class ResultsSchemaDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        rows = [[[nodes.literal(text=key)], [nodes.Text(shown)],
                 inline(meaning)]
                for key, (_, shown, meaning) in SCHEMA.items()]
        return [table(["Field", "Type", "Meaning"], rows, [15, 15, 70])]


def setup(app: Sphinx) -> dict:
    app.setup_extension("book_deviations")  # shared re-read bookkeeping
    app.add_directive("scorecard", ScorecardDirective)
    app.add_directive("results-schema", ResultsSchemaDirective)
    app.add_directive("chapter-times", ChapterTimesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
