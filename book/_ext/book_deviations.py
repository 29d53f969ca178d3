"""The ``{deviations}`` directive: a table of every ``# DEVIATION:`` marker.

The library marks each intentional departure from the paper with a
comment that starts ``# DEVIATION:`` (or ``# DEVIATION (note):``); comment
lines straight after it continue the text::

    # DEVIATION: the paper drops the rate by hand; we automate it
    # with a patience in epochs.
    plateau_patience: int = 2

A marker says what kind of departure it is: ``# DEVIATION:`` is one of
method (it can change what an experiment measures),
``# DEVIATION (data):`` one of the data a run reads, and
``# DEVIATION (engineering):`` a choice of how the computation is done
(number formats, decoders, storage) that leaves the method alone; any
other note in parentheses stays in the text of a method row.

The directive scans ``alexnet_lib/**/*.py`` (or the folder given as its
argument, relative to the book's source folder) at build time and renders
one table per kind, one row per marker: file and line, the text, and the
first line of code it annotates. The page is re-read on every build, so
the list cannot drift from the source.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

# "# DEVIATION: text", also "# DEVIATION (optional): text"
MARKER = re.compile(r"#\s*DEVIATION\b\s*(?P<note>\([^)]*\))?\s*:\s*"
                    r"(?P<text>.*)$")
COMMENT = re.compile(r"^\s*#\s?(?P<text>.*)$")
CODE = re.compile(r"`([^`]+)`")  # `name` in a comment -> literal


KINDS = {  # note -> (kind, heading of its table)
    None: ("method", "Deviations of method"),
    "data": ("data", "Deviations of data"),
    "engineering": ("engineering", "Engineering choices"),
}


@dataclass(frozen=True)
class Deviation:
    path: str  # relative to the scanned folder's parent, posix
    line: int  # 1-based line of the marker
    text: str  # the marker's text, continuation lines joined
    code: str  # first code line after the comment ("" if none)
    kind: str = "method"  # "method", "data" or "engineering"


def scan(folder: Path) -> list[Deviation]:
    """Every ``# DEVIATION:`` marker under ``folder``, in file order."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        rel = path.relative_to(folder.parent).as_posix()
        for i, line in enumerate(lines):
            match = MARKER.search(line)
            if not match:
                continue
            note = (match["note"] or "").strip("()").strip()
            kind = KINDS.get(note, KINDS[None])[0] if note else "method"
            shown = "" if note in KINDS else (match["note"] or "")
            text = [f"{shown} {match['text']}".strip()]
            j = i + 1
            # A marker on its own line may continue on the next comment
            # lines; one after code (x = 1  # DEVIATION: ...) may not.
            own_line = line.lstrip().startswith("#")
            while own_line and j < len(lines):
                more = COMMENT.match(lines[j])
                if not more or MARKER.search(lines[j]):
                    break
                if more["text"].strip():
                    text.append(more["text"].strip())
                j += 1
            if own_line:
                code = next((c.strip() for c in lines[j:] if c.strip()
                             and not c.lstrip().startswith("#")), "")
            else:
                code = line[:match.start()].strip()
            found.append(Deviation(rel, i + 1, " ".join(text), code,
                                   kind))
    return found


def inline(text: str) -> list[nodes.Node]:
    """Plain text with `backticked` names as literals."""
    parts = CODE.split(text)
    return [nodes.literal(p, p) if k % 2 else nodes.Text(p)
            for k, p in enumerate(parts) if p]


def table(headers: list[str], rows: list[list[list[nodes.Node]]],
           widths: list[int]) -> nodes.table:
    table = nodes.table(classes=["deviations-table", "wide-table"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    group.extend(nodes.colspec(colwidth=w) for w in widths)
    head = nodes.thead()
    group += head
    row = nodes.row()
    row.extend(nodes.entry("", nodes.paragraph(text=h)) for h in headers)
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for content in cells:
            row += nodes.entry("", nodes.paragraph("", "", *content))
        body += row
    return table


class DeviationsDirective(SphinxDirective):
    optional_arguments = 1  # folder to scan, default alexnet_lib

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0] if self.arguments else "alexnet_lib"
        folder = Path(self.env.srcdir) / name
        if not folder.is_dir():
            raise self.error(f"deviations: no folder {folder}; give the "
                             "library's folder relative to the book root")
        found = scan(folder)
        for path in folder.rglob("*.py"):
            self.env.note_dependency(str(path))
        mark_generated(self.env)
        summary = nodes.paragraph(
            text=f"{len(found)} marker{'' if len(found) == 1 else 's'} in "
                 f"{name}/, found when this page "
                 "was built.")
        if not found:
            return [summary]
        out: list[nodes.Node] = [summary]
        for kind, heading in KINDS.values():
            rows = [[[nodes.literal(f"{d.path}:{d.line}",
                                    f"{d.path}:{d.line}")],
                     inline(d.text),
                     [nodes.literal(d.code, d.code)] if d.code else []]
                    for d in found if d.kind == kind]
            if rows:
                out += [nodes.rubric(text=f"{heading} ({len(rows)})"),
                        table(["Where", "Deviation", "Code it annotates"],
                              rows, [25, 50, 25])]
        return out


# Pages whose content comes from files Sphinx does not track (new .py
# files, results/*.json) are re-read on every build.
def mark_generated(env) -> None:
    if not hasattr(env, "generated_docs"):
        env.generated_docs = set()
    env.generated_docs.add(env.docname)


def _always_reread(app, env, added, changed, removed) -> list[str]:
    return sorted(getattr(env, "generated_docs", set()) - set(removed))


def _forget(app, env, docname) -> None:
    getattr(env, "generated_docs", set()).discard(docname)


def _merge(app, env, docnames, other) -> None:
    if not hasattr(env, "generated_docs"):
        env.generated_docs = set()
    env.generated_docs |= getattr(other, "generated_docs", set())


def setup(app: Sphinx) -> dict:
    app.add_directive("deviations", DeviationsDirective)
    app.connect("env-get-outdated", _always_reread)
    app.connect("env-purge-doc", _forget)
    app.connect("env-merge-info", _merge)
    return {"parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 1}
