"""The book builds cleanly and every page renders right in a browser.

One strict build (``jupyter-book build -W -n --keep-going``) of the
checkout into a temporary folder, shared by the tests below (~10 s).
Headless Chromium then opens every page of ``_toc.yml`` (~1 min, two at a
time) and the DOM it dumps after the page's JavaScript ran is checked
against the page's source: math typeset, no Markdown table left as raw
pipes, one picture per image output, every saved widget drawn, nothing
cut off at 1280 px. A full-page screenshot of each page goes to
``_build/screenshots/`` for a person to look at. The browser tests skip
when Chromium or the vendored JavaScript (``book/vendor/``, from
``make book``) is missing.
"""
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))

from book_deviations import scan  # noqa: E402
from book_launch import kaggle_url  # noqa: E402
from book_scorecard import SCHEMA, check_record  # noqa: E402

sys.path.insert(0, str(REPO / "book" / "tools"))
import print_pdf  # noqa: E402

CHAPTER = "notebooks/3_5_overall_architecture"
LRN_CHAPTER = "notebooks/3_3_local_response_normalization"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter_book() -> str:
    beside = Path(sys.executable).parent / "jupyter-book"
    found = str(beside) if beside.is_file() else shutil.which("jupyter-book")
    if not found:
        pytest.fail("jupyter-book not found: pip install -e '.[book]'")
    return found


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """(html folder, build log) of one strict build of the checkout."""
    out = tmp_path_factory.mktemp("book")
    proc = subprocess.run(
        [jupyter_book(), "build", str(REPO), "-W", "-n", "--keep-going",
         "--path-output", str(out)],
        capture_output=True, text=True, timeout=300)
    log = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"book build failed:\n{log[-4000:]}"
    return out / "_build" / "html", log


def read(html: Path, docname: str) -> str:
    path = html / f"{docname}.html"
    assert path.is_file(), f"{path} was not built"
    return path.read_text(encoding="utf-8")


def test_build_has_no_warnings(build):
    _, log = build
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, "\n".join(warnings)


def test_index_redirects_to_the_intro(build):
    html, _ = build
    index = (html / "index.html").read_text(encoding="utf-8")
    assert "book/intro.html" in index
    assert "AlexNet, reproduced" in read(html, "book/intro")


def test_architecture_chapter_has_the_count_and_a_figure(build):
    page = read(build[0], CHAPTER)
    assert "60,965,224" in page
    assert "<img" in page
    assert "data:image/png" in page or ".png" in page


def test_deviation_table_lists_every_marker_in_the_source(build):
    markers = [(p.relative_to(REPO).as_posix(), i + 1)
               for p in sorted((REPO / "alexnet_lib").rglob("*.py"))
               for i, line in enumerate(p.read_text().splitlines())
               if re.search(r"#\s*DEVIATION\b", line)]
    page = read(build[0], "book/deviations")
    assert f"{len(markers)} marker" in page
    for path, line in markers:
        assert f"{path}:{line}" in page


def test_paper_map_names_only_modules_that_exist():
    text = (REPO / "book" / "paper_map.md").read_text(encoding="utf-8")
    modules = set(re.findall(r"`(alexnet_lib(?:\.\w+)+)`", text))
    assert len(modules) > 10
    for module in sorted(modules):
        path = REPO / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (
            path / "__init__.py").is_file(), f"paper map names {module}"


def test_scorecard_lists_every_result(build):
    page = read(build[0], "book/scorecard")
    records = sorted((REPO / "results").glob("*.json"))
    if not records:
        assert "No results yet" in page
        return
    # Sphinx turns straight quotes into curly ones ("smart quotes").
    text = html.unescape(page).translate(str.maketrans("‘’“”", "''\"\""))
    assert f"{len(records)} record" in text
    for path in records:
        record = json.loads(path.read_text())
        assert record["claim"].split("(")[0].strip() in text, path
        assert (f"{record['ours']:,}" if isinstance(record["ours"], int)
                else str(record["ours"])) in text, path


