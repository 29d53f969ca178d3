"""Where each data set comes from: ``find_dataset`` alone decides.

The CLI, the notebooks and the tests all search in this order:

1. an explicit path (``--data``, ``root=``): there and nowhere else;
2. the folder named by ``$ALEXNET_DATA``;
3. the default data folder ``~/.cache/alexnet_lib/data``;
4. the small real sample inside the package (``SAMPLE_ROOT``): for the
   ``ci`` profile, and always for the sample photos and the class index.

When CIFAR-10 or Imagenette is in none of them, the ``cpu`` and ``gpu``
profiles download it with torchvision (with a progress bar) into
``data_root()``; Imagenette at the size the profile needs. The ``ci``
profile never downloads.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config import (DATA_ENV, PROFILE_ENV, data_root, default_data_root,
                      get_profile)
from .errors import DataLayoutError, DataNotFoundError, DownloadError

SAMPLE_ROOT = Path(__file__).resolve().parent.parent / "sample"
DATASETS = ("cifar10", "imagenette", "imagenet-samples", "class-index",
            "mnist")
FETCHABLE = ("cifar10", "imagenette", "mnist")  # torchvision fetches these
TITLES = {"cifar10": "CIFAR-10", "imagenette": "Imagenette",
          "imagenet-samples": "The ImageNet sample photos",
          "class-index": "The ImageNet class index", "mnist": "MNIST"}
# Exact batches first: the JPEG copy is lossy (cifar.py).
CIFAR_FOLDERS = ("cifar-10-batches-py", "cifar10", "cifar-10-jpeg-q75")
# MNIST: the four original IDX .gz files (LeCun's names), in "mnist" or
# where torchvision puts them (MNIST/raw); the sample holds an .npz.
MNIST_FOLDERS = ("mnist", "MNIST/raw")
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_SMALL = ("imagenette2-160", "imagenette2-224", "imagenette2-320",
          "imagenette2", "imagenet", "ILSVRC2012")
# Per profile, the ImageNet-format folders it can use, best first. The
# ci/cpu runs take 112 px patches of 128 px images, so 160 px suffices;
# gpu runs take 224 of 256 and skip the 160 px release.
IMAGENETTE_FOLDERS = {
    "ci": _SMALL, "cpu": _SMALL,
    "gpu": ("imagenette2-320", "imagenette2", "imagenette2-224",
            "imagenet", "ILSVRC2012"),
    "imagenet": ("imagenet", "ILSVRC2012", "imagenette2", "imagenette2-320",
                 "imagenette2-224"),
}
DOWNLOAD_SIZE = {"cpu": "160px", "gpu": "320px"}  # profiles that fetch
IMAGENETTE_SIZES = ("160px", "320px", "full")  # torchvision's sizes
SAMPLES_FOLDER = "imagenet-samples"
CLASS_INDEX = "imagenet_class_index.json"


def mnist_kind(path: Path) -> str | None:
    """"idx" (the four original files), "sample" (the shipped
    mnist.npz) or None."""
    if all((path / f).is_file() for f in MNIST_FILES):
        return "idx"
    if (path / "mnist.npz").is_file():
        return "sample"
    return None


def fetch_command(name: str, profile: str = "cpu") -> str:
    """The one command that downloads ``name``."""
    if name == "imagenette":
        return (f"python -m alexnet_lib fetch imagenette --size "
                f"{DOWNLOAD_SIZE.get(profile, '160px')}")
    return f"python -m alexnet_lib fetch {name}"


def cifar_kind(path: Path) -> str | None:
    """"sample" (the shipped .npz), "batches" (torchvision's
    cifar-10-batches-py), "folder" (train/<class>/*.jpg) or None."""
    if (path / "train.npz").is_file() and (path / "test.npz").is_file():
        return "sample"
    if (path / "batches.meta").is_file():
        return "batches"
    if (path / "train").is_dir() or (path / "test").is_dir():
        return "folder"
    return None


def _look(name: str, root: Path, explicit: bool, profile: str
          ) -> Path | None:
    """The folder (or file) of ``name`` in ``root``, or None; an
    explicit path may also be the data set's own folder."""
    if name == "cifar10":
        for path in ([root] if explicit else []) + [
                root / n for n in CIFAR_FOLDERS]:
            if path.is_dir() and cifar_kind(path):
                return path
    elif name == "imagenette":
        if explicit and ((root / "train").is_dir()
                         or (root / "val").is_dir()):
            return root
        for n in IMAGENETTE_FOLDERS.get(profile, _SMALL):
            if (root / n / "train").is_dir():
                return root / n
    elif name == "mnist":
        for path in ([root] if explicit else []) + [
                root / n for n in MNIST_FOLDERS]:
            if path.is_dir() and mnist_kind(path):
                return path
    elif name == "imagenet-samples":
        for path in ([root] if explicit else []) + [root / SAMPLES_FOLDER]:
            if path.is_dir() and any(path.glob("*.JPEG")):
                return path
    elif explicit and root.is_file():
        return root
    elif (root / CLASS_INDEX).is_file():
        return root / CLASS_INDEX
    return None


def search_roots() -> list[Path]:
    """Steps 2 and 3 of the search: $ALEXNET_DATA, the default folder."""
    roots = [data_root(), default_data_root()]
    return list(dict.fromkeys(roots))  # once each, in order


def resolve_profile(profile: str | None) -> str:
    """``profile``, else $ALEXNET_PROFILE, else "cpu"; checked."""
    return get_profile(profile or os.environ.get(PROFILE_ENV, "cpu")).name


def find_dataset(name: str, *, path: str | Path | None = None,
                 profile: str | None = None,
                 download: bool | None = None) -> Path:
    """The folder of data set ``name`` (the file, for "class-index").

    ``name``: "cifar10", "imagenette" (any ImageNet-format folder, see
    IMAGENETTE_FOLDERS), "imagenet-samples" or "class-index".
    ``download``: None downloads a missing CIFAR-10 / Imagenette into
    data_root() for the cpu and gpu profiles only; into an explicit
    ``path`` only when True; the ci profile never downloads. Raises DataNotFoundError saying what is
    missing, where it looked and how to get it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of "
                         f"{', '.join(DATASETS)}")
    profile = resolve_profile(profile)
    fetch_it = name in FETCHABLE and profile != "ci" and (
        profile in DOWNLOAD_SIZE if download is None else download)
    if path is not None:
        root = Path(path).expanduser()
        found = _look(name, root, True, profile)
        if found is not None:
            return found
        if fetch_it and download:  # into an explicit path if asked
            return _download(name, root, profile, [root])
        return _explicit_missing(name, root, profile)
    roots = search_roots()
    for root in roots:
        found = _look(name, root, False, profile) if root.is_dir() else None
        if found is not None:
            return found
    if name not in FETCHABLE or profile == "ci":
        found = _look(name, SAMPLE_ROOT, False, profile)
        if found is not None:
            return found
        roots.append(SAMPLE_ROOT)
    if fetch_it:
        return _download(name, data_root(), profile, roots)
    reason = (f"the {profile} profile downloads nothing"
              if download is None or profile == "ci" else "download=False")
    raise DataNotFoundError(missing_message(name, roots, profile, reason))


def _explicit_missing(name: str, root: Path, profile: str) -> Path:
    """An explicit path without the data set: a folder the loaders can
    explain (Imagenette), a layout error (CIFAR-10) or not found."""
    if name == "imagenette" and root.is_dir():
        return root  # scan_class_folders says what is wrong in it
    if name == "cifar10" and root.is_dir():
        raise DataLayoutError(
            f"{root} exists but holds no CIFAR-10: expected train/<class>/"
            f"*.jpg and test/<class>/*.jpg in it, or one of the folders "
            f"{', '.join(CIFAR_FOLDERS)}. Fetch it with `"
            f"{fetch_command(name)}`, or pass --data (root=) with the "
            f"folder that holds it.")
    raise DataNotFoundError(missing_message(name, [root], profile,
                                            "download is off"))


def missing_message(name: str, looked: list[Path], profile: str,
                    reason: str) -> str:
    """One paragraph: what is missing, where we looked, why nothing was
    downloaded, the command that fetches it, how to point at a copy."""
    if name == "cifar10":
        wanted = " or ".join(CIFAR_FOLDERS)
    elif name == "mnist":
        wanted = " or ".join(MNIST_FOLDERS)
    elif name == "imagenette":
        wanted = " or ".join(IMAGENETTE_FOLDERS.get(profile, _SMALL))
    else:
        wanted = SAMPLES_FOLDER if name == "imagenet-samples" else CLASS_INDEX
    where = ", ".join(str(p) for p in looked)
    if name in FETCHABLE:
        get = f"Fetch it with `{fetch_command(name, profile)}`"
    else:
        get = ("Reinstall alexnet_lib, whose package holds it in "
               "alexnet_lib/sample")
    return (f"{TITLES[name]} not found: looked for {wanted} in {where} "
            f"({reason}). {get}, or point the project at a copy you "
            f"have: set {DATA_ENV}=/folder/that/holds/it or pass "
            f"--data /folder/that/holds/it.")


def _download(name: str, target: Path, profile: str,
              looked: list[Path]) -> Path:
    try:
        return fetch(name, target, DOWNLOAD_SIZE.get(profile, "160px"))
    except DownloadError as err:
        cause = err.__cause__ or err
        reason = (f"downloading it into {target} failed: "
                  f"{type(cause).__name__}: {cause}; this machine may be "
                  f"offline")
        raise DataNotFoundError(missing_message(
            name, looked, profile, " ".join(reason.split()))) from err


def fetch(name: str, root: str | Path | None = None,
          size: str = "160px") -> Path:
    """Download CIFAR-10, MNIST or Imagenette (``size``: 160px, 320px, full)
    with torchvision into ``root`` (default data_root()); returns its
    folder. Already there: checked, not downloaded again."""
    from torchvision import datasets
    if name not in FETCHABLE:
        raise ValueError(f"cannot fetch {name!r}; choose one of "
                         f"{', '.join(FETCHABLE)}")
    if name == "imagenette" and size not in IMAGENETTE_SIZES:
        raise ValueError(f"Imagenette size must be one of "
                         f"{', '.join(IMAGENETTE_SIZES)}, got {size!r}")
    root = Path(root).expanduser() if root is not None else data_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        if name == "cifar10":
            datasets.CIFAR10(str(root), train=True, download=True)
            return root / "cifar-10-batches-py"
        if name == "mnist":  # the four IDX files, in root/MNIST/raw
            datasets.MNIST(str(root), train=True, download=True)
            return root / "MNIST" / "raw"
        datasets.Imagenette(str(root), split="train", size=size,
                            download=True)
    except Exception as err:  # URLError, OSError, md5 mismatch ...
        raise DownloadError(
            f"could not download {TITLES[name]} into {root} ({err}). "
            f"This machine may be offline: on one with internet run `"
            f"python -m alexnet_lib fetch {name}"
            f"{' --size ' + size if name == 'imagenette' else ''}`, copy "
            f"the folder it makes into {root}, or point "
            f"{DATA_ENV} (or --data) at the folder that holds it."
        ) from err
    return root / ("imagenette2" if size == "full" else
                  f"imagenette2-{size[:-2]}")


def imagenette_layout(path: Path) -> str:
    """Which copy an ImageNet-format folder is, from its first train
    image of each class: "224px-squashed" (every image 224x224, aspect
    not kept), "160px" / "320px" (official, shorter side), or "full"."""
    from PIL import Image
    sizes = []
    train = Path(path) / "train"
    for folder in sorted(p for p in train.iterdir() if p.is_dir()):
        first = min((f for f in folder.iterdir() if f.is_file()),
                    default=None)
        if first is not None:
            with Image.open(first) as img:  # reads the header only
                sizes.append(img.size)
    if sizes and all(s == (224, 224) for s in sizes):
        return "224px-squashed"
    shorter = [min(s) for s in sizes]
    for side in (160, 320):
        if shorter and shorter.count(side) * 2 > len(shorter):
            return f"{side}px"
    return "full"


def _count(split_dir: Path) -> int:
    if not split_dir.is_dir():
        return 0
    return sum(1 for d in os.scandir(split_dir) if d.is_dir()
               for f in os.scandir(d.path) if f.is_file())


def _in_sample(path: Path) -> bool:
    return Path(path).resolve().is_relative_to(SAMPLE_ROOT.resolve())


def describe_dataset(name: str, path: str | Path) -> str:
    """One short line for notebook headers: which copy, how many
    images; never a path."""
    import numpy as np
    path = Path(path)
    sample = _in_sample(path)
    if name == "cifar10":
        kind = cifar_kind(path)
        if kind == "sample":
            with np.load(path / "test.npz") as t, \
                    np.load(path / "train.npz") as r:
                n_test, n_train = len(t["labels"]), len(r["labels"])
            return (f"CIFAR-10, shipped sample ({n_test:,} exact test / "
                    f"{n_train:,} train images)")
        if kind == "batches":
            return ("CIFAR-10, torchvision's exact batches (50,000 train / "
                    "10,000 test)")
        copy = ("JPEG q75 copy" if path.name == "cifar-10-jpeg-q75"
                else "image folder")
        return (f"CIFAR-10, {copy} ({_count(path / 'train'):,} train / "
                f"{_count(path / 'test'):,} test)")
    if name == "imagenette":
        layout = imagenette_layout(path)
        copy = {"224px-squashed": "224 px copy", "160px": "160 px release",
                "320px": "320 px release", "full": "full-size release"
                }[layout]
        counts = (f"{_count(path / 'train'):,} train / "
                  f"{_count(path / 'val'):,} val")
        if sample:
            return f"Imagenette, shipped sample ({counts}, {copy})"
        return f"Imagenette, {copy} ({counts})"
    if name == "mnist":
        if mnist_kind(path) == "sample":
            with np.load(path / "mnist.npz") as z:
                n_train, n_test = len(z["train_labels"]), len(
                    z["test_labels"])
            return (f"MNIST, shipped sample ({n_train:,} train / "
                    f"{n_test:,} test images)")
        return "MNIST, the original IDX files (60,000 train / 10,000 test)"
    suffix = ", shipped sample" if sample else ""
    if name == "imagenet-samples":
        return (f"ImageNet sample photos ({len(list(path.glob('*.JPEG')))}"
                f" photos{suffix})")
    if name == "class-index":
        import json
        n = len(json.loads(path.read_text()))
        return f"ImageNet class index ({n:,} classes{suffix})"
    raise ValueError(f"unknown data set {name!r}; choose one of "
                     f"{', '.join(DATASETS)}")
