"""Where the ImageNet-format splits are read from: folders or shards.

data.format "folder": ``<root>/{train,val}/<synset>/<image>`` (ILSVRC,
Imagenette). "shards": ``root`` is the folder that

    python -m alexnet_lib prepare-shards --data DIR --out SHARDS

wrote for the training split (it holds shards.json). Validation images
come from data.val_root (``--val-data``): an ImageNet-format folder
(its val/) or the shards of the val split (prepare-shards --split val);
by default, the folder the training shards were made from. "auto":
shards when root holds a shards.json, else a folder. Either way index i
is the same image, so a seed gives the same batches (test_shards.py).
"""
from __future__ import annotations

from pathlib import Path

from ..config import ConfigError, DataConfig
from .errors import DataNotFoundError
from .files import check_same_classes
from .imagenet import ImageNetFolder, find_imagenet
from .shard_folder import ShardFolder
from .shards import MANIFEST


def data_format(d: DataConfig) -> str:
    """"folder" or "shards": what data.format says or auto finds."""
    if d.format != "auto":
        return d.format
    if d.root is not None and (Path(d.root).expanduser() /
                               MANIFEST).is_file():
        return "shards"
    return "folder"


def imagenet_root(d: DataConfig, profile: str) -> Path:
    """The ImageNet-format folder, searched for the run's profile (which
    may download Imagenette: alexnet_lib/data/locate.py)."""
    return find_imagenet(d.root, profile, d.download)


def open_train(d: DataConfig, profile: str) -> ImageNetFolder | ShardFolder:
    """The training split, untransformed, as data.format says."""
    if data_format(d) == "folder":
        return ImageNetFolder(imagenet_root(d, profile), "train", None,
                              d.on_corrupt, d.train_subset)
    if d.root is None:
        raise ConfigError("data.format 'shards' needs data.root (--data): "
                          "the folder prepare-shards wrote")
    return ShardFolder(Path(d.root).expanduser(), split="train",
                       subset=d.train_subset)


def open_val(d: DataConfig, train: ImageNetFolder | ShardFolder,
             transform=None) -> ImageNetFolder | ShardFolder:
    """The validation split that goes with ``train``."""
    root = _val_root(d, train)
    if (root / MANIFEST).is_file():
        val = ShardFolder(root, transform, "val", d.val_subset)
    else:
        val = ImageNetFolder(root, "val", transform, d.on_corrupt,
                             d.val_subset)
    # class i must be the same synset in both, or labels mean nothing
    check_same_classes(train.root, train.synsets, root, val.synsets)
    return val


def _val_root(d: DataConfig, train) -> Path:
    if d.val_root is not None:
        root = Path(d.val_root).expanduser()
        if not root.is_dir():
            raise DataNotFoundError(
                f"validation folder {root} does not exist: pass --val-data "
                f"(data.val_root) with an ImageNet-format folder holding "
                f"val/, or shards written with prepare-shards --split val")
        return root
    if isinstance(train, ImageNetFolder):
        return train.root
    if (train.source / "val").is_dir():
        return train.source
    raise DataNotFoundError(
        f"no validation images for the shards in {train.root}: "
        f"{train.source / 'val'}, beside the folder they were made from, "
        f"is not here. Pass --val-data (data.val_root): an "
        f"ImageNet-format folder holding val/, or shards written with "
        f"prepare-shards --split val")
