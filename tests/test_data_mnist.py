"""MNIST: the IDX reader, the shipped sample, padding, grey CIFAR, and
one-channel batches."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch

from alexnet_lib.data import (CifarLoader, DataLayoutError,
                              DataNotFoundError, SAMPLE_ROOT, find_dataset,
                              load_mnist, read_idx, to_grey)
from alexnet_lib.data.locate import MNIST_FILES, describe_dataset

SAMPLE = SAMPLE_ROOT / "mnist"


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)


def test_read_idx_bad_files_say_what_to_do(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(DataLayoutError, match="is not an MNIST IDX file "
                       r"\(its header is 12345678\).*fetch mnist"):
        read_idx(tmp_path / "bad")
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataLayoutError, match=r"is truncated: its header "
                       r"promises \(10,\) values, it holds 3"):
        read_idx(tmp_path / "short.gz")


def test_sample_split_shapes_and_padding():
    train = load_mnist(SAMPLE, "train")
    test = load_mnist(SAMPLE, "test")
    assert train.images.shape == (1000, 1, 32, 32)
    assert test.images.shape == (500, 1, 32, 32)
    assert train.images.dtype == torch.uint8
    assert train.labels.bincount().tolist() == [100] * 10
    assert test.labels.bincount().tolist() == [50] * 10
    assert train.classes == [str(d) for d in range(10)]
    # 2 pixels of background on every side, the digit in the middle
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert int(train.images[:, 0][:, border].max()) == 0
    assert int(train.images.max()) == 255
    raw = load_mnist(SAMPLE, "test", pad=0)
    assert raw.images.shape == (500, 1, 28, 28)
    assert torch.equal(raw.images, test.images[:, :, 2:30, 2:30])
    assert load_mnist(SAMPLE, "train", subset=30).labels.bincount(
    ).tolist() == [3] * 10


def test_sample_is_the_first_digits_of_the_original_files():
    with np.load(SAMPLE / "mnist.npz") as z:
        # the test file opens with the digits 7, 2, 1, 0, 4
        assert z["test_index"][:5].tolist() == [0, 1, 2, 3, 4]
        assert z["test_labels"][:5].tolist() == [7, 2, 1, 0, 4]
        # the 100th training 0 is the last 0 kept
        zeros = z["train_index"][z["train_labels"] == 0]
        assert len(zeros) == 100 and zeros[0] == 1  # 5, 0, 4, 1, ...


def test_load_mnist_bad_arguments():
    with pytest.raises(ValueError, match="split must be 'train' or "
                       "'test', got 'val'"):
        load_mnist(SAMPLE, "val")
    with pytest.raises(ValueError, match="pad must be >= 0 pixels"):
        load_mnist(SAMPLE, pad=-1)


def test_idx_folder_is_found_in_both_layouts(tmp_path):
    for layout in ("mnist", "MNIST/raw"):
        folder = tmp_path / layout
        folder.mkdir(parents=True)
        images = np.zeros((4, 28, 28), np.uint8)
        images[:, 14, 14] = [10, 20, 30, 40]
        for name in MNIST_FILES:
            write_idx(folder / name, images if "images" in name
                      else np.array([3, 1, 4, 1]))
        assert find_dataset("mnist", path=tmp_path, profile="ci",
                            download=False) == folder
        data = load_mnist(tmp_path, "test", profile="ci")
        assert data.labels.tolist() == [3, 1, 4, 1]
        assert data.images[:, 0, 16, 16].tolist() == [10, 20, 30, 40]
        shutil.rmtree(tmp_path / layout.split("/")[0])
    assert describe_dataset("mnist", SAMPLE) == (
        "MNIST, shipped sample (1,000 train / 500 test images)")


def test_missing_mnist_names_the_fetch_command(tmp_path):
    with pytest.raises(DataNotFoundError, match="MNIST not found: looked "
                       "for mnist or MNIST/raw in .*python -m alexnet_lib "
                       "fetch mnist"):
        find_dataset("mnist", path=tmp_path, profile="cpu",
                     download=False)


def test_ci_profile_falls_back_to_the_sample(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXNET_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert find_dataset("mnist", profile="ci") == SAMPLE


def test_to_grey_is_bt601_luma():
    rgb = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255],
                        [200, 100, 50]], dtype=torch.uint8)
    images = rgb.T.reshape(1, 3, 2, 2).contiguous()
    grey = to_grey(images)
    assert grey.shape == (1, 1, 2, 2) and grey.dtype == torch.uint8
    assert grey.flatten().tolist() == [76, 150, 29, 124]  # PIL's "L"
    with pytest.raises(ValueError, match=r"needs \(N, 3, H, W\) RGB"):
        to_grey(grey)


def test_one_channel_batches():
    data = load_mnist(SAMPLE, "test")
    mean = data.images.float().mean(0)  # (1, 32, 32)
    loader = CifarLoader(data.images, data.labels, 64, seed=0, mean=mean,
                         flip=False)
    x, y = next(iter(loader))
    assert x.shape == (64, 1, 32, 32) and y.shape == (64,)
    with pytest.raises(ValueError, match="PCA colour noise .* needs RGB"):
        CifarLoader(data.images, data.labels, 64, pca_std=0.1)
    with pytest.raises(ValueError, match=r"images must be \(N, 3, H, W\) "
                       r"or \(N, 1, H, W\), got \(2, 2, 32, 32\)"):
        CifarLoader(torch.zeros(2, 2, 32, 32, dtype=torch.uint8),
                    torch.zeros(2), 1)


@pytest.mark.full_data
def test_full_mnist(full_data_dir):
    train = load_mnist(full_data_dir, "train", profile="ci")
    test = load_mnist(full_data_dir, "test", profile="ci")
    assert len(train) == 60_000 and len(test) == 10_000
    assert train.labels.bincount().tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    with np.load(SAMPLE / "mnist.npz") as z:  # the sample is an excerpt
        assert np.array_equal(
            test.images[torch.from_numpy(z["test_index"]), 0, 2:30, 2:30]
            .numpy(), z["test_images"])


def test_split_off_holds_out_a_balanced_disjoint_part():
    from alexnet_lib.experiments import split_off
    data = load_mnist(SAMPLE, "train")
    rest, held = split_off(data, 200)
    assert len(rest) == 800 and len(held) == 200
    assert held.labels.bincount().tolist() == [20] * 10
    assert rest.labels.bincount().tolist() == [80] * 10
    both = torch.cat([rest.images, held.images]).view(1000, -1)
    assert len(torch.unique(both, dim=0)) == len(
        torch.unique(data.images.view(1000, -1), dim=0))
    with pytest.raises(ValueError, match=r"split_off: n must be in "
                       r"\[1, 999\] for 1000 images, got 1000"):
        split_off(data, 1000)