def test_preface_shows_what_two_cores_can_do(build):
    # the {cpu-speed} table: one row per model of the roofline record,
    # rendered as an HTML table with the record's numbers
    from book_speed import speed_rows, summary
    record = json.loads((REPO / "results" / "benchmarks" /
                         "roofline_cpu.json").read_text())
    page = html.unescape(read(build[0], "book/preface"))
    section = page[page.index('id="what-two-cpu-cores-can-do"'):]
    table = section[section.index("<table"):section.index("</table>")]
    assert "Share of peak" in table
    rows = speed_rows(record)
    assert len(rows) == len(record["models"]) >= 4
    assert table.count("<tr") == len(rows) + 1  # and the header
    for row in rows:
        assert f"<td><p>{row[3]}</p></td>" in table  # images/s
    assert summary(record).split(":")[0] in section
    unfused = json.loads((REPO / "results" / "benchmarks" /
                          "roofline_cpu_unfused.json").read_text())
    text = summary(record, unfused)  # the whole paragraph, as rendered
    assert "fused with the max-pooling" in text and "threads of its own" \
        in text
    rendered = re.sub(r"<[^>]+>", "", section).replace("\u2019", "'")
    assert " ".join(text.split()) in " ".join(rendered.split())


def test_preface_shows_where_a_proxy_step_goes(build):
    # the {proxy-profile} table: one row per row of the profile record,
    # each dtype's milliseconds and shares rendered from it
    from book_speed import profile_rows, profile_summary
    record = json.loads((REPO / "results" / "benchmarks" /
                         "proxy_profile_alexnet_cifar.json").read_text())
    page = html.unescape(read(build[0], "book/preface"))
    section = page[page.index('id="what-two-cpu-cores-can-do"'):]
    section = section[section.index("Where the time goes"):]
    table = section[:section.index("</table>")]
    rows = profile_rows(record)
    first = next(iter(record["runs"].values()))
    assert len(rows) == len(first["ms_per_step"]) + 1 >= 15
    assert table.count("<tr") == len(rows)  # the header row was cut off
    for row in rows:
        assert f"<td><p>{row[0]}</p></td>" in table
        assert f"<td><p>{row[1]}</p></td>" in table
    text = " ".join(profile_summary(record).split())
    assert "Convolution takes" in text
    rendered = re.sub(r"<[^>]+>", "", page).replace("\u2019", "'")
    assert text in " ".join(rendered.split())


def test_math_uses_local_mathjax_when_vendored(build):
    html, _ = build
    page = read(html, "book/deviations")
    if (REPO / "book" / "vendor").is_dir():
        assert (html / "_static/mathjax/tex-mml-chtml.js").is_file()
        assert "_static/mathjax/tex-mml-chtml.js" in page
        assert "cdn.jsdelivr.net/npm/mathjax" not in page
    else:
        assert "mathjax" in page and "https://" in page


# -- the extensions on their own ------------------------------------------

def test_scan_joins_continuation_lines_and_finds_the_code(tmp_path):
    pkg = tmp_path / "lib"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "x = 1\n"
        "    # DEVIATION: first line\n"
        "    # and the second.\n"
        "    y: int = 2  # §5\n"
        "z = 3  # DEVIATION: inline, `z` is new\n"
        "# a comment that is not a marker, nor are DEVIATIONS: here\n"
        "# DEVIATION (optional): a note\n"
        "# DEVIATION (data): a copy\n"
        "# DEVIATION (engineering): bf16\n")
    found = scan(pkg)
    assert [(d.path, d.line) for d in found] == [
        ("lib/a.py", 2), ("lib/a.py", 5), ("lib/a.py", 7),
        ("lib/a.py", 8), ("lib/a.py", 9)]
    assert [d.kind for d in found] == ["method"] * 3 + ["data",
                                                        "engineering"]
    assert (found[3].text, found[4].text) == ("a copy", "bf16")
    assert found[0].text == "first line and the second."
    assert found[0].code == "y: int = 2  # §5"
    assert found[1].text == "inline, `z` is new"
    assert found[1].code == "z = 3"
    assert found[2].text == "(optional) a note"


