"""The batched-decode input path gives the per-image path's images."""
import shutil
import warnings

import pytest
import torch
from torchvision.io import encode_png

from alexnet_lib.config import ConfigError, TrainConfig, apply_profile
from alexnet_lib.data import CorruptImageError, build_loaders
from alexnet_lib.data.files import decode_file
from alexnet_lib.data.jpeg_batch import (BatchedJpegAugment,
                                         JpegBytesFolder, collate_bytes)
from alexnet_lib.data.imagenet import ImageNetFolder


def _cfg(root, decode, **changes):
    cfg = apply_profile(TrainConfig(), "ci")
    return cfg.replace(**{"data__root": str(root), "data__decode": decode,
                          "data__train_subset": 24, "data__val_subset": 16,
                          "optim__batch_size": 8, "seed": 7, **changes})


def _batches(loader, n, epoch=None, start_step=0):
    if epoch is not None:  # training loaders only
        loader.set_epoch(epoch, start_step)
    out = []
    for x, y in loader:
        out.append((x, y))
        if len(out) == n:
            break
    return out


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == xb.shape and xa.dtype == xb.dtype == \
            torch.float32
        assert torch.equal(ya, yb)
        assert torch.equal(xa, xb)  # bitwise: same decoder, same ops


@pytest.mark.parametrize("rank, world", [(0, 1), (1, 2)])
def test_batched_decode_equals_the_per_image_path(imagenette_dir, rank,
                                                  world):
    pil = _loaders(_cfg(imagenette_dir, "pil"), rank, world)
    fast = _loaders(_cfg(imagenette_dir, "batched"), rank, world)
    assert len(pil[0]) == len(fast[0]) == 3  # 24 images / batch 8
    assert fast[0].batch_size == pil[0].batch_size == 8 // world
    # crops, mirrors and colour noise are on (the paper's training view)
    _assert_same(_batches(pil[0], 3, 0), _batches(fast[0], 3, 0))
    # a resumed epoch: the same batches from step 1 of epoch 1
    _assert_same(_batches(pil[0], 2, 1, 1), _batches(fast[0], 2, 1, 1))
    _assert_same(_batches(pil[1], 2), _batches(fast[1], 2))  # val view
    assert fast[2]["n_train"] == 24 and fast[2]["n_val"] == 16


def _folder_with_bad_files(src, dst):
    """2 classes x 3 images; a corrupt JPEG and a PNG in class 0."""
    for split in ("train", "val"):
        for synset in sorted(p.name for p in (src / "train").iterdir())[:2]:
            (dst / split / synset).mkdir(parents=True)
            files = sorted((src / "train" / synset).iterdir())[:3]
            for f in files:
                shutil.copy(f, dst / split / synset / f.name)
    first = sorted((dst / "train").iterdir())[0]
    files = sorted(first.iterdir())
    bad = first / "b_corrupt.JPEG"  # sorts second: JPEG start, no image
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    png = first / "c_image.png"
    png.write_bytes(encode_png(decode_file(files[0])).numpy().tobytes())
    return bad


def test_corrupt_files_and_pngs_are_handled_alike(imagenette_dir,
                                                  tmp_path):
    bad = _folder_with_bad_files(imagenette_dir, tmp_path / "data")
    cfg = _cfg(tmp_path / "data", "pil", data__train_subset=None,
               data__val_subset=None, data__mean="channel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pil = _loaders(cfg)
        fast = _loaders(cfg.replace(data__decode="batched"))
        a, b = _batches(pil[0], 2, 0), _batches(fast[0], 2, 0)
    _assert_same(a, b)  # 8 images: every file, the bad one replaced
    assert pil[2]["n_train"] == fast[2]["n_train"] == 8
    assert pil[2]["corrupt_files"]() == fast[2]["corrupt_files"]() == \
        [str(bad)]


def test_on_corrupt_stop_names_the_file(imagenette_dir, tmp_path):
    bad = _folder_with_bad_files(imagenette_dir, tmp_path / "data")
    folder = ImageNetFolder(tmp_path / "data", "train", None, "stop")
    index = folder.files.index(str(bad))
    augment = BatchedJpegAugment(folder, torch.zeros(3, 1, 1))
    batch = collate_bytes([JpegBytesFolder(folder)[index]])
    with pytest.raises(CorruptImageError, match=f"corrupt or unreadable "
                       f"image {bad}: .*on_corrupt='skip'"):
        augment(*batch)


def test_unknown_decode_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.decode must be 'pil' or "
                       "'batched', got 'gpu'"):
        _loaders(_cfg(tmp_path, "gpu"))


