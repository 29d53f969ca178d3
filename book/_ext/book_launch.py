"""A Kaggle entry beside Colab in the launch menu of every notebook page.

sphinx-book-theme 1.3 builds the launch menu (Binder, JupyterHub, Colab,
Deepnote, JupyterLite) but knows no Kaggle. Kaggle opens a public notebook
from its GitHub address::

    https://kaggle.com/kernels/welcome?src=
        https://github.com/<org>/<repo>/blob/<branch>/<path>.ipynb

(one line, no space).
The theme puts the menu into the page context as ``header_buttons`` (a
list of dicts) in its own ``html-page-context`` handler; this one runs
after it, finds the Colab link, rebuilds the notebook's GitHub address
from it and adds a Kaggle link right after it. Pages without a Colab link
(Markdown pages, or no ``launch_buttons: colab_url``) get nothing.
"""
from __future__ import annotations

import re

from sphinx.application import Sphinx

KAGGLE = "https://kaggle.com/kernels/welcome?src="
# The theme's Colab link: <colab_url>/github/<org>/<repo>/blob/<branch>/...
COLAB_PATH = re.compile(
    r"^https?://[^/]+/github/(?P<rest>[^/]+/[^/]+/blob/.+)$")


def kaggle_url(colab_url: str) -> str | None:
    """The Kaggle launch address for the notebook a Colab link opens."""
    match = COLAB_PATH.match(colab_url)
    if match is None:
        return None
    return f"{KAGGLE}https://github.com/{match['rest']}"


def add_kaggle_button(app: Sphinx, pagename: str, templatename: str,
                      context: dict, doctree) -> None:
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        buttons = group["buttons"]
        for i, button in enumerate(buttons):
            url = kaggle_url(button.get("url", "")) if (
                button.get("text") == "Colab") else None
            if url:
                buttons.insert(i + 1, {
                    "type": "link",
                    "text": "Kaggle",
                    "tooltip": "Launch on Kaggle",
                    "icon": "fab fa-kaggle",
                    "url": url,
                })
                return


def setup(app: Sphinx) -> dict:
    # The theme adds its launch buttons at priority 501.
    app.connect("html-page-context", add_kaggle_button, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
