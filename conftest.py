"""Shared test set-up: where the real data and the writable caches are.

Real-data tests use the folder named by $ALEXNET_DATA. When it is unset and
a ``shared/data`` folder sits beside the checkout (the CI data cache), that
folder is used. Real-data tests are skipped only when no data is found.
"""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
_BESIDE = REPO.parent / "shared" / "data"

if "ALEXNET_DATA" not in os.environ and _BESIDE.is_dir():
    os.environ["ALEXNET_DATA"] = str(_BESIDE)
# Decoded tensors and mean images are derived files: keep them in the
# checkout (git-ignored) so repeated test runs reuse them.
os.environ.setdefault("ALEXNET_CACHE", str(REPO / ".cache"))
# Notebooks run by nbval take the smallest profile unless told otherwise.
os.environ.setdefault("ALEXNET_PROFILE", "ci")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data root; skips the test when no data is present."""
    root = Path(os.environ.get("ALEXNET_DATA", ""))
    if not os.environ.get("ALEXNET_DATA") or not root.is_dir():
        pytest.skip("no real data: set ALEXNET_DATA to the data folder")
    return root


@pytest.fixture(scope="session")
def cifar_dir(data_dir: Path) -> Path:
    path = data_dir / "cifar-10-jpeg-q75"
    if not path.is_dir():
        pytest.skip(f"CIFAR-10 image folder not found in {data_dir}")
    return path


@pytest.fixture(scope="session")
def imagenette_dir(data_dir: Path) -> Path:
    path = data_dir / "imagenette2-224"
    if not path.is_dir():
        pytest.skip(f"Imagenette folder not found in {data_dir}")
    return path