@pytest.mark.gpu
def test_cuda_decode_is_close_to_the_cpu_decoder(imagenette_dir):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: nvJPEG decoding runs on the GPU")
    folder = ImageNetFolder(imagenette_dir, "val", None, "skip", 32)
    batch = collate_bytes([JpegBytesFolder(folder)[i] for i in range(32)])
    mean = torch.zeros(3, 1, 1)
    cpu, _ = BatchedJpegAugment(folder, mean, train=False)(*batch)
    gpu, _ = BatchedJpegAugment(folder, mean, device="cuda",
                                train=False)(*batch)
    # nvJPEG's inverse DCT differs from libjpeg-turbo's by rounding: a
    # few levels at most on single pixels, well under 1 on average
    diff = (gpu.cpu() - cpu).abs()
    assert diff.mean() < 1.0 and diff.max() <= 16


def test_empty_and_bomb_files_are_skipped_or_named(imagenette_dir,
                                                   tmp_path):
    from alexnet_lib.data.jpeg_batch import _plain_jpeg
    _folder_with_bad_files(imagenette_dir, tmp_path / "data")
    skip = ImageNetFolder(tmp_path / "data", "train", None, "skip")
    empty = skip.files[0]  # a real JPEG, emptied
    open(empty, "wb").close()
    bytes_folder = JpegBytesFolder(skip)
    sample = bytes_folder[0]
    assert sample[0].shape == (0,) and sample[1:3] == (skip.labels[0], 0)
    augment = BatchedJpegAugment(skip, torch.zeros(3, 1, 1), 32, 36)
    with pytest.warns(UserWarning, match=f"skipping corrupt image {empty} "
                      r"\(the file is empty\); using the next image"):
        x, y = augment(*collate_bytes([bytes_folder[i] for i in (0, 1)]))
    assert x.shape == (2, 3, 32, 32) and skip.skipped == [empty]
    assert y.tolist() == [skip.labels[1]] * 2  # the next image's label
    stop = ImageNetFolder(tmp_path / "data", "train", None, "stop")
    with pytest.raises(CorruptImageError) as err:
        BatchedJpegAugment(stop, torch.zeros(3, 1, 1))(
            *collate_bytes([JpegBytesFolder(stop)[0]]))
    assert str(err.value) == (
        f"corrupt or unreadable image {empty}: the file is empty. Replace "
        f"the file (re-download or re-extract it), or pass "
        f"--on-corrupt skip (data.on_corrupt='skip') to skip it and "
        f"count it.")
    # the one-call CUDA decode takes only JPEGs with a sane header
    data = bytearray(open(skip.files[1], "rb").read())
    assert _plain_jpeg(torch.tensor(list(data), dtype=torch.uint8))
    sof = max(data.find(b"\xff\xc0"), data.find(b"\xff\xc2"))
    data[sof + 5:sof + 9] = (40000).to_bytes(2, "big") * 2
    assert not _plain_jpeg(torch.tensor(list(data), dtype=torch.uint8))
    assert not _plain_jpeg(sample[0])


def _loaders(cfg, *args, **kwargs):
    """build_loaders with the settings a run passes it from ``cfg``."""
    return build_loaders(cfg.data, cfg.optim.batch_size, cfg.seed,
                         cfg.profile, *args, **kwargs)