def test_check_record_names_missing_and_mistyped_fields():
    good = {key: "x" for key in SCHEMA}
    good.update(paper=60_000_000, ours=60_965_224, wall_time_s=1.5,
                commit=None, details={})
    assert check_record(good) == []
    bad = dict(good, wall_time_s="fast")
    del bad["claim"]
    problems = check_record(bad)
    assert "has no field 'claim' (str)" in problems
    assert "field 'wall_time_s' should be number, got str" in problems
    assert check_record([1, 2]) == ["is not a JSON object"]


def test_kaggle_url_opens_the_notebook_colab_opens():
    colab = ("https://colab.research.google.com/github/org/repo/blob/main/"
             "notebooks/3_1_relu.ipynb")
    assert kaggle_url(colab) == (
        "https://kaggle.com/kernels/welcome?src=https://github.com/org/repo/"
        "blob/main/notebooks/3_1_relu.ipynb")
    assert kaggle_url("https://example.org/not/a/colab/link") is None


# -- what each page should show, from its source ----------------------------

PIPE_ROW = re.compile(r"^\s*\|[^\n]*\|[^\n]*\|\s*$", re.M)
# myst-nb's order for HTML (first present wins), as set in _config.yml.
MIME_ORDER = ["application/vnd.jupyter.widget-view+json",
              "application/javascript", "text/html", "image/svg+xml",
              "image/png", "image/gif", "image/jpeg", "text/markdown",
              "text/latex", "text/plain"]


def toc_pages() -> list[str]:
    """Every page of the book, in the order of _toc.yml."""
    return print_pdf.toc_docnames(REPO / "_toc.yml")


def shown_mime(output: dict) -> str | None:
    data = output.get("data", {})
    return next((m for m in MIME_ORDER if m in data), None)


def notebook_outputs(docname: str) -> dict[str, int]:
    """How many figures, widgets and Markdown tables the notebook shows."""
    path = REPO / f"{docname}.ipynb"
    counts = {"images": 0, "widgets": 0, "tables": 0}
    if not path.is_file():
        return counts
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            mime = shown_mime(output)
            if mime is None:
                continue
            if mime.startswith("image/"):
                counts["images"] += 1
            elif mime == MIME_ORDER[0]:
                counts["widgets"] += 1
            elif mime == "text/markdown" and PIPE_ROW.search(
                    "".join(output["data"][mime])):
                counts["tables"] += 1
    return counts


class Page(HTMLParser):
    """Facts about a page's HTML (as built, or as dumped after its JS ran).

    ``paragraphs``: text of each <p> outside code; ``text``: visible text
    outside code, scripts and typeset math; ``raw_math``: elements of class
    ``math`` with no MathJax output inside; ``count``: start tags by key
    ("mjx-container", "output table", "output img", "widget")."""

    SKIP = {"pre", "code", "script", "style", "textarea", "mjx-container"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input",
            "link", "meta", "source", "track", "wbr"}

    def __init__(self, html_text: str):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, set[str]]] = []
        self.paragraphs: list[str] = []
        self.text: list[str] = []
        self.raw_math: list[str] = []
        self.count: dict[str, int] = {}
        self._math: list[list] = []  # [typeset?, text] per open .math
        self.feed(html_text)
        self.close()

    def _inside(self, test) -> bool:
        return any(test(tag, classes) for tag, classes in self.stack)

    def _add(self, key: str) -> None:
        self.count[key] = self.count.get(key, 0) + 1

    def handle_starttag(self, tag, attrs):
        classes = set((dict(attrs).get("class") or "").split())
        in_output = self._inside(lambda t, c: "cell_output" in c)
        if tag == "mjx-container":
            self._add("mjx-container")
            for record in self._math:
                record[0] = True
        if in_output and tag in ("table", "img"):
            self._add(f"output {tag}")
        if "widget-subarea" in classes:
            self._add("widget")
        if tag in self.VOID:
            return
        if "math" in classes:
            self._math.append([False, ""])
        if tag == "p":
            self.paragraphs.append("")
        self.stack.append((tag, classes))

    def handle_endtag(self, tag):
        # '<img ... />' arrives as a start and an end tag; a void tag was
        # never pushed, so its end must not unwind the open elements.
        if tag in self.VOID or all(t != tag for t, _ in self.stack):
            return
        while self.stack:
            top, classes = self.stack.pop()
            if "math" in classes and self._math:
                typeset, text = self._math.pop()
                if not typeset:
                    self.raw_math.append(text.strip()[:60])
            if top == tag:
                break

    def handle_data(self, data):
        for record in self._math:
            record[1] += data
        if self._inside(lambda t, c: t in self.SKIP):
            return
        self.text.append(data)
        if self._inside(lambda t, c: t == "p"):
            self.paragraphs[-1] += data


