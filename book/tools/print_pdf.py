"""The book as one PDF, printed by headless Chromium from the HTML build.

    python book/tools/print_pdf.py [--html _build/html] [--out PDF]

Jupyter Book's own single-page and LaTeX builders do not handle this
book's notebook pages, so this joins the article of every page of the
table of contents, in order, into one HTML page beside them (same
folder depth, so images and styles resolve), with the pages' styles and
MathJax, every solution shown (the dropdown script is left out) and a
page break before each chapter; then Chromium prints that page. `make
pdf` runs it after `make book`; for the student edition pass
``--html _build/student/_build/html``. Exit status 0, or 2 with one
line when the HTML build or Chromium is missing.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRINT_PAGE = "book/_print.html"  # depth 1, like every page of the book
# Scripts not wanted in print: interactivity, search, the dropdowns.
SKIP_SCRIPTS = ("togglebutton", "sphinx-thebe", "searchtools",
                "searchindex", "language_data", "clipboard", "copybutton",
                "design-tabs")
PRINT_CSS = """<style>
@page { size: A4; margin: 16mm 14mm; }
.print-chapter { break-before: page; }
.print-chapter:first-child { break-before: auto; }
.headerlink, .toggle-button, .copybtn, .dropdown-toggle { display: none !important; }
pre, img, table, figure { break-inside: avoid; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; overflow: visible !important; }
.cell_output, .output, div.highlight { overflow: visible !important; }
.bd-article-container { max-width: none; }
body { background: white; }
</style>
"""


def toc_docnames(toc: Path) -> list[str]:
    """The root and every chapter of _toc.yml, in reading order."""
    import yaml
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    names = [data["root"]]
    for part in data.get("parts", []):
        names += [c["file"] for c in part.get("chapters", [])]
    return [n[:-len(Path(n).suffix)] if Path(n).suffix else n for n in names]


def article(page: str) -> str:
    """The inner HTML of the page's one <article class="bd-article">."""
    start = page.find('<article class="bd-article"')
    if start < 0:
        raise ValueError("no <article class=\"bd-article\"> in the page")
    body = page.index(">", start) + 1
    end = page.index("</article>", body)
    return page[body:end]


def head(page: str) -> str:
    """The page's <head> without the scripts not wanted in print."""
    inner = page[page.index("<head>") + 6:page.index("</head>")]
    out = []
    for piece in re.split(r"(?=<script)", inner):
        if piece.startswith("<script") and any(
                s in piece[:piece.find(">") + 1] for s in SKIP_SCRIPTS):
            piece = piece[piece.index("</script>") + len("</script>"):]
        out.append(piece)
    return "".join(out)


def print_page(html: Path, docnames: list[str]) -> str:
    """One HTML page holding every article of ``docnames`` in order."""
    pages = {d: (html / f"{d}.html").read_text(encoding="utf-8")
             for d in docnames}
    parts = [f'<section class="print-chapter" data-doc="{d}">'
             f"{article(pages[d])}</section>" for d in docnames]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head>"
            + head(pages[docnames[0]]) + PRINT_CSS + "</head>\n"
            '<body><main class="bd-main"><div class="bd-content">'
            '<div class="bd-article-container">'
            + "\n".join(parts) + "</div></div></main></body></html>\n")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def pdf_pages(pdf: bytes) -> int:
    """Number of pages of a PDF Chromium wrote (its page objects)."""
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    p.add_argument("--out", type=Path, default=None,
                   help="default: alexnet-book.pdf in the HTML folder")
    p.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    args = p.parse_args(argv)
    docnames = toc_docnames(args.toc)
    missing = [d for d in docnames if not (args.html / f"{d}.html").is_file()]
    if missing:
        print(f"print_pdf: {args.html} has no {missing[0]}.html; build the "
              f"book first (make book)", file=sys.stderr)
        return 2
    browser = chromium()
    if browser is None:
        print("print_pdf: Chromium not found; install it (apt-get install "
              "chromium) to print the PDF", file=sys.stderr)
        return 2
    page = args.html / PRINT_PAGE
    page.write_text(print_page(args.html, docnames), encoding="utf-8")
    out = (args.out or args.html / "alexnet-book.pdf").resolve()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--no-first-run",
             f"--user-data-dir={profile}", "--virtual-time-budget=30000",
             "--run-all-compositor-stages-before-draw",
             "--no-pdf-header-footer", f"--print-to-pdf={out}",
             page.as_uri()], capture_output=True, text=True, timeout=900)
    page.unlink()
    if proc.returncode != 0 or not out.is_file():
        print(f"print_pdf: Chromium failed ({proc.returncode}): "
              f"{proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return 2
    n = pdf_pages(out.read_bytes())
    print(f"{out}: {n} pages, {out.stat().st_size / 1e6:.1f} MB, "
          f"{len(docnames)} pages of the book")
    return 0


if __name__ == "__main__":
    sys.exit(main())
