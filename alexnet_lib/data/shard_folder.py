"""Random access to the shards prepare-shards writes (shards.py).

``ShardFolder`` is an ImageNetFolder over shards: same indices, same
seeded transforms, so training reads either (sources.py). The manifest
is checked first: an unfinished or damaged set says to rerun
prepare-shards instead of failing inside a DataLoader worker.
"""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .files import balanced_subset, decode_file
from .imagenet import load_class_names
from .sampler import apply_seeded
from .shards import MANIFEST

# Open shard files per process: a shuffled epoch touches every shard
# (1282 for ILSVRC-2012 train), more than the usual `ulimit -n` of 1024.
MAX_OPEN = 64


def read_manifest(root: str | Path, split: str | None = None) -> dict:
    """shards.json of ``root``, checked: finished, every shard whole.

    ``split``: refuse shards of another split (training on val).
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} not found: write the shards first "
                        f"(python -m alexnet_lib prepare-shards)")
    manifest = json.loads(path.read_text())
    missing = manifest["images"] - len(manifest.get("corrupt", [])) - \
        sum(e["count"] for e in manifest["shards"].values())
    if "finished" not in manifest or missing:
        raise DataError(f"the shards in {root} are unfinished: "
                        f"run prepare-shards again to complete them")
    for name, entry in sorted(manifest["shards"].items()):
        shard = root / name  # e.g. a copy to local disk cut short
        if not shard.is_file() or shard.stat().st_size != entry["bytes"]:
            raise DataError(
                f"shard {shard} is missing or not the {entry['bytes']} "
                f"bytes shards.json records: copy it again, or run "
                f"prepare-shards again to rewrite it")
    if split is not None and manifest["split"] != split:
        raise DataError(
            f"{root} holds the {manifest['split']} split, not {split}: "
            f"pass the shards written with prepare-shards --split {split}")
    return manifest


def _scan(path: Path, s: int) -> tuple[np.ndarray, ...]:
    """(keys, shard, offset, size, label) of one shard's images."""
    keys, where, labels = [], [], {}
    with tarfile.open(path) as tar:
        for m in tar:
            key, _, ext = m.name.partition(".")
            if ext == "jpg":
                keys.append(key)
                where.append((m.offset_data, m.size))
            elif ext == "cls":
                labels[key] = int(tar.extractfile(m).read())
    where = np.array(where, dtype=np.int64).reshape(-1, 2)
    return (np.array([k.encode() for k in keys], dtype=np.bytes_),
            np.full(len(keys), s, np.int32),
            where[:, 0], where[:, 1].astype(np.int32),
            np.array([labels[k] for k in keys], dtype=np.int64))


class ShardFolder(torch.utils.data.Dataset):
    """(uint8 image (3, H, W) or transform(image), label) from shards.

    Index i is the image ImageNetFolder has at i (class, then file
    name; not the shuffled order the shards hold), so one sampler and
    its seeds give the same batches from either. (Keys drop the
    extension: "a-b.JPEG" sorts before "a.JPEG", key "x_a" before
    "x_a-b"; ILSVRC's names, n01440764_10026.JPEG, sort alike.)
    ``dataset[(i, seed)]`` seeds the transform as ImageNetFolder does;
    ``subset``: the same class-balanced first N. Random access: the
    tar headers are read once to find each image; each process opens
    its own file handles (DataLoader workers included, at most
    MAX_OPEN), so no image is held in memory.
    """
    on_corrupt = "stop"  # verified when written: now a damaged shard

    def __init__(self, root: str | Path, transform=None,
                 split: str | None = None, subset: int | None = None):
        self.root, self.transform = Path(root), transform
        manifest = read_manifest(self.root, split)
        self.split, self.synsets = manifest["split"], manifest["classes"]
        self.source = Path(manifest["source"])  # the folder it came from
        self.skipped = manifest["corrupt"]  # left out when written
        names = load_class_names(self.root, self.root.parent, self.source,
                                 self.source.parent)
        self.classes = [names.get(s, s) for s in self.synsets]
        self.shards = sorted(manifest["shards"])
        # The index: numpy arrays, 24 bytes per image + the key (15 for
        # ILSVRC's n01440764_10026): ~50 MB for 1.28 M images (Python
        # tuples and str: ~310 MB, copied into every worker as reference
        # counts touch them). Building it reads 2 tar headers per image:
        # 0.045 s per shard of 1000 from the page cache, so about a
        # minute per process for ILSVRC-2012 train (more from cold disk).
        parts = [_scan(self.root / name, s)
                 for s, name in enumerate(self.shards)]
        keys, shard, offset, size, label = (np.concatenate(a)
                                            for a in zip(*parts))
        order = np.lexsort((keys, label))  # by label, then by key
        if subset is not None:
            order = order[balanced_subset(label[order], subset)]
        self.keys, self._shard, self._offset, self._size = (
            keys[order], shard[order], offset[order], size[order])
        self.labels = label[order]  # int64: as torch labels are
        self._files: dict = {}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def fingerprint(self) -> str:
        """Cache key for derived files (the mean image)."""
        h = hashlib.sha1(f"{self.root.resolve()}|shards|{self.split}|"
                         .encode())
        for a in (self.keys, self._size, self.labels):
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    def key(self, index: int) -> str:
        """``<synset>_<file stem>`` of image ``index``."""
        return self.keys[index].decode()

    def name(self, index: int) -> str:
        return f"{self.root / self.shards[self._shard[index]]}:" \
               f"{self.key(index)}.jpg"

    def read(self, index: int) -> bytes:
        """The stored JPEG of image ``index``, undecoded."""
        s = int(self._shard[index])
        handles = self._files.setdefault(os.getpid(), {})
        f = handles.pop(s, None)  # put back last: the oldest go first
        if f is None:
            if len(handles) >= MAX_OPEN:
                handles.pop(next(iter(handles))).close()
            f = open(self.root / self.shards[s], "rb")
        handles[s] = f
        f.seek(int(self._offset[index]))
        return f.read(int(self._size[index]))

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        return (decode_file(self.name(index), self.read(index)),
                int(self.labels[index]))

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        img, label = self.load(index)
        if self.transform is None:
            return img, label
        return apply_seeded(self.transform, img, seed), label
