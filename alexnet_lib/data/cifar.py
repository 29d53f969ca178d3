"""CIFAR-10 as uint8 tensors: decoded once, cached, loaded in < 1 s.

Sources (found by ``locate.find_dataset``): torchvision's
``cifar-10-batches-py`` (read with ``torchvision.datasets.CIFAR10``), an
image folder (``train/<class>/*.jpg``, ``test/<class>/*.jpg``, e.g.
``cifar-10-jpeg-q75``) or the sample shipped in the package
(``train.npz``, ``test.npz``). Class index = sorted class folder name,
which is CIFAR's own ``batches.meta`` order (airplane, ..., truck).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import cache_root
from .errors import DataLayoutError, WHERE_TO_SET, CorruptImageError
from .files import (atomic_save, balanced_subset, check_same_classes,
                    decode_file, fingerprint, load_cached,
                    scan_class_folders)
from .locate import cifar_kind, find_dataset

# DEVIATION (data): the shared copy is cifar-10-jpeg-q75, a lossy JPEG
# re-encoding (mean abs. error ~5.8/255); cifar-10-batches-py is exact,
# and so is the shipped sample's test split (its train split is q75).
SPLITS = ("train", "test")


@dataclass
class CifarTensors:
    """One split of CIFAR-10, in memory."""
    images: torch.Tensor  # (N, 3, 32, 32) uint8, RGB
    labels: torch.Tensor  # (N,) int64
    classes: list[str]
    source: str = ""  # the folder the images came from
    skipped: list[str] = field(default_factory=list)  # corrupt files

    def __len__(self) -> int:
        return len(self.labels)


def find_cifar10(root: str | Path | None = None,
                 profile: str | None = None,
                 download: bool | None = False) -> tuple[str, Path]:
    """Where CIFAR-10 is: (kind, path), kind "batches", "folder" or
    "sample"; searched as ``locate.find_dataset`` says."""
    path = find_dataset("cifar10", path=root, profile=profile,
                        download=download)
    return cifar_kind(path), path


def load_cifar10(root: str | Path | None = None, split: str = "train",
                 download: bool | None = None, subset: int | None = None,
                 on_corrupt: str = "skip",
                 profile: str | None = None) -> CifarTensors:
    """One split ("train" or "test") of CIFAR-10 as uint8 tensors.

    ``root``: the folder (or a folder holding it); None searches as
    ``locate.find_dataset`` says, for ``profile`` (None:
    $ALEXNET_PROFILE). ``download``: None fetches a missing CIFAR-10
    for the cpu and gpu profiles. ``subset``: a class-balanced,
    deterministic first-N (see ``files.balanced_subset``).
    ``on_corrupt``: "skip" drops undecodable files and lists them in
    ``.skipped``; "stop" raises CorruptImageError naming the file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if on_corrupt not in ("skip", "stop"):
        raise ValueError(
            f"on_corrupt must be 'skip' or 'stop', got {on_corrupt!r}")
    kind, path = find_cifar10(root, profile, download)
    if kind == "batches":
        data = _load_batches(path, split)
    elif kind == "sample":
        data = _load_sample(path, split)
    else:
        data = _load_folder(path, split, subset, on_corrupt)
        subset = None  # already applied on the file list
    if subset is not None:
        keep = torch.tensor(balanced_subset(data.labels, subset))
        data.images, data.labels = data.images[keep], data.labels[keep]
    return data


