"""The ``{profiles}`` directive: the run-profile table, from the library.

Renders ``alexnet_lib.config.PROFILES`` (name, what it does, the hardware
it expects, what it changes), so the preface cannot drift from the code.
``alexnet_lib.config`` imports only the standard library, so this costs
the build nothing. Wall times are not listed: each chapter measures its
own and prints it in its first output.
"""
from __future__ import annotations

import importlib
import sys

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from book_deviations import table


def load_profiles(srcdir: str) -> dict:
    """PROFILES from the checkout being built (srcdir is its root)."""
    if srcdir not in sys.path:
        sys.path.insert(0, srcdir)
    return importlib.import_module("alexnet_lib.config").PROFILES


def _changes(overrides: dict) -> str:
    return ", ".join(f"{k.replace('__', '.')}={v}"
                     for k, v in overrides.items()) or "nothing"


class ProfilesDirective(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        profiles = load_profiles(str(self.env.srcdir))
        self.env.note_dependency(str(self.env.srcdir)
                                 + "/alexnet_lib/config.py")
        rows = [[[nodes.literal(text=p.name)], [nodes.Text(p.description)],
                 [nodes.Text(p.hardware)],
                 [nodes.literal(text=_changes(p.overrides))],
                 [nodes.Text("measured per chapter in its first output")]]
                for p in profiles.values()]
        return [table(["Profile", "What a run does", "Hardware it expects",
                       "What it changes", "Wall time"],
                      rows, [8, 25, 15, 32, 20])]


def setup(app: Sphinx) -> dict:
    app.setup_extension("book_deviations")  # for table()
    app.add_directive("profiles", ProfilesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
