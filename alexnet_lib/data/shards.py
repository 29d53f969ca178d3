"""A split written once as tar shards of images resized to 256 (§2).

    python -m alexnet_lib prepare-shards --data DIR --out SHARDS

ImageNet's training JPEGs average ~500x375 and ~110 KB; decoding them
is the slowest part of an epoch. Resizing the shorter side to 256 once
(the first step of §2's pipeline anyway) cuts decode work ~3x, and a few
hundred large files read sequentially instead of 1.28 million small
ones. Layout, readable by WebDataset: ``<split>-NNNNNN.tar`` files whose
members are ``<key>.jpg`` (the image) and ``<key>.cls`` (the class index
as decimal text), key = ``<synset>_<file stem>``; ``shards.json`` lists
the settings, the finished shards and every corrupt file skipped.

Interrupted? Run the same command again: finished shards (listed in
shards.json, same size on disk) are kept, any other is rewritten.
ShardFolder (shard_folder.py) reads them; ``train --data SHARDS``
trains from them (sources.py).
"""
from __future__ import annotations

import json
import os
import tarfile
import time
import warnings
from io import BytesIO
from pathlib import Path

import torch
from torchvision.io import encode_jpeg
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from ..config import ConfigError
from .errors import CorruptImageError, DataError
from .files import decode_file
from .imagenet import ImageNetFolder

MANIFEST = "shards.json"
FORMAT = "alexnet_lib.shards"


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:06d}.tar"


def _key(path: str) -> str:
    # WebDataset splits member names at the first dot: none in the key
    synset = os.path.basename(os.path.dirname(path))
    stem = os.path.basename(path).split(".")[0]
    return f"{synset}_{stem}"


def shard_bytes(path: str, resize: int, quality: int) -> bytes:
    """The JPEG stored for ``path``; CorruptImageError if undecodable.

    Every image is decoded (that is the verification). One whose
    shorter side is at most ``resize`` and that is already a JPEG is
    stored byte for byte, so it decodes to exactly the original pixels.
    """
    data = Path(path).read_bytes() if os.path.exists(path) else b""
    img = decode_file(path, data)  # (3, H, W) uint8, or raises
    if min(img.shape[-2:]) <= resize and data[:2] == b"\xff\xd8":
        return data
    if min(img.shape[-2:]) > resize:  # ResizeCenterCrop's resize step
        img = F.resize(img, [resize], antialias=True)
    # DEVIATION (engineering): re-encoding as JPEG (quality 95 by
    # default) changes pixels slightly (about one level of 255 on
    # average, measured in tests/test_shards.py); the paper decoded the
    # original files.
    with warnings.catch_warnings():  # torchvision 0.29 deprecates it
        warnings.simplefilter("ignore", DeprecationWarning)
        return encode_jpeg(img, quality=quality).numpy().tobytes()


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, BytesIO(data))


def _manifest(out: Path, settings: dict) -> dict:
    """The manifest of ``out``; refuses one made with other settings."""
    path = out / MANIFEST
    if not path.is_file():
        return {"format": FORMAT, **settings, "shards": {}}
    old = json.loads(path.read_text())
    # manifests before the absolute source held it as given
    old["source"] = os.path.abspath(old.get("source", ""))
    differ = {k: (old.get(k), v) for k, v in settings.items()
              if old.get(k) != v}
    if old.get("format") != FORMAT or differ:
        raise DataError(
            f"{out} already holds shards made with other settings "
            f"(ours vs theirs: {differ or 'not an alexnet_lib manifest'}): "
            f"use a new --out folder, or the same settings to resume")
    return old


def prepare_shards(root: str | Path, out: str | Path, split: str = "train",
                   shard_size: int = 1000, resize: int = 256,
                   quality: int = 95, subset: int | None = None,
                   seed: int = 0, progress: bool = True) -> dict:
    """Write ``split`` of the ImageNet-format folder ``root`` as shards.

    Images are shuffled once (``seed``) so every shard mixes classes, as
    streaming readers need. Returns the manifest (also in shards.json).
    """
    if shard_size < 1 or not 1 <= quality <= 100 or resize < 1:
        raise ConfigError(f"need shard_size >= 1, 1 <= quality <= 100 and "
                         f"resize >= 1; got {shard_size}, {quality}, "
                         f"{resize}")
    folder = ImageNetFolder(root, split, None, "skip", subset)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    order = torch.randperm(len(folder),
                           generator=torch.Generator().manual_seed(seed))
    # absolute: train finds the val split beside it from anywhere
    settings = {"source": os.path.abspath(folder.root), "split": split,
                "images": len(folder), "shard_size": shard_size,
                "resize": resize, "quality": quality, "seed": seed,
                "classes": folder.synsets}
    manifest = _manifest(out, settings)
    for stale in out.glob(f"{split}-*.tar.tmp"):  # cut short last time
        stale.unlink()
    n_shards = -(-len(folder) // shard_size)
    done = manifest["shards"]
    for name, entry in list(done.items()):  # keep only intact shards
        if not (out / name).is_file() or \
                (out / name).stat().st_size != entry["bytes"]:
            del done[name]
    bar = tqdm(total=len(folder), disable=not progress, unit="img",
               desc=f"shards of {split}", dynamic_ncols=True,
               initial=sum(min(shard_size, len(folder) - k * shard_size)
                           for k in range(n_shards)
                           if shard_name(split, k) in done))
    for k in range(n_shards):
        name = shard_name(split, k)
        if name in done:
            continue
        tmp = out / (name + ".tmp")
        count, corrupt = 0, []
        with tarfile.open(tmp, "w") as tar:
            for i in order[k * shard_size:(k + 1) * shard_size].tolist():
                path = folder.files[i]
                try:
                    data = shard_bytes(path, resize, quality)
                except CorruptImageError as err:
                    corrupt.append(path)
                    warnings.warn(f"skipping corrupt image {path}: {err}",
                                  stacklevel=2)
                else:
                    key = _key(path)
                    _add(tar, key + ".jpg", data)
                    _add(tar, key + ".cls", str(folder.labels[i]).encode())
                    count += 1
                bar.update(1)
        os.replace(tmp, out / name)  # a shard appears whole or not at all
        done[name] = {"count": count, "bytes": (out / name).stat().st_size,
                      "corrupt": corrupt}
        _write_json(out / MANIFEST, manifest)
    bar.close()
    manifest["corrupt"] = sorted(p for e in done.values()
                                 for p in e["corrupt"])
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_json(out / MANIFEST, manifest)
    return manifest
