"""ImageNet-format data on real Imagenette: layout, names, skips, loaders.

Without $ALEXNET_DATA the tests read the shipped sample; those marked
full_data need the full 224 px copy (imagenette2-224) there.
"""
import shutil
import urllib.error

import pytest
import torch
from torchvision.transforms import v2

from alexnet_lib.config import DataConfig, OptimConfig, TrainConfig
from alexnet_lib.data import (CorruptImageError, DataLayoutError,
                              DataNotFoundError, DownloadError,
                              ImageNetFolder, ResumableBatchSampler,
                              download_imagenette, mix_seed)
from alexnet_lib.data.files import scan_class_folders
from alexnet_lib.data.locate import SAMPLE_ROOT

SYNSETS = ["n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
           "n03394916", "n03417042", "n03425413", "n03445777", "n03888257"]


@pytest.mark.full_data
def test_imagenette_counts_and_names(imagenette_dir):
    check_counts_and_names(imagenette_dir, (9469, 2000), 200)


def test_sample_counts_and_names():
    check_counts_and_names(SAMPLE_ROOT / "imagenette2-224", (500, 100), 10)


def check_counts_and_names(imagenette_dir, sizes, val_per_class):
    train = ImageNetFolder(imagenette_dir, "train")
    val = ImageNetFolder(imagenette_dir, "val")
    assert (len(train), len(val)) == sizes
    assert train.synsets == val.synsets == SYNSETS
    assert torch.bincount(torch.tensor(val.labels)).tolist() == \
        [val_per_class] * 10
    # Names from imagenet_class_index.json in the data root.
    assert train.classes[:3] == ["tench", "English_springer",
                                 "cassette_player"]
    img, label = train[0]
    assert img.shape == (3, 224, 224) and img.dtype == torch.uint8
    assert label == 0
    img, label = val[len(val) - 1]
    assert label == 9


def small_copy(imagenette_dir, root, n=3, synsets=SYNSETS[:2],
               splits=("train", "val")):
    """A few real Imagenette files in the same layout (no class index)."""
    for split in splits:
        for synset in synsets:
            src = imagenette_dir / split / synset
            (root / split / synset).mkdir(parents=True)
            for path in sorted(src.iterdir())[:n]:
                shutil.copy(path, root / split / synset / path.name)
    return root


def test_names_fall_back_to_synsets(imagenette_dir, tmp_path):
    ds = ImageNetFolder(small_copy(imagenette_dir, tmp_path / "nette"))
    assert ds.classes == ds.synsets == SYNSETS[:2]
    assert len(ds) == 6


def test_subset_is_class_balanced(imagenette_dir):
    ds = ImageNetFolder(imagenette_dir, "train", subset=25)
    assert torch.bincount(torch.tensor(ds.labels)).tolist() == \
        [3] * 5 + [2] * 5


def test_seeded_items_are_reproducible(imagenette_dir):
    ds = ImageNetFolder(imagenette_dir, "val", subset=10,
                        transform=v2.RandomResizedCrop(64))
    a, _ = ds[(4, 123)]
    b, _ = ds[(4, 123)]
    c, _ = ds[(4, 124)]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_corrupt_image_skip_warns_counts_and_moves_on(imagenette_dir,
                                                      tmp_path):
    root = small_copy(imagenette_dir, tmp_path / "nette")
    files = sorted((root / "train" / SYNSETS[0]).iterdir())
    files[1].write_bytes(files[1].read_bytes()[:500])  # truncated
    garbage = root / "train" / SYNSETS[0] / "zz_garbage.JPEG"
    garbage.write_bytes(b"this is not a jpeg" * 10)
    ds = ImageNetFolder(root, "train")
    with pytest.warns(UserWarning, match=f"skipping corrupt image "
                      f".*{files[1].name}"):
        img, label = ds[1]
    # The next valid image (index 2) with its own label.
    assert torch.equal(img, ImageNetFolder(root, "train")[2][0])
    assert label == 0 and ds.skipped == [str(files[1])]
    with pytest.warns(UserWarning, match="zz_garbage"):
        img, label = ds[3]  # the garbage file is last of class 0
    assert label == 1
    assert len(ds.skipped) == 2
    # Counted across DataLoader worker processes too.
    fresh = ImageNetFolder(root, "train",
                           transform=v2.Resize((32, 32), antialias=True))
    loader = torch.utils.data.DataLoader(fresh, batch_size=4,
                                         num_workers=2)
    assert sum(len(y) for _, y in loader) == 7  # warnings: in workers
    assert sorted(fresh.skipped) == sorted([str(files[1]), str(garbage)])


def test_corrupt_image_stop_names_the_file(imagenette_dir, tmp_path):
    root = small_copy(imagenette_dir, tmp_path / "nette")
    bad = sorted((root / "val" / SYNSETS[1]).iterdir())[0]
    bad.write_bytes(b"\xff\xd8\xff garbage")
    ds = ImageNetFolder(root, "val", on_corrupt="stop")
    with pytest.raises(CorruptImageError) as err:
        ds[3]
    assert err.value.path == str(bad)
    assert str(bad) in str(err.value) and "on_corrupt='skip'" in \
        str(err.value)


