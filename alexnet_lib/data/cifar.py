"""CIFAR-10 as uint8 tensors: decoded once, cached, loaded in < 1 s.

Sources, in order: an image folder (``train/<class>/*.jpg``,
``test/<class>/*.jpg``, e.g. ``cifar-10-jpeg-q75``) or torchvision's
``cifar-10-batches-py`` (read with ``torchvision.datasets.CIFAR10``).
Class index = sorted class folder name, which is CIFAR's own
``batches.meta`` order (airplane, automobile, ..., truck).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import cache_root, data_root
from .errors import (DataLayoutError, DataNotFoundError, DownloadError,
                     WHERE_TO_SET, CorruptImageError, not_found)
from .files import (atomic_save, balanced_subset, check_same_classes,
                    decode_file, fingerprint, load_cached,
                    scan_class_folders)

# DEVIATION (data): the shared copy is cifar-10-jpeg-q75, a lossy JPEG
# re-encoding (mean abs. error ~5.8/255); cifar-10-batches-py is exact.
CIFAR_FOLDERS = ("cifar-10-jpeg-q75", "cifar10", "cifar-10-batches-py")
SPLITS = ("train", "test")
HOW_TO_GET = (
    "Get CIFAR-10 either as an image folder <root>/cifar-10-jpeg-q75/"
    "{train,test}/<class>/*.jpg, or as torchvision's <root>/"
    "cifar-10-batches-py (python -c \"import torchvision; torchvision."
    "datasets.CIFAR10('<root>', download=True)\", or download=True).")


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


def _classify(path: Path) -> tuple[str, Path] | None:
    """("folder", dir) for an image folder, ("batches", dir), or None."""
    if (path / "batches.meta").is_file():
        return "batches", path
    if (path / "train").is_dir() or (path / "test").is_dir():
        return "folder", path
    if (path / "cifar-10-batches-py" / "batches.meta").is_file():
        return "batches", path / "cifar-10-batches-py"
    return None


def find_cifar10(root: str | Path | None = None) -> tuple[str, Path]:
    """Where CIFAR-10 is: (kind, path); DataNotFoundError lists places."""
    base = Path(root).expanduser() if root is not None else data_root()
    candidates = ([base] if root is not None else []) + [
        base / name for name in CIFAR_FOLDERS]
    for path in candidates:
        found = _classify(path) if path.is_dir() else None
        if found:
            return found
    if root is not None and base.is_dir():
        raise DataLayoutError(
            f"{base} exists but holds no CIFAR-10: expected train/<class>/"
            f"*.jpg and test/<class>/*.jpg in it, or one of the folders "
            f"{', '.join(CIFAR_FOLDERS)}. {HOW_TO_GET} Then {WHERE_TO_SET}.")
    raise not_found("CIFAR-10", candidates, HOW_TO_GET)


def load_cifar10(root: str | Path | None = None, split: str = "train",
                 download: bool = False, subset: int | None = None,
                 on_corrupt: str = "skip") -> CifarTensors:
    """One split ("train" or "test") of CIFAR-10 as uint8 tensors.

    ``subset``: a class-balanced, deterministic first-N (see
    ``files.balanced_subset``). ``on_corrupt``: "skip" drops undecodable
    files and lists them in ``.skipped``; "stop" raises
    CorruptImageError naming the file.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if on_corrupt not in ("skip", "stop"):
        raise ValueError(
            f"on_corrupt must be 'skip' or 'stop', got {on_corrupt!r}")
    try:
        kind, path = find_cifar10(root)
    except (DataNotFoundError, DataLayoutError):  # nothing usable there
        if not download:
            raise
        target = Path(root).expanduser() if root else data_root()
        kind, path = "batches", _download(target)
    if kind == "batches":
        data = _load_batches(path, split)
    else:
        data = _load_folder(path, split, subset, on_corrupt)
        subset = None  # already applied on the file list
    if subset is not None:
        keep = torch.tensor(balanced_subset(data.labels, subset))
        data.images, data.labels = data.images[keep], data.labels[keep]
    return data


def _download(target: Path) -> Path:
    """torchvision's download into ``target``; DownloadError if offline."""
    from torchvision.datasets import CIFAR10
    try:
        CIFAR10(str(target), train=True, download=True)
    except Exception as err:  # URLError, OSError, md5 mismatch ...
        raise DownloadError(
            f"could not download CIFAR-10 into {target} ({err}). This "
            f"machine may have no network. On a machine with internet, "
            f"download https://www.cs.toronto.edu/~kriz/cifar-10-python."
            f"tar.gz, extract it so that {target}/cifar-10-batches-py/"
            f"data_batch_1 exists, copy that folder here, then "
            f"{WHERE_TO_SET}.") from err
    return target / "cifar-10-batches-py"


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
                f"{len(skipped) - 1} more) in {split_dir}. Replace or "
                f"delete it, or pass on_corrupt='skip' to skip and count "
                f"it.", skipped[0])
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
