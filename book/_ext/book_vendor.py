"""Use the vendored MathJax and widget JavaScript when it is present.

``bash book/tools/vendor_js.sh`` fills the git-ignored folder
``book/vendor/`` (``make book`` runs it once, when npm is there)::

    book/vendor/require.js
    book/vendor/html-manager/embed-amd.js   (+ its icon fonts)
    book/vendor/mathjax/tex-mml-chtml.js    (+ the folders it loads lazily)

When that folder exists, this extension points the build at it, so the
HTML typesets math and renders widgets with no network. When it does not,
nothing changes and the CDN defaults are used. ``_config.yml`` stays
static and ``jupyter-book build`` needs no extra arguments either way.

The folder goes to ``html_static_path`` and is copied into
``_build/html/_static/``. It is deliberately not a source ``_static/``:
jupyter-book 1.x adds every ``.js`` under that to every page.
"""
from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

VENDOR = Path("book") / "vendor"  # relative to the book's source folder
# Relative paths below are relative to _static/ in the HTML output.
MATHJAX = "mathjax/tex-mml-chtml.js"
REQUIRE = "require.js"
EMBED = "html-manager/embed-amd.js"


def use_vendored_js(app: Sphinx, config: Config) -> None:
    vendor = Path(app.srcdir) / VENDOR
    needed = [vendor / MATHJAX, vendor / REQUIRE, vendor / EMBED]
    if not vendor.is_dir():
        logger.info("book_vendor: no book/vendor/, so MathJax and the widget "
                    "JS load from CDNs (math and widgets need internet); "
                    "'bash book/tools/vendor_js.sh' makes a local copy")
        return  # CDN defaults
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        logger.warning(
            "book/vendor/ is incomplete (missing %s); run "
            "'bash book/tools/vendor_js.sh' again or delete book/vendor/ "
            "to use the CDNs", ", ".join(missing))
        return
    config.html_static_path = [*config.html_static_path, str(VENDOR)]
    config.mathjax_path = MATHJAX
    # myst-nb adds these to pages that hold widget outputs, in this order.
    # Widgets outside the bundle would still be fetched from this CDN.
    config.nb_ipywidgets_js = {
        REQUIRE: {},
        EMBED: {"data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"},
    }
    logger.info("book_vendor: using the local MathJax and widget JS "
                "from %s", vendor)


def setup(app: Sphinx) -> dict:
    # Priority < 500 so myst-nb (builder-inited) sees the new values.
    app.connect("config-inited", use_vendored_js, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