TO_POINT = ("or point the project at a copy you have: set ALEXNET_DATA="
            "/folder/that/holds/it or pass --data /folder/that/holds/it.")


def test_missing_folder_says_where_and_what(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as err:
        ImageNetFolder(tmp_path / "imagenet")
    assert str(err.value) == (
        f"Imagenette not found: looked for imagenette2-160 or "
        f"imagenette2-224 or imagenette2-320 or imagenette2 or imagenet or "
        f"ILSVRC2012 in {tmp_path / 'imagenet'} (download is off). Fetch it "
        f"with `python -m alexnet_lib fetch imagenette --size 160px`, "
        f"{TO_POINT}")
    monkeypatch.setenv("ALEXNET_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ALEXNET_PROFILE", "gpu")
    with pytest.raises(DataNotFoundError) as err:
        ImageNetFolder(None)
    assert str(err.value) == (
        f"Imagenette not found: looked for imagenette2-320 or imagenette2 "
        f"or imagenette2-224 or imagenet or ILSVRC2012 in {tmp_path}, "
        f"{tmp_path / 'home/.cache/alexnet_lib/data'} (download=False). "
        f"Fetch it with `python -m alexnet_lib fetch imagenette --size "
        f"320px`, {TO_POINT}")


def test_wrong_layouts(imagenette_dir, tmp_path):
    (tmp_path / "a" / "train").mkdir(parents=True)
    shutil.copy(next((imagenette_dir / "val" / SYNSETS[0]).iterdir()),
                tmp_path / "a" / "train")
    with pytest.raises(DataLayoutError, match="has no class folders"):
        ImageNetFolder(tmp_path / "a")
    root = small_copy(imagenette_dir, tmp_path / "b", splits=("train",))
    with pytest.raises(DataLayoutError, match=r"split folder .*val is "
                       r"missing"):
        ImageNetFolder(root, "val")
    root = small_copy(imagenette_dir, tmp_path / "c")
    (root / "val" / SYNSETS[1]).rename(root / "val" / SYNSETS[5])
    with pytest.raises(DataLayoutError, match=rf"only in the first: "
                       rf"\['{SYNSETS[1]}'\]; only in the second: "
                       rf"\['{SYNSETS[5]}'\]"):
        ImageNetFolder(root, "train")


def test_no_network_for_imagenette_download(tmp_path, monkeypatch):
    import torchvision.datasets.imagenette as tv_nette

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] no network")
    monkeypatch.setattr(tv_nette, "download_and_extract_archive", offline)
    with pytest.raises(DownloadError) as err:
        download_imagenette(tmp_path)
    assert str(err.value) == (
        f"could not download Imagenette into {tmp_path} (<urlopen error "
        f"[Errno -3] no network>). This machine may be offline: on one "
        f"with internet run `python -m alexnet_lib fetch imagenette --size "
        f"320px`, copy the folder it makes into {tmp_path}, or point "
        f"ALEXNET_DATA (or --data) at the folder that holds it.")


# --- resume-exact sampling --------------------------------------------------

def sampled(sampler, epoch, start_step=0):
    sampler.set_epoch(epoch, start_step)
    return list(sampler)


def test_sampler_seeds_depend_on_seed_epoch_index_only():
    one = sampled(ResumableBatchSampler(50, 8, seed=3), epoch=2)
    assert len(one) == 7 and sum(len(b) for b in one) == 50
    for batch in one:
        for index, seed in batch:
            assert seed == mix_seed(3, 2, index)
    resumed = sampled(ResumableBatchSampler(50, 8, seed=3), 2, 4)
    assert resumed == one[4:]
    ranks = [sampled(ResumableBatchSampler(50, 8, seed=3, rank=r,
                                           world_size=2), 2)
             for r in (0, 1)]
    for b, b0, b1 in zip(one, *ranks):
        assert b0 + b1 == b
    with pytest.raises(ValueError, match="not divisible by the number of "
                       "processes 3"):
        ResumableBatchSampler(50, 8, world_size=3)


def nette_cfg(imagenette_dir, **data):
    data = {"train_subset": 20, "val_subset": 10, **data}
    return TrainConfig(data=DataConfig(
        dataset="imagenet", root=str(imagenette_dir), **data),
        optim=OptimConfig(batch_size=4))