def test_markdown_outputs_render_as_tables(build):
    """text/markdown outputs go through MyST, which knows pipe tables."""
    html_dir, _ = build
    total = 0
    for docname in toc_pages():
        expected = notebook_outputs(docname)["tables"]
        total += expected
        page = Page(read(html_dir, docname))
        assert page.count.get("output table", 0) >= expected, docname
        raw = [p for p in page.paragraphs if PIPE_ROW.search(p)]
        assert not raw, f"raw pipe table in {docname}: {raw[0][:80]!r}"
    assert total > 0, "no notebook prints a Markdown table any more"


def test_markdown_output_settings_make_tables_in_a_tiny_book(tmp_path):
    """The _config.yml settings alone turn a text/markdown output (as
    alexnet_lib.notebook.show_table displays it) into a table, whatever
    the chapters print today."""
    ours = yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]
    keys = ["nb_render_markdown_format", "nb_mime_priority_overrides"]
    table = "| a | b |\n|---|---|\n| 1 | `2` |\n\nA note under it."
    cell = {"cell_type": "code", "execution_count": 1, "id": "c1",
            "metadata": {}, "source": "show_table(...)", "outputs": [{
                "output_type": "display_data", "metadata": {},
                "data": {"text/markdown": table, "text/plain": table}}]}
    (tmp_path / "page.ipynb").write_text(json.dumps({
        "cells": [{"cell_type": "markdown", "id": "m1", "metadata": {},
                   "source": "# Page"}, cell],
        "metadata": {"kernelspec": {"name": "python3",
                                    "display_name": "Python 3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({
        "title": "t", "execute": {"execute_notebooks": "off"},
        "sphinx": {"config": {k: ours["config"][k] for k in keys}}}))
    proc = subprocess.run([jupyter_book(), "build", str(tmp_path), "-W"],
                          capture_output=True, text=True, timeout=300)
    log = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, log[-2000:]
    page = Page((tmp_path / "_build/html/page.html").read_text())
    assert page.count.get("output table") == 1
    assert not [p for p in page.paragraphs if PIPE_ROW.search(p)]
    assert "A note under it." in "".join(page.text)


def test_notebook_pages_have_a_kaggle_launch_link(build):
    html_dir, _ = build
    page = read(html_dir, LRN_CHAPTER)
    assert ("https://kaggle.com/kernels/welcome?src=https://github.com/"
            in page)
    assert f"/blob/main/{LRN_CHAPTER}.ipynb" in page


# -- every page in a browser -------------------------------------------------

# Injected into a copy of each page: once MathJax has typeset, it measures
# the layout at 1280 px and leaves the result on <html data-probe="...">,
# where the DOM dump carries it out.
PROBE = """<script>
(function () {
  function measure() {
    var d = document.documentElement;
    var box = document.querySelector('article.bd-article') || document.body;
    var right = box.getBoundingClientRect().right;
    var cut = [];
    box.querySelectorAll('table, pre, img').forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (r.width === 0 || r.right <= right + 1) return;
      for (var a = el.parentElement; a && a !== box.parentElement;
           a = a.parentElement) {
        var ox = getComputedStyle(a).overflowX;
        if ((ox === 'auto' || ox === 'scroll')
            && a.getBoundingClientRect().right <= right + 1) return;
      }
      cut.push(el.tagName.toLowerCase() + ': '
               + (el.textContent || el.src || '').trim().slice(0, 60));
    });
    var broken = Array.prototype.filter.call(document.images, function (i) {
      return !(i.complete && i.naturalWidth > 0);
    }).map(function (i) { return i.src.slice(-60); });
    d.setAttribute('data-probe', JSON.stringify({
      page_width: d.scrollWidth, view_width: d.clientWidth,
      height: Math.max(d.scrollHeight, document.body.scrollHeight),
      cut: cut, broken_images: broken}));
  }
  window.addEventListener('load', function () {
    var typeset = (window.MathJax && MathJax.startup
                   && MathJax.startup.promise) || Promise.resolve();
    typeset.then(function () { setTimeout(measure, 1000); });
  });
})();
</script>"""
WIDTH = 1280
MAX_SHOT_HEIGHT = 16_000  # Chromium draws nothing below ~16k px
SCREENSHOTS = REPO / "_build" / "screenshots"


chromium = print_pdf.chromium


def run_chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--virtual-time-budget=6000",
             *args], capture_output=True, text=True, timeout=120)


