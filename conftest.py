"""Shared test set-up: which data the tests read, and the writable caches.

Without $ALEXNET_DATA the tests read the small real sample shipped in the
package (alexnet_lib/sample), so ``make test`` needs nothing outside the
checkout. With it, the same tests read the full data sets there, and the
tests marked ``full_data`` (exact counts of the full sets, comparisons
with the sources of the sample) run too; without it they are skipped:

    ALEXNET_DATA=/path/to/data pytest -m full_data tests
"""
import os
import re
from pathlib import Path

import pytest

from alexnet_lib.config import DATA_ENV
from alexnet_lib.data.locate import SAMPLE_ROOT, find_dataset

REPO = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Decoded tensors and mean images are derived files: keep them in the
# checkout (git-ignored) so repeated test runs reuse them.
os.environ.setdefault("ALEXNET_CACHE", str(REPO / ".cache"))
# Notebooks run by nbval take the smallest profile unless told otherwise.
os.environ.setdefault("ALEXNET_PROFILE", "ci")

NO_FULL_DATA = (f"needs the full data sets: set {DATA_ENV} to the folder "
                f"that holds them (README, Data)")


# What alexnet_lib.notebook raises in the cells after a chapter stopped.
STOPPED = re.compile(r"ChapterStopped: (not run: [^\n]*)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """nbval runs every cell even after the first one failed; a cell that
    only says "not run" because the chapter stopped on missing data is
    reported as skipped, so the missing data fails once."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        found = STOPPED.search(ANSI.sub("", str(report.longrepr)))
        if found:
            report.outcome = "skipped"
            report.longrepr = (str(item.path), 0,
                               f"Skipped: {found.group(1)}")


def pytest_runtest_setup(item):
    if item.get_closest_marker("full_data") and not os.environ.get(DATA_ENV):
        pytest.skip(NO_FULL_DATA)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """$ALEXNET_DATA when set, else the shipped sample (same layout)."""
    env = os.environ.get(DATA_ENV)
    if not env:
        return SAMPLE_ROOT
    root = Path(env).expanduser()
    if not root.is_dir():
        pytest.fail(f"{DATA_ENV}={env} is not a folder: unset it to test "
                    f"on the shipped sample, or point it at the data")
    return root


@pytest.fixture(scope="session")
def full_data_dir(data_dir: Path) -> Path:
    """The full data sets (tests marked full_data)."""
    if not os.environ.get(DATA_ENV):
        pytest.skip(NO_FULL_DATA)
    return data_dir


@pytest.fixture(scope="session")
def cifar_dir(data_dir: Path) -> Path:
    """CIFAR-10 in data_dir: the image folder, or the sample's .npz."""
    return find_dataset("cifar10", path=data_dir, profile="ci",
                        download=False)


@pytest.fixture(scope="session")
def imagenette_dir(data_dir: Path) -> Path:
    return find_dataset("imagenette", path=data_dir, profile="ci",
                        download=False)


@pytest.fixture(scope="session")
def run_loaders():
    """build_loaders called with what a run passes it from its config."""
    from alexnet_lib.data import build_loaders

    def loaders(cfg, *args, **kwargs):
        return build_loaders(cfg.data, cfg.optim.batch_size, cfg.seed,
                             cfg.profile, *args, **kwargs)
    return loaders


@pytest.fixture(scope="session")
def run_ten_loader():
    """build_ten_crop_loader called as a run calls it."""
    from alexnet_lib.data import build_ten_crop_loader
    return lambda cfg: build_ten_crop_loader(cfg.data, cfg.optim.batch_size,
                                             cfg.profile)
