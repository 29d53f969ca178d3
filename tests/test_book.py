"""The book builds cleanly and its generated pages say what the sources say.

One strict build (``jupyter-book build -W -n --keep-going``) of the
checkout into a temporary folder, shared by the tests below (~5 s). A
headless-Chromium test renders two pages and checks that MathJax typeset
the math; it is skipped when Chromium or the vendored JavaScript
(``book/vendor/``, from ``book/tools/vendor_js.sh``) is missing.
"""
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))

from book_deviations import scan  # noqa: E402
from book_scorecard import SCHEMA, check_record  # noqa: E402

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
        "# DEVIATION (optional): a note\n")
    found = scan(pkg)
    assert [(d.path, d.line) for d in found] == [
        ("lib/a.py", 2), ("lib/a.py", 5), ("lib/a.py", 7)]
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


# -- rendering in a browser -----------------------------------------------

def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def render(browser: str, page: Path, screenshot: Path) -> str:
    """Screenshot the page into ``screenshot``; return the DOM after JS."""
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run",
              "--virtual-time-budget=5000"]
    with tempfile.TemporaryDirectory() as profile:
        common.append(f"--user-data-dir={profile}")
        subprocess.run(common + ["--window-size=1280,900",
                                 f"--screenshot={screenshot}", page.as_uri()],
                       capture_output=True, timeout=60, check=True)
        dom = subprocess.run(common + ["--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=60,
                             check=True)
    return dom.stdout


@pytest.mark.skipif(chromium() is None, reason=(
    "Chromium is not installed (apt-get install -y chromium); the "
    "rendered-page check needs it"))
@pytest.mark.skipif(not (REPO / "book" / "vendor").is_dir(), reason=(
    "book/vendor/ is missing (bash book/tools/vendor_js.sh): without it "
    "MathJax loads from a CDN this machine may not reach"))
def test_pages_render_with_typeset_math(build):
    html, _ = build
    shots = html / "_screenshots"
    shots.mkdir(exist_ok=True)
    for docname in ["book/intro", "book/deviations", CHAPTER]:
        page = html / f"{docname}.html"
        shot = shots / (docname.replace("/", "_") + ".png")
        dom = render(chromium(), page, shot)
        assert shot.is_file() and shot.stat().st_size > 10_000
        if docname != "book/intro":  # the pages that hold math
            assert "<mjx-container" in dom, f"math not typeset in {page}"
            raw = re.search(r'class="math[^"]*">\s*\\[(\[]', dom)
            assert raw is None, f"raw TeX left in {page}: {raw}"


@pytest.mark.skipif(chromium() is None, reason=(
    "Chromium is not installed (apt-get install -y chromium); the "
    "rendered-widget check needs it"))
@pytest.mark.skipif(not (REPO / "book" / "vendor").is_dir(), reason=(
    "book/vendor/ is missing (bash book/tools/vendor_js.sh): without it "
    "the widget JavaScript loads from a CDN this machine may not reach"))
def test_lrn_explorer_widget_renders(build):
    """The §3.3 notebook's saved widget state becomes live sliders."""
    html, _ = build
    page = html / f"{LRN_CHAPTER}.html"
    source = read(html, LRN_CHAPTER)
    assert "application/vnd.jupyter.widget-state+json" in source, (
        "no widget state embedded: execute the notebook with nbclient's "
        "store_widget_state=True (jupyter execute does by default)")
    shots = html / "_screenshots"
    shots.mkdir(exist_ok=True)
    shot = shots / (LRN_CHAPTER.replace("/", "_") + ".png")
    dom = render(chromium(), page, shot)
    assert shot.is_file() and shot.stat().st_size > 10_000
    # html-manager renders each slider as a div with these classes.
    assert "widget-slider" in dom, f"no rendered ipywidgets slider in {page}"
    assert "<mjx-container" in dom, f"math not typeset in {page}"
