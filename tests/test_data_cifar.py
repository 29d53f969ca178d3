"""CIFAR-10 on real data: counts, class order, pixels, CifarLoader.

Without $ALEXNET_DATA the tests read the shipped sample; those marked
full_data need the full image folder (cifar-10-jpeg-q75) there.
"""
import csv
import pickle
import time
import urllib.error

import numpy as np
import pytest
import torch

from alexnet_lib.config import DataConfig, OptimConfig, TrainConfig
from alexnet_lib.data import (CifarLoader, CorruptImageError,
                              DataLayoutError, DataNotFoundError,
                              DownloadError, load_cifar10)
from alexnet_lib.data.files import scan_class_folders
from alexnet_lib.data.locate import SAMPLE_ROOT

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
           "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def cifar_test(cifar_dir):
    """The whole test split (10,000 images, decoded once then cached;
    the sample's 1,017)."""
    return load_cifar10(cifar_dir, split="test")


@pytest.fixture(scope="module")
def q75_dir(full_data_dir):
    """The full JPEG image folder (cifar-10-jpeg-q75)."""
    return full_data_dir / "cifar-10-jpeg-q75"


# --- the data on disk -------------------------------------------------------

@pytest.mark.full_data
def test_file_counts_are_cifar10s(q75_dir):
    for split, total, per_class in (("train", 50000, 5000),
                                    ("test", 10000, 1000)):
        classes, files, labels = scan_class_folders(q75_dir / split)
        assert classes == CLASSES
        assert len(files) == total
        assert np.bincount(labels).tolist() == [per_class] * 10


@pytest.mark.full_data
def test_class_order_is_batches_meta_order(full_data_dir, cifar_test):
    meta = full_data_dir / "cifar-10-exact-prefix" / "batches.meta"
    with open(meta, "rb") as f:
        label_names = pickle.load(f, encoding="latin1")["label_names"]
    assert cifar_test.classes == label_names == CLASSES
    sample = load_cifar10(SAMPLE_ROOT / "cifar10", split="test")
    assert sample.classes == CLASSES


def test_sample_splits_shapes_and_counts():
    test = load_cifar10(SAMPLE_ROOT / "cifar10", split="test")
    train = load_cifar10(SAMPLE_ROOT / "cifar10", split="train")
    assert test.images.shape == (1017, 3, 32, 32)
    assert train.images.shape == (2000, 3, 32, 32)
    assert test.labels.bincount().tolist() == [105, 93, 100, 104, 92, 87,
                                               114, 102, 110, 110]
    assert train.labels.bincount().tolist() == [200] * 10
    for data in (test, train):
        assert data.images.dtype == torch.uint8
        assert data.labels.dtype == torch.int64
        assert data.classes == CLASSES and data.skipped == []


@pytest.mark.full_data
def test_test_split_shapes_and_counts(cifar_test):
    assert cifar_test.images.shape == (10000, 3, 32, 32)
    assert cifar_test.images.dtype == torch.uint8
    assert cifar_test.labels.dtype == torch.int64
    assert cifar_test.labels.bincount().tolist() == [1000] * 10
    assert cifar_test.skipped == []


