"""The library works as an installed wheel, away from the checkout.

A reader who downloads one chapter and ``pip install``s the library has
no checkout, no ``results/`` and no data folder. This test builds the
wheel from a copy of the project, installs it (not editable) into a new
virtual environment in a temporary folder, and runs two chapters under
the ``ci`` profile there, with a fresh home folder and no ``ALEXNET_*``
variables, so nothing but the installed package and its shipped sample
can be read. The new environment borrows the heavy dependencies (torch,
jupyter) from the running one through a ``.pth`` line; it does not see
the editable install of the checkout (a ``.pth`` file in a borrowed
folder is not executed).
"""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# One chapter that reads data (the shipped sample) and one that does not.
CHAPTERS = ["2_dataset.ipynb", "3_5_overall_architecture.ipynb"]
SKIP = {".git", ".venv", "_build", ".cache", "node_modules", "vendor",
        "runs", "build", "dist", "__pycache__", ".pytest_cache"}


def run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the new venv, its work folder, clean environment)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=lambda d, names: [
        n for n in names if n in SKIP or n.endswith(".egg-info")])
    run([sys.executable, "-m", "pip", "wheel", "--no-deps",
         "--no-build-isolation", "--wheel-dir", str(tmp / "dist"),
         str(src)], timeout=300)
    wheels = list((tmp / "dist").glob("alexnet_lib-*.whl"))
    assert len(wheels) == 1, wheels
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print("
                     "sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "borrowed.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-index", str(wheels[0])], timeout=300)
    work = tmp / "work"
    (work / "home").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALEXNET_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(work / "home"), PYTHONNOUSERSITE="1",
               ALEXNET_PROFILE="ci", PATH=f"{venv / 'bin'}:{env['PATH']}")
    return python, work, env, wheels[0]


def test_wheel_ships_the_sample_and_no_checkout_files(installed):
    import zipfile
    names = zipfile.ZipFile(installed[3]).namelist()
    assert any(n.startswith("alexnet_lib/sample/") for n in names)
    assert not [n for n in names if n.startswith(("tests/", "notebooks/"))]


def test_installed_library_is_the_wheel_not_the_checkout(installed):
    python, work, env, _ = installed
    out = run([str(python), "-c", "import alexnet_lib, sys; "
               "print(alexnet_lib.__file__); print(*sys.path, sep='\\n')"],
              cwd=work, env=env).stdout.splitlines()
    where = Path(out[0]).resolve()
    assert python.parent.parent.resolve() in where.parents
    # Only the borrowed dependencies may come from the checkout's venv.
    borrowed = sysconfig.get_paths()["purelib"]
    assert not [p for p in out[1:] if p and p != borrowed
                and Path(p).resolve().is_relative_to(REPO)]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_from_the_installed_wheel(installed, chapter):
    python, work, env, _ = installed
    shutil.copy(REPO / "notebooks" / chapter, work / chapter)
    shutil.copy(REPO / "tests" / "nbval_sanitize.cfg", work)
    proc = subprocess.run(
        [str(python), "-m", "pytest", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", "nbval_sanitize.cfg", "-p",
         "no:cacheprovider", "-q", "--rootdir", str(work), chapter],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert str(REPO) not in proc.stdout, "the run printed a checkout path"