def _load_sample(path: Path, split: str) -> CifarTensors:
    """The shipped sample: exact test pixels, train JPEGs (SOURCES.md)."""
    with np.load(path / f"{split}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    classes = [str(c) for c in arrays["classes"]]
    labels = torch.from_numpy(arrays["labels"]).to(torch.int64)
    if split == "test":  # rows of 1024 R, 1024 G, 1024 B values
        images = torch.from_numpy(arrays["data"]).view(-1, 3, 32, 32)
    else:
        blob, ends = arrays["jpeg"], arrays["offsets"]
        images = torch.stack([
            decode_file(f"{path}/train.npz:{name}",
                        blob[ends[i]:ends[i + 1]].tobytes())
            for i, name in enumerate(arrays["files"])])
    return CifarTensors(images.contiguous(), labels, classes, str(path))


def _load_batches(path: Path, split: str) -> CifarTensors:
    """Read cifar-10-batches-py with torchvision (it checks the md5s)."""
    from torchvision.datasets import CIFAR10
    try:
        ds = CIFAR10(str(path.parent), train=split == "train")
    except RuntimeError as err:
        raise DataLayoutError(
            f"{path} is not a complete cifar-10-batches-py folder ({err}): "
            f"a batch file is missing or fails torchvision's md5 check. "
            f"Delete the folder and download it again (download=True), "
            f"then {WHERE_TO_SET}.") from err
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(ds.targets, dtype=torch.int64)
    return CifarTensors(images, labels, list(ds.classes), str(path))


def _load_folder(path: Path, split: str, subset: int | None,
                 on_corrupt: str) -> CifarTensors:
    split_dir = path / split
    classes, files, labels = scan_class_folders(split_dir)
    other = path / SPLITS[1 - SPLITS.index(split)]
    if other.is_dir():
        other_classes = sorted(p.name for p in other.iterdir()
                               if p.is_dir() and not p.name.startswith("."))
        check_same_classes(split_dir, classes, other, other_classes)
    else:
        scan_class_folders(other)  # raises: the other split is missing
    positions = list(range(len(files)))
    if subset is not None:
        positions = balanced_subset(labels, subset)
    key = fingerprint(split_dir, files, extra="cifar10-uint8")
    cache = cache_root() / "cifar10" / f"{split}-{key}.pt"
    saved = load_cached(cache)
    whole = (saved is not None or subset is None
             or 2 * len(positions) >= len(files))
    if saved is None:
        # Without a cache, a small subset decodes in well under a second.
        saved = _decode(files, labels,
                        range(len(files)) if whole else positions)
        if whole:
            _try_save(saved, cache)
    kept = saved["positions"]  # file positions that decoded
    skipped = [str(files[i]) for i in saved["skipped"].tolist()]
    if subset is not None and whole:
        chosen = set(positions)
        rows = torch.isin(kept, torch.tensor(positions))
        skipped = [f for f, i in zip(skipped, saved["skipped"].tolist())
                   if i in chosen]
        images, targets = saved["images"][rows], saved["labels"][rows]
    else:
        images, targets = saved["images"], saved["labels"]
    if skipped:
        if on_corrupt == "stop":
            raise CorruptImageError(
                f"corrupt or unreadable image {skipped[0]} (and "
                f"{len(skipped) - 1} more) in {split_dir}. Replace it "
                f"(re-download or re-extract it), or pass --on-corrupt skip "
                f"(data.on_corrupt='skip') to skip and count it.",
                skipped[0])
        warnings.warn(f"skipped {len(skipped)} corrupt image(s) in "
                      f"{split_dir}: {', '.join(skipped[:5])}")
    return CifarTensors(images, targets, classes, str(path), skipped)


def _decode(files: list[str], labels: list[int],
            wanted) -> dict[str, torch.Tensor]:
    """Decode the files at ``wanted`` positions into one uint8 tensor.

    Single process with libjpeg-turbo (torchvision.io.decode_jpeg on
    bytes): on 2 cores it ran at ~12k images/s against ~6k/s for PIL,
    and a 2-process pool gained nothing once started.
    """
    wanted = list(wanted)
    images = torch.empty(len(wanted), 3, 32, 32, dtype=torch.uint8)
    kept, skipped, n = [], [], 0
    for i in wanted:
        try:
            image = decode_file(files[i])
        except CorruptImageError:
            skipped.append(i)
            continue
        if image.shape != (3, 32, 32):
            raise DataLayoutError(
                f"{files[i]} is {tuple(image.shape[1:])} pixels, CIFAR-10 "
                f"images are 32x32: this folder is not CIFAR-10. Point "
                f"root at the CIFAR-10 folder, or {WHERE_TO_SET}.")
        images[n] = image
        kept.append(i)
        n += 1
    targets = torch.tensor([labels[i] for i in kept], dtype=torch.int64)
    return {"images": images[:n].clone() if skipped else images,
            "labels": targets,
            "positions": torch.tensor(kept, dtype=torch.int64),
            "skipped": torch.tensor(skipped, dtype=torch.int64)}


def _try_save(saved: dict, path: Path) -> None:
    try:
        atomic_save(saved, path)
    except OSError as err:  # a read-only cache only costs speed
        warnings.warn(f"could not write the CIFAR-10 cache {path} ({err}); "
                      f"set ALEXNET_CACHE to a writable folder.")