def render(browser: str, page: Path, shot: Path) -> tuple[str, dict]:
    """(DOM after the page's JS ran, layout probe); screenshot to ``shot``."""
    probe = page.with_name(f"_probe_{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace(
        "</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = run_chromium(browser, f"--window-size={WIDTH},900",
                           "--dump-dom", probe.as_uri()).stdout
    finally:
        probe.unlink()
    found = re.search(r'data-probe="([^"]*)"', dom)
    layout = json.loads(html.unescape(found[1])) if found else {}
    height = min(layout.get("height", 900), MAX_SHOT_HEIGHT)
    run_chromium(browser, f"--window-size={WIDTH},{height}",
                 f"--screenshot={shot}", page.as_uri())
    return dom, layout


@pytest.fixture(scope="module")
def rendered(build):
    """docname -> (static HTML, DOM after JS, layout probe, screenshot)."""
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    if not (REPO / "book" / "vendor").is_dir():
        pytest.skip("no book/vendor/ (make book, or bash "
                    "book/tools/vendor_js.sh): math and widgets need a CDN")
    html_dir, _ = build
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def one(docname: str):
        shot = SCREENSHOTS / (docname.replace("/", "_") + ".png")
        shot.unlink(missing_ok=True)
        page = html_dir / f"{docname}.html"
        return (docname, (page.read_text(encoding="utf-8"),
                          *render(browser, page, shot), shot))

    # Two Chromiums at a time: ~1 min for the whole book on 2 cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, toc_pages()))


@pytest.mark.parametrize("docname", toc_pages())
def test_page_renders_in_a_browser(rendered, docname):
    static, dom, layout, shot = rendered[docname]
    before, after = Page(static), Page(dom)
    expected = notebook_outputs(docname)

    assert shot.is_file() and shot.stat().st_size > 10_000, (
        f"no screenshot of {docname}")
    assert layout, f"the layout probe did not run on {docname}"
    # Math: every math element typeset, no TeX left in the text.
    n_math = before.count.get("mjx-container", 0) + len(before.raw_math)
    assert after.count.get("mjx-container", 0) >= n_math, docname
    assert not after.raw_math, f"untypeset math in {docname}: " \
                               f"{after.raw_math[:3]}"
    text = "".join(after.text)
    for tex in ("\\(", "\\["):
        assert tex not in text, (
            f"raw TeX in {docname}: ...{text[text.find(tex):][:60]}")
    # Tables: no Markdown table left as a paragraph of pipes.
    raw = [p for p in after.paragraphs if PIPE_ROW.search(p)]
    assert not raw, f"raw pipe table in {docname}: {raw[0][:80]!r}"
    assert after.count.get("output table", 0) >= expected["tables"]
    # Figures: one <img> per image output, and every image decoded.
    assert after.count.get("output img", 0) >= expected["images"], docname
    assert not layout["broken_images"], layout["broken_images"]
    # Widgets: each saved widget view drawn by the HTML manager.
    assert after.count.get("widget", 0) >= expected["widgets"], docname
    assert "Error displaying widget" not in text, docname
    # Nothing wider than the page at 1280 px except inside a scroll box.
    assert layout["page_width"] <= layout["view_width"], (
        f"{docname} scrolls sideways at {WIDTH} px: {layout['page_width']}")
    assert not layout["cut"], f"cut off at {WIDTH} px in {docname}: " \
                              f"{layout['cut'][:3]}"