@pytest.mark.full_data
def test_jpegs_match_the_exact_test_images(full_data_dir, q75_dir):
    cifar_test = load_cifar10(q75_dir, split="test")
    exact = np.load(full_data_dir / "cifar-10-exact-prefix" /
                    "test_batch.npz")
    with open(q75_dir / "order.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["batch"] == "test_batch"]
    rows.sort(key=lambda r: int(r["index"]))
    n = 200
    # Our order: sorted class folder, then sorted file name 0000..0999.
    pos = [CLASSES.index(r["jpeg_path"].split("/")[1]) * 1000
           + int(r["jpeg_path"].split("/")[2][:4]) for r in rows[:n]]
    ours = cifar_test.images[pos].float()
    truth = torch.from_numpy(exact["data"][:n]).view(n, 3, 32, 32).float()
    mae = (ours - truth).abs().mean((1, 2, 3))
    assert mae.max() < 15  # SOURCES.md: worst 13.0, wrong pairing ~55
    assert 4 < mae.mean() < 8  # JPEG q75: about 5.8
    assert cifar_test.labels[pos].tolist() == exact["labels"][:n].tolist()


@pytest.mark.full_data
def test_second_load_comes_from_the_cache(q75_dir):
    cifar_test = load_cifar10(q75_dir, split="test")
    start = time.perf_counter()
    again = load_cifar10(q75_dir, split="test")
    assert time.perf_counter() - start < 1.0
    assert torch.equal(again.images, cifar_test.images)
    assert torch.equal(again.labels, cifar_test.labels)


@pytest.mark.slow
@pytest.mark.full_data
def test_whole_train_split(q75_dir):
    train = load_cifar10(q75_dir, split="train")
    assert train.images.shape == (50000, 3, 32, 32)
    assert train.labels.bincount().tolist() == [5000] * 10
    start = time.perf_counter()
    load_cifar10(q75_dir, split="train")
    assert time.perf_counter() - start < 1.0


def test_subset_is_class_balanced_first_n(cifar_dir):
    sub = load_cifar10(cifar_dir, split="train", subset=25)
    assert sub.labels.bincount().tolist() == [3] * 5 + [2] * 5
    again = load_cifar10(cifar_dir, split="train", subset=25)
    assert torch.equal(sub.images, again.images)
    first = load_cifar10(cifar_dir, split="train", subset=10)
    # The first image of every class: train/<class>/0000.jpg.
    assert first.labels.tolist() == list(range(10))
    assert torch.equal(first.images[0], sub.images[0])


def test_data_root_is_searched(cifar_dir, monkeypatch):
    monkeypatch.setenv("ALEXNET_DATA", str(cifar_dir.parent))
    sub = load_cifar10(split="test", subset=10)
    assert sub.source == str(cifar_dir)


# --- CifarLoader ------------------------------------------------------------

@pytest.fixture(scope="module")
def small(cifar_test):
    """300 real images; labels = position, so a batch names its images."""
    return cifar_test.images[:300], torch.arange(300)


def batches(loader, epoch=0, start_step=0):
    loader.set_epoch(epoch, start_step)
    return list(loader)


def test_loader_shapes_and_length(small):
    images, labels = small
    loader = CifarLoader(images, labels, 128, crop=24, flip=True)
    out = batches(loader)
    assert len(loader) == len(out) == 3
    assert [len(y) for _, y in out] == [128, 128, 44]
    x, y = out[0]
    assert x.shape == (128, 3, 24, 24) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert sorted(torch.cat([y for _, y in out]).tolist()) == \
        list(range(300))  # every image once per epoch
    assert len(CifarLoader(images, labels, 128, drop_last=True)) == 2


def test_loader_is_deterministic_and_reshuffles(small):
    kw = dict(crop=24, flip=True, pca_std=0.1, seed=3)
    a = batches(CifarLoader(*small, 100, **kw))
    b = batches(CifarLoader(*small, 100, **kw))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = batches(CifarLoader(*small, 100, **kw), epoch=1)
    assert not torch.equal(a[0][1], c[0][1])


def test_resume_from_start_step_gives_the_same_batches(small):
    loader = CifarLoader(*small, 64, crop=24, flip=True, pca_std=0.1)
    full = batches(loader, epoch=2)
    resumed = batches(CifarLoader(*small, 64, crop=24, flip=True,
                                  pca_std=0.1), epoch=2, start_step=3)
    assert len(resumed) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_two_ranks_concatenate_to_the_one_process_batch(small):
    kw = dict(crop=24, flip=True, pca_std=0.1, seed=7)
    one = batches(CifarLoader(*small, 64, **kw), epoch=1)
    ranks = [batches(CifarLoader(*small, 64, rank=r, world_size=2, **kw),
                     epoch=1) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)
    for (x, y), (x0, y0), (x1, y1) in zip(one, *ranks):
        assert len(y0) == len(y) // 2 or len(y0) - len(y1) in (0, 1)
        assert torch.equal(torch.cat([x0, x1]), x)
        assert torch.equal(torch.cat([y0, y1]), y)


def test_batch_size_must_split_across_ranks(small):
    with pytest.raises(ValueError, match="global batch size 100 is not "
                       "divisible by the number of processes 3"):
        CifarLoader(*small, 100, rank=0, world_size=3)


def test_crop_and_flip_semantics(small):
    images, labels = small
    loader = CifarLoader(images, labels, 300, crop=24, flip=True, seed=1)
    (x, y), = batches(loader)
    seen_pos, seen_flip = set(), set()
    for out, i in zip(x, y.tolist()):
        img = images[i].float()
        hits = [(t, l, m) for t in range(9) for l in range(9)
                for m in (False, True)
                if torch.equal(out, (img[:, t:t + 24, l:l + 24].flip(-1)
                                     if m else img[:, t:t + 24, l:l + 24]))]
        assert hits, f"image {i} is no 24x24 crop (or mirror) of itself"
        seen_pos.update(h[:2] for h in hits)
        seen_flip.update(h[2] for h in hits)
    assert seen_flip == {False, True}
    assert {p[0] for p in seen_pos} == set(range(9))


def test_test_time_is_centre_crop_without_augmentation(small):
    images, labels = small
    mean = images.float().mean(0)
    loader = CifarLoader(images, labels, 50, shuffle=False, crop=24,
                         flip=True, pca_std=0.1, mean=mean, train=False)
    x, y = next(iter(loader))
    assert y.tolist() == list(range(50))
    want = (images[:50].float() - mean)[:, :, 4:28, 4:28]
    torch.testing.assert_close(x, want)


def test_pca_noise_is_one_rgb_shift_per_image(small):
    images, labels = small
    loader = CifarLoader(images, labels, 20, shuffle=False, pca_std=0.1)
    x, y = next(iter(loader))
    shift = x - images[:20].float()  # (20, 3, 32, 32)
    per_image = shift[:, :, :1, :1]
    torch.testing.assert_close(shift, per_image.expand_as(shift),
                               atol=1e-4, rtol=0)
    assert per_image.abs().max() > 0.5  # 0..255 scale: a visible shift
    assert per_image.abs().max() < 60


# --- build_loaders ----------------------------------------------------------

def cifar_cfg(cifar_dir, **data):
    return TrainConfig(model="cifar_4layer", data=DataConfig(
        dataset="cifar10", root=str(cifar_dir), image_size=24,
        train_subset=200, val_subset=100, **data),
        optim=OptimConfig(batch_size=50))


def test_build_loaders_for_cifar(cifar_dir, run_loaders,
                                 run_ten_loader):
    train, val, info = run_loaders(cifar_cfg(cifar_dir))
    assert info["num_classes"] == 10 and info["classes"] == CLASSES
    assert (info["n_train"], info["n_val"], info["input_size"]) == \
        (200, 100, 24)
    assert info["mean"].shape == (3, 32, 32)
    assert info["corrupt_files"]() == []
    x, y = next(iter(train))
    assert x.shape == (50, 3, 24, 24) and len(train) == 4
    x, y = next(iter(val))
    assert x.shape == (50, 3, 24, 24) and y.tolist() == [0] * 10 + \
        [1] * 10 + [2] * 10 + [3] * 10 + [4] * 10
    ten = next(iter(run_ten_loader(cifar_cfg(cifar_dir))))[0]
    assert ten.shape == (50, 10, 3, 24, 24)


def test_build_loaders_channel_mean_and_ranks(cifar_dir, run_loaders):
    cfg = cifar_cfg(cifar_dir, mean="channel")
    one, _, info = run_loaders(cfg)
    assert info["mean"].shape == (3, 1, 1)
    r1, _, _ = run_loaders(cfg, rank=1, world_size=2)
    one.set_epoch(1, start_step=2)
    r1.set_epoch(1, start_step=2)
    (x, y), (x1, y1) = next(iter(one)), next(iter(r1))
    assert torch.equal(x1, x[25:]) and torch.equal(y1, y[25:])


# --- bad input: each error says what to do ----------------------------------

def tiny_folder(root, classes=("cat", "dog"), splits=None, n=3):
    """A few real CIFAR JPEGs (from the shipped sample) in the
    image-folder layout; class names outside CIFAR get cat images."""
    with np.load(SAMPLE_ROOT / "cifar10" / "train.npz") as z:
        blob, ends, files = z["jpeg"], z["offsets"], list(z["files"])
    splits = splits or {"train": classes, "test": classes}
    for split, names in splits.items():
        for name in names:
            (root / split / name).mkdir(parents=True)
            for k in range(n):
                i = files.index(f"train/{name if name in CLASSES else 'cat'}"
                                f"/{k + (split == 'test') * 10:04d}.jpg")
                (root / split / name / f"{k:04d}.jpg").write_bytes(
                    blob[ends[i]:ends[i + 1]].tobytes())
    return root


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))


