"""ImageNet-format folders: ILSVRC-2012 or Imagenette (§2).

Layout ``<root>/{train,val}/<synset>/<image>.JPEG``. Class index =
sorted synset, which is the standard ILSVRC class order. A corrupt or
unreadable image never ends an epoch silently: it is skipped (counted,
warned about by name) or stops the run, as ``on_corrupt`` says.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch

from .errors import CorruptImageError, DataError, WHERE_TO_SET
from .files import (balanced_subset, check_same_classes, decode_file,
                    fingerprint, scan_class_folders)
from .locate import CLASS_INDEX, fetch, find_dataset
from .sampler import apply_seeded


def find_imagenet(root: str | Path | None = None,
                  profile: str | None = None,
                  download: bool | None = False) -> Path:
    """The ImageNet-format folder (Imagenette or ILSVRC-2012): ``root``
    as given, else searched as ``locate.find_dataset`` says."""
    return find_dataset("imagenette", path=root, profile=profile,
                        download=download)


def download_imagenette(root: str | Path | None = None,
                        size: str = "320px") -> Path:
    """Fetch Imagenette with torchvision into ``root`` (needs internet)."""
    return fetch("imagenette", root, size)


def load_class_names(*folders: Path) -> dict[str, str]:
    """synset -> name from the first imagenet_class_index.json found."""
    for folder in folders:
        path = Path(folder) / CLASS_INDEX
        if path.is_file():
            index = json.loads(path.read_text())
            return {synset: name for synset, name in index.values()}
    return {}


class ImageNetFolder(torch.utils.data.Dataset):
    """Images of one split as (uint8 (3, H, W) or transform(img), label).

    ``dataset[i]`` uses the global torch RNG for random transforms;
    ``dataset[(i, seed)]`` (what ResumableBatchSampler yields) seeds
    them, so the augmentation of a sample is reproducible exactly.
    ``classes``: human names from imagenet_class_index.json in the data
    root when present, else the synsets (``synsets``).
    ``on_corrupt="skip"`` returns the next decodable image (index + 1,
    + 2, ...), warns with the file name and lists it in ``skipped``;
    "stop" raises CorruptImageError naming the file.
    """

    def __init__(self, root: str | Path, split: str = "train",
                 transform=None, on_corrupt: str = "skip",
                 subset: int | None = None):
        if on_corrupt not in ("skip", "stop"):
            raise ValueError(
                f"on_corrupt must be 'skip' or 'stop', got {on_corrupt!r}")
        self.root = find_imagenet(root)
        self.split, self.transform, self.on_corrupt = (
            split, transform, on_corrupt)
        split_dir = self.root / split
        self.synsets, files, labels = scan_class_folders(split_dir)
        other = self.root / ("val" if split == "train" else "train")
        if other.is_dir():
            check_same_classes(split_dir, self.synsets, other, sorted(
                e.name for e in os.scandir(other)
                if e.is_dir() and not e.name.startswith(".")))
        if subset is not None:
            keep = balanced_subset(labels, subset)
            files = [files[i] for i in keep]
            labels = [labels[i] for i in keep]
        self.files, self.labels = files, labels
        names = load_class_names(self.root, self.root.parent)
        self.classes = [names.get(s, s) for s in self.synsets]
        # Shared across DataLoader workers (fork or spawn): each flag is
        # only ever set, so concurrent writers cannot lose a count.
        self._bad = torch.zeros(len(files), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def fingerprint(self) -> str:
        """Cache key for derived files (the mean image)."""
        return fingerprint(self.root / self.split, self.files,
                           extra=f"imagenet|{self.split}")

    @property
    def skipped(self) -> list[str]:
        """Files skipped as corrupt so far (in any worker)."""
        return [str(self.files[i]) for i in self._bad.nonzero().flatten()]

    def name(self, index: int) -> str:
        """Where image ``index`` is, for messages (ShardFolder too)."""
        return self.files[index]

    def read(self, index: int) -> bytes:
        """The undecoded file; b"" if unreadable (decodes as corrupt)."""
        try:
            return Path(self.files[index]).read_bytes()
        except OSError:
            return b""

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """Decoded image and label at ``index``, skipping bad files."""
        n = len(self.files)
        for step in range(n):
            i = (index + step) % n
            if self._bad[i]:
                continue
            try:
                return decode_file(self.files[i]), self.labels[i]
            except CorruptImageError as err:
                if self.on_corrupt == "stop":
                    raise
                self._bad[i] = True
                warnings.warn(f"skipping corrupt image {self.files[i]} "
                              f"({err.reason}); using the next image "
                              f"instead", stacklevel=2)
        raise DataError(
            f"no image in {self.root / self.split} can be decoded "
            f"({n} tried). Re-extract the data set, then {WHERE_TO_SET}.")

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        img, label = self.load(index)
        if self.transform is None:
            return img, label
        return apply_seeded(self.transform, img, seed), label