def test_every_page_was_looked_at(rendered):
    assert sorted(rendered) == sorted(toc_pages())
    assert {p.name for p in SCREENSHOTS.glob("*.png")} >= {
        d.replace("/", "_") + ".png" for d in toc_pages()}


# The PDF: book/tools/print_pdf.py joins the pages and Chromium prints.


def _fake_page(title: str, script: str = "") -> str:
    return (f"<html><head><title>{title}</title>"
            f'<link rel="stylesheet" href="../_static/x.css">{script}</head>'
            f'<body><nav>menu</nav><article class="bd-article">'
            f"<h1>{title}</h1></article><footer>f</footer></body></html>")


def test_print_page_joins_the_articles_in_toc_order(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "notebooks").mkdir()
    toggle = '<script src="../_static/togglebutton.js?v=1"></script>'
    (tmp_path / "book" / "intro.html").write_text(_fake_page("Intro",
                                                             toggle))
    (tmp_path / "notebooks" / "a.html").write_text(_fake_page("A"))
    page = print_pdf.print_page(tmp_path, ["book/intro", "notebooks/a"])
    assert page.index("<h1>Intro</h1>") < page.index("<h1>A</h1>")
    assert page.count('class="print-chapter"') == 2
    assert "menu" not in page and "togglebutton" not in page
    assert '<link rel="stylesheet" href="../_static/x.css">' in page
    assert print_pdf.toc_docnames(REPO / "_toc.yml")[:2] == [
        "book/intro", "book/preface"]


def test_print_pdf_without_a_build_is_one_line_and_exit_2(tmp_path,
                                                          capsys):
    assert print_pdf.main(["--html", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("print_pdf: ") and "make book" in err
    assert err.count("\n") == 1


def test_pdf_of_the_whole_book(build, tmp_path):
    if chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    html_dir, _ = build
    out = tmp_path / "book.pdf"
    assert print_pdf.main(["--html", str(html_dir), "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    # 25 pages of the book, several PDF pages each
    assert print_pdf.pdf_pages(data) > 5 * len(print_pdf.toc_docnames(
        REPO / "_toc.yml"))
    assert not (html_dir / print_pdf.PRINT_PAGE).exists()


def test_chapter_time_from_scratch_adds_networks_read_from_the_cache():
    from book_scorecard import chapter_seconds
    run = {"seed": 0, "seconds": 300.0, "cached": True}
    fresh = {"seed": 1, "seconds": 200.0}
    records = [
        {"experiment": "a", "wall_time_s": 20.0,
         "details": {"runs": {"x": [run, fresh]}}},
        # the same cached run in a second record counts once
        {"experiment": "b", "wall_time_s": 30.0,
         "details": {"runs": {"y": [dict(run)]}}},
        {"experiment": "full_size_imagenette_seed0", "wall_time_s": 3600.0,
         "details": {}}]
    assert chapter_seconds(records) == (30.0, 30.0 + 300.0 + 3600.0)
    assert chapter_seconds(records[:1]) == (20.0, 320.0)
    from book_scorecard import _reading_order
    assert sorted(["10_after_alexnet", "6_1_qualitative", "6_results",
                   "2_dataset"], key=_reading_order) == [
        "2_dataset", "6_results", "6_1_qualitative", "10_after_alexnet"]