FOLDERS = "cifar-10-batches-py or cifar10 or cifar-10-jpeg-q75"
TO_POINT = ("or point the project at a copy you have: set ALEXNET_DATA="
            "/folder/that/holds/it or pass --data /folder/that/holds/it.")


def test_missing_folder(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10(tmp_path / "nowhere")
    assert str(err.value) == (
        f"CIFAR-10 not found: looked for {FOLDERS} in "
        f"{tmp_path / 'nowhere'} (download is off). Fetch it with `python "
        f"-m alexnet_lib fetch cifar10`, {TO_POINT}")


def test_missing_data_root_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10(profile="cpu", download=False)
    assert str(err.value) == (
        f"CIFAR-10 not found: looked for {FOLDERS} in {tmp_path / 'data'}, "
        f"{tmp_path / 'home/.cache/alexnet_lib/data'} (download=False). "
        f"Fetch it with `python -m alexnet_lib fetch cifar10`, {TO_POINT}")


def test_folder_without_cifar(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DataLayoutError, match="holds no CIFAR-10: expected "
                       "train/<class>/"):
        load_cifar10(tmp_path)


def test_no_class_folders(tmp_path, private_cache):
    jpeg = (tiny_folder(tmp_path / "src") / "train/cat/0000.jpg").read_bytes()
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
        (tmp_path / "data" / split / "0000.jpg").write_bytes(jpeg)
    with pytest.raises(DataLayoutError, match="has no class folders. "
                       "Expected .*<class>/<image files>"):
        load_cifar10(tmp_path / "data")


def test_a_split_missing(tmp_path, private_cache):
    tiny_folder(tmp_path, splits={"train": ("cat", "dog")})
    with pytest.raises(DataLayoutError, match=r"split folder .*test is "
                       r"missing.*ALEXNET_DATA"):
        load_cifar10(tmp_path, split="train")


def test_mismatched_class_names(tmp_path, private_cache):
    tiny_folder(tmp_path, splits={"train": ("cat", "dog"),
                                  "test": ("cat", "frog")})
    with pytest.raises(DataLayoutError, match=r"class folders differ .*"
                       r"only in the first: \['dog'\]; only in the second: "
                       r"\['frog'\]"):
        load_cifar10(tmp_path, split="train")


def test_corrupt_jpeg_skip_and_stop(tmp_path, private_cache):
    root = tiny_folder(tmp_path)
    bad = root / "train" / "dog" / "0001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated
    with pytest.warns(UserWarning, match="skipped 1 corrupt image"):
        data = load_cifar10(root, split="train")
    assert len(data) == 5 and data.skipped == [str(bad)]
    assert data.labels.tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(CorruptImageError, match=r"0001\.jpg") as err:
        load_cifar10(root, split="train", on_corrupt="stop")
    assert err.value.path == str(bad)
    assert "on_corrupt='skip'" in str(err.value)


def test_no_network_for_download(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] no network")
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_cifar10(tmp_path, download=True, profile="cpu")
    assert str(err.value) == (
        f"CIFAR-10 not found: looked for {FOLDERS} in {tmp_path} "
        f"(downloading it into {tmp_path} failed: URLError: <urlopen error "
        f"[Errno -3] no network>; this machine may be offline). Fetch it "
        f"with `python -m alexnet_lib fetch cifar10`, {TO_POINT}")
    assert isinstance(err.value.__cause__, DownloadError)


def test_cache_notices_added_files(tmp_path, private_cache):
    root = tiny_folder(tmp_path)
    assert len(load_cifar10(root, split="test")) == 6
    (root / "test/cat/0005.jpg").write_bytes(
        (root / "test/cat/0000.jpg").read_bytes())
    assert len(load_cifar10(root, split="test")) == 7
