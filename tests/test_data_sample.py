"""The small real sample shipped in alexnet_lib/sample: its budget, its
contents, that it is enough for every ci plan, and (full_data) that it
equals its sources."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_lib.data import SAMPLE_ROOT, load_cifar10
from alexnet_lib.data.files import scan_class_folders
from alexnet_lib.runs import IMAGENETTE_PLANS

REPO = Path(__file__).resolve().parents[1]
BUDGET = 15_000_000  # bytes, the whole sample
SYNSETS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
           "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]


def sample_files() -> list[Path]:
    return sorted(p for p in SAMPLE_ROOT.rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts)


def test_sample_fits_the_budget():
    sizes = {p.relative_to(SAMPLE_ROOT).parts[0]: 0 for p in sample_files()}
    for p in sample_files():
        sizes[p.relative_to(SAMPLE_ROOT).parts[0]] += p.stat().st_size
    assert sorted(sizes) == ["SOURCES.md", "cifar10", "imagenet-samples",
                             "imagenet_class_index.json", "imagenette2-224",
                             "mnist"]
    assert sum(sizes.values()) <= BUDGET
    assert len(sample_files()) == 629  # 3 npz, 600 + 24 JPEGs, json, md


def test_sample_contents():
    with np.load(SAMPLE_ROOT / "cifar10" / "test.npz") as t:
        assert t["data"].shape == (1017, 3072) and t["data"].dtype == np.uint8
        assert sorted(t["index"].tolist()) == list(range(1017))
        assert np.bincount(t["labels"]).tolist() == [
            105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
        assert (np.diff(t["labels"]) >= 0).all()  # grouped by class
    with np.load(SAMPLE_ROOT / "cifar10" / "train.npz") as r:
        assert np.bincount(r["labels"]).tolist() == [200] * 10
        assert r["offsets"][-1] == len(r["jpeg"])
    for split, n in (("train", 50), ("val", 10)):
        classes, files, labels = scan_class_folders(
            SAMPLE_ROOT / "imagenette2-224" / split)
        assert classes == SYNSETS
        assert np.bincount(labels).tolist() == [n] * 10
    assert len(list((SAMPLE_ROOT / "imagenet-samples").glob("*.JPEG"))) == 24
    index = json.loads((SAMPLE_ROOT / "imagenet_class_index.json")
                       .read_text())
    assert len(index) == 1000 and index["0"] == ["n01440764", "tench"]
    with np.load(SAMPLE_ROOT / "mnist" / "mnist.npz") as m:
        for split, n in (("train", 100), ("test", 50)):
            assert m[f"{split}_images"].shape == (10 * n, 28, 28)
            assert m[f"{split}_images"].dtype == np.uint8
            assert np.bincount(m[f"{split}_labels"]).tolist() == [n] * 10
            assert (np.diff(m[f"{split}_index"]) > 0).all()  # file order


def ci_plans() -> list[dict[str, int]]:
    """train_images / test_images / ... of each notebook's "ci" plan."""
    plans = []
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        code = "".join("".join(c["source"]) for c in
                       json.loads(nb.read_text())["cells"]
                       if c["cell_type"] == "code")
        for match in re.finditer(r'"ci": dict\((.*?)"cpu"', code, re.S):
            plans.append({k: int(v.replace("_", "")) for k, v in
                          re.findall(r"(\w+_images)=([\d_]+)",
                                     match.group(1))})
    return plans


@pytest.mark.skipif(not (REPO / "notebooks").is_dir(),
                    reason="runs in the source checkout (notebooks/)")
def test_sample_is_enough_for_every_ci_plan():
    plans = ci_plans()
    assert len(plans) >= 8
    need = {}
    for plan in plans:
        for key, n in plan.items():
            need[key] = max(need.get(key, 0), n)
    # a class-balanced subset of N needs N / 10 of every class
    assert need["train_images"] <= 2000
    assert need["test_images"] <= 10 * 87  # smallest test class: 87
    assert need["mean_images"] <= 500  # §2's Imagenette mean image
    ci = IMAGENETTE_PLANS["ci"]
    assert ci.train_subset <= 500 and ci.val_subset <= 100
    train = load_cifar10(SAMPLE_ROOT / "cifar10", "train", subset=2000)
    test = load_cifar10(SAMPLE_ROOT / "cifar10", "test", subset=870)
    assert train.labels.bincount().tolist() == [200] * 10
    assert test.labels.bincount().tolist() == [87] * 10


@pytest.mark.skipif(not (REPO / "notebooks").is_dir(),
                    reason="runs in the source checkout (notebooks/)")
def test_every_photo_a_chapter_names_is_shipped():
    named = set()
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        named |= set(re.findall(r"n\d{8}_[A-Za-z][A-Za-z_]*",
                                nb.read_text()))
    shipped = {p.stem for p in (SAMPLE_ROOT / "imagenet-samples").iterdir()}
    assert named and named <= shipped


def test_every_sample_file_is_package_data():
    text = (REPO / "pyproject.toml").read_text()
    block = text.split("[tool.setuptools.package-data]")[1].split("\n[")[0]
    patterns = re.findall(r'"sample/([^"]+)"', block)
    for path in sample_files():
        rel = path.relative_to(SAMPLE_ROOT)
        assert any(rel.match(p) and len(rel.parts) == len(Path(p).parts)
                   for p in patterns), rel


# --- against the sources (full data) ----------------------------------------

@pytest.mark.full_data
def test_exact_test_pixels_equal_the_source_prefix(full_data_dir):
    source = np.load(full_data_dir / "cifar-10-exact-prefix" /
                     "test_batch.npz")
    with np.load(SAMPLE_ROOT / "cifar10" / "test.npz") as t:
        data, labels, index = t["data"], t["labels"], t["index"]
    assert np.array_equal(data, source["data"][index])
    assert np.array_equal(labels, source["labels"][index])
    exact = load_cifar10(SAMPLE_ROOT / "cifar10", "test")
    first = int(np.flatnonzero(index == 0)[0])  # test image 0
    assert torch.equal(exact.images[first].flatten(),
                       torch.from_numpy(source["data"][0]))


@pytest.mark.full_data
def test_sample_subsets_are_the_full_folders_subsets(full_data_dir):
    q75 = full_data_dir / "cifar-10-jpeg-q75"
    for n in (10, 1000, 2000):
        ours = load_cifar10(SAMPLE_ROOT / "cifar10", "train", subset=n)
        full = load_cifar10(q75, "train", subset=n)
        assert torch.equal(ours.images, full.images)  # same JPEG bytes
        assert torch.equal(ours.labels, full.labels)
    ours = load_cifar10(SAMPLE_ROOT / "cifar10", "test", subset=500)
    full = load_cifar10(q75, "test", subset=500)
    assert torch.equal(ours.labels, full.labels)
    mae = (ours.images.float() - full.images.float()).abs().mean((1, 2, 3))
    assert mae.max() < 15  # the same images: exact vs JPEG q75


@pytest.mark.full_data
def test_make_sample_rebuilds_the_same_bytes(full_data_dir, tmp_path):
    out = tmp_path / "sample"
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_sample.py"), "--src",
         str(full_data_dir), "--out", str(out)],
        capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1].split()[0] == "total"
    rebuilt = sorted(p.relative_to(out) for p in out.rglob("*")
                     if p.is_file())
    shipped = [p.relative_to(SAMPLE_ROOT) for p in sample_files()
               if p.name != "SOURCES.md"]
    assert rebuilt == shipped
    for rel in rebuilt:
        assert (out / rel).read_bytes() == (SAMPLE_ROOT / rel).read_bytes()