def test_build_loaders_for_imagenette(imagenette_dir, run_loaders,
                                     run_ten_loader):
    train, val, info = run_loaders(nette_cfg(imagenette_dir))
    assert info["num_classes"] == 10 and info["classes"][0] == "tench"
    assert (info["n_train"], info["n_val"], info["input_size"]) == \
        (20, 10, 224)
    assert info["mean"].shape == (3, 256, 256)
    assert len(train) == 5
    train.set_epoch(1, start_step=3)
    resumed = list(train)
    assert len(resumed) == 2
    train.set_epoch(1)
    full = list(train)
    for (xa, ya), (xb, yb) in zip(full[3:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x, y = full[0]
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert -200 < x.mean() < 200  # mean-subtracted 0..255 values
    x, y = next(iter(val))
    assert x.shape == (4, 3, 224, 224)
    x, y = next(iter(run_ten_loader(nette_cfg(imagenette_dir))))
    assert x.shape == (4, 10, 3, 224, 224)


def test_imagenet_batches_do_not_depend_on_workers_or_ranks(
        imagenette_dir, run_loaders):
    cfg = nette_cfg(imagenette_dir, train_subset=8)
    one, _, _ = run_loaders(cfg)
    one.set_epoch(0, start_step=1)
    x, y = next(iter(one))
    workers, _, _ = run_loaders(cfg.replace(data__num_workers=2), rank=1,
                                  world_size=2)
    workers.set_epoch(0, start_step=1)
    x1, y1 = next(iter(workers))
    assert torch.equal(x1, x[2:]) and torch.equal(y1, y[2:])


@pytest.mark.full_data
def test_imagenette_file_lists(imagenette_dir):
    for split, n in (("train", 9469), ("val", 2000)):
        classes, files, _ = scan_class_folders(imagenette_dir / split)
        assert classes == SYNSETS and len(files) == n


# ------------------------------------ odd files: bombs, worker errors

def _patched(path, fmt, width, height):
    """A real 8x8 image whose header claims width x height pixels."""
    from PIL import Image
    Image.new("RGB", (8, 8), (10, 200, 30)).save(path, fmt)
    data = bytearray(path.read_bytes())
    if fmt == "PNG":  # IHDR: width, height right after the signature
        data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    else:  # SOF0: height, then width
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = (height.to_bytes(2, "big")
                                 + width.to_bytes(2, "big"))
    path.write_bytes(bytes(data))
    return path


def test_header_sizes_are_read_without_decoding(imagenette_dir, tmp_path):
    from PIL import Image
    from alexnet_lib.data.files import declared_size, decode_file
    real = sorted((imagenette_dir / "val" / SYNSETS[0]).iterdir())[:5]
    for path in real:  # real photos: EXIF and other segments first
        assert declared_size(path.read_bytes()) == Image.open(path).size
        assert decode_file(path).shape[1:] == Image.open(path).size[::-1]
    progressive = tmp_path / "p.jpg"
    Image.new("RGB", (33, 17)).save(progressive, progressive=True)
    assert declared_size(progressive.read_bytes()) == (33, 17)
    assert declared_size(_patched(tmp_path / "a.png", "PNG", 7, 9)
                         .read_bytes()) == (7, 9)
    assert declared_size(b"GIF89a...") is None


@pytest.mark.parametrize("fmt, suffix", [("JPEG", "jpg"), ("PNG", "png"),
                                         ("GIF", "gif")])
def test_decompression_bombs_are_corrupt_images(tmp_path, fmt, suffix):
    from PIL import Image
    from alexnet_lib.data.files import MAX_PIXELS, decode_file
    path = tmp_path / f"bomb.{suffix}"
    if fmt == "GIF":  # another format: PIL reads its header
        Image.new("RGB", (8, 8)).save(path, fmt)
        data = bytearray(path.read_bytes())
        data[6:10] = (65535).to_bytes(2, "little") * 2  # screen size
        path.write_bytes(bytes(data))
        reason = (f"its header declares {MAX_PIXELS + 1} x 1 pixels, over "
                  f"the limit of 178,956,970 (a decompression bomb?)")
    else:
        _patched(path, fmt, 30000, 6000)
        reason = ("its header declares 30000 x 6000 pixels, over the limit "
                  "of 178,956,970 (a decompression bomb?)")
    with pytest.raises(CorruptImageError) as err:
        decode_file(path)
    assert err.value.reason == reason and err.value.path == str(path)
    _patched(path, "PNG", 8, 8)  # a true header: decodes
    assert decode_file(path).shape == (3, 8, 8)


def test_stop_in_a_worker_is_the_same_one_line(imagenette_dir, tmp_path):
    root = small_copy(imagenette_dir, tmp_path / "nette")
    bad = sorted((root / "val" / SYNSETS[0]).iterdir())[1]
    bad.write_bytes(b"")
    ds = ImageNetFolder(root, "val", on_corrupt="stop")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=2,
        collate_fn=lambda batch: len(batch))
    with pytest.raises(CorruptImageError) as err:
        list(loader)
    assert str(err.value) == (
        f"corrupt or unreadable image {bad}: the file is empty. Replace "
        f"the file (re-download or re-extract it), or pass "
        f"--on-corrupt skip (data.on_corrupt='skip') to skip it and "
        f"count it.")



def test_imagenet_root_takes_the_data_settings_only(imagenette_dir):
    from alexnet_lib.data.sources import imagenet_root
    cfg = nette_cfg(imagenette_dir)
    assert imagenet_root(cfg.data, cfg.profile) == imagenette_dir
    with pytest.raises(TypeError):
        imagenet_root(cfg)  # a run's whole config is not data settings
