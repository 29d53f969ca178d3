"""Rebuild the small real sample shipped in alexnet_lib/sample/.

    python tools/make_sample.py --src DATA --out alexnet_lib/sample

DATA is a full data folder laid out as the README's data table says
(cifar-10-exact-prefix/, cifar-10-jpeg-q75/, imagenette2-224/,
imagenet-samples/, imagenet_class_index.json, mnist/). The output is the same
bytes on every run: files are copied as they are, and the .npz archives
are written with fixed zip timestamps. SOURCES.md in --out is kept.

What goes in, and why these sizes (the ci profile's largest needs):
- CIFAR-10 test: the 1,017 exact-pixel test images (the ci plans score
  at most 500, class-balanced), grouped by class in batch order;
- CIFAR-10 train: the first 200 JPEGs of each class, byte for byte
  (§3.1's ci plan trains on 2,000), so a subset of N <= 2,000 is the
  same images as load_cifar10(subset=N) on the full folder;
- Imagenette (224 px copy): the first 50 train / 10 val images of each
  class by file name (§2 averages 500 for its mean image; the runs
  take 160 / 50);
- MNIST: the first 100 training and 50 test digits of each class, in
  file order (the ci plan of the LeNet-5 chapter trains on 1,000 and
  tests on 500), as uint8 arrays (28x28, unpadded);
- every ImageNet sample photo (§2 and §5 read the whole folder) and the
  class index.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alexnet_lib.data.mnist import SPLIT_FILES, read_idx  # noqa: E402

CIFAR_TRAIN_PER_CLASS = 200
IMAGENETTE_PER_CLASS = {"train": 50, "val": 10}
MNIST_PER_CLASS = {"train": 100, "test": 50}
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so re-runs give equal bytes
PARTS = ("cifar10", "imagenette2-224", "imagenet-samples",
         "imagenet_class_index.json", "mnist")


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed timestamps (np.load reads it)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def cifar_test(src: Path, classes: list[str]) -> dict[str, np.ndarray]:
    """The exact test images, grouped by class, each class in batch
    order (the order of the q75 folder's test/<class>/NNNN.jpg)."""
    exact = np.load(src / "cifar-10-exact-prefix" / "test_batch.npz")
    labels = exact["labels"].astype(np.int64)
    index = np.argsort(labels, kind="stable")  # (N,) rows in the batch
    return {"data": exact["data"][index],  # (N, 3072) R, G, B planes
            "labels": labels[index], "index": index.astype(np.int64),
            "classes": np.array(classes)}


def cifar_train(src: Path, classes: list[str]) -> dict[str, np.ndarray]:
    """The first JPEGs of each class, concatenated; image i is
    jpeg[offsets[i]:offsets[i + 1]]."""
    blobs, labels, files = [], [], []
    for label, name in enumerate(classes):
        for k in range(CIFAR_TRAIN_PER_CLASS):
            rel = f"train/{name}/{k:04d}.jpg"
            blobs.append((src / "cifar-10-jpeg-q75" / rel).read_bytes())
            labels.append(label)
            files.append(rel)
    offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
    return {"jpeg": np.frombuffer(b"".join(blobs), dtype=np.uint8),
            "offsets": offsets, "labels": np.array(labels, np.int64),
            "files": np.array(files), "classes": np.array(classes)}


def mnist_sample(src: Path) -> dict[str, np.ndarray]:
    """The first MNIST_PER_CLASS digits of each class of each split, in
    file order: ``<split>_images`` (N, 28, 28) uint8, ``<split>_labels``
    and ``<split>_index`` (each digit's position in its split)."""
    arrays = {}
    for split, per_class in MNIST_PER_CLASS.items():
        image_file, label_file = SPLIT_FILES[split]
        images = read_idx(src / image_file)
        labels = read_idx(src / label_file).astype(np.int64)
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[
            :per_class] for c in range(10)]))
        arrays.update({f"{split}_images": images[keep],
                       f"{split}_labels": labels[keep],
                       f"{split}_index": keep.astype(np.int64)})
    return arrays


def copy_imagenette(src: Path, out: Path) -> None:
    for split, n in IMAGENETTE_PER_CLASS.items():
        for synset in sorted(p.name for p in (src / split).iterdir()
                             if p.is_dir()):
            target = out / split / synset
            target.mkdir(parents=True)
            for f in sorted((src / split / synset).iterdir())[:n]:
                shutil.copyfile(f, target / f.name)


def make_sample(src: Path, out: Path) -> dict[str, int]:
    """Write the sample into ``out``; returns bytes per part."""
    out.mkdir(parents=True, exist_ok=True)
    for part in PARTS:  # start clean, keep SOURCES.md
        path = out / part
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    classes = sorted(p.name for p in
                     (src / "cifar-10-jpeg-q75" / "train").iterdir())
    (out / "cifar10").mkdir()
    write_npz(out / "cifar10" / "test.npz", cifar_test(src, classes))
    write_npz(out / "cifar10" / "train.npz", cifar_train(src, classes))
    copy_imagenette(src / "imagenette2-224", out / "imagenette2-224")
    (out / "imagenet-samples").mkdir()
    for photo in sorted((src / "imagenet-samples").glob("*.JPEG")):
        shutil.copyfile(photo, out / "imagenet-samples" / photo.name)
    shutil.copyfile(src / "imagenet_class_index.json",
                    out / "imagenet_class_index.json")
    (out / "mnist").mkdir()
    write_npz(out / "mnist" / "mnist.npz", mnist_sample(src / "mnist"))
    return {part: sum(f.stat().st_size for f in
                      ((out / part).rglob("*") if (out / part).is_dir()
                       else [out / part]) if f.is_file())
            for part in PARTS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--src", required=True, type=Path,
                   help="full data folder (see the README's data table)")
    p.add_argument("--out", required=True, type=Path,
                   help="sample folder to (re)write")
    args = p.parse_args(argv)
    missing = [name for name in ("cifar-10-exact-prefix",
                                 "cifar-10-jpeg-q75", "imagenette2-224",
                                 "imagenet-samples",
                                 "imagenet_class_index.json", "mnist")
               if not (args.src / name).exists()]
    if missing:
        print(f"error: {args.src} lacks {', '.join(missing)}: pass --src "
              f"with the full data folder", file=sys.stderr)
        return 2
    sizes = make_sample(args.src, args.out)
    for part, size in sizes.items():
        print(f"{part:<28}{size:>12,} bytes")
    print(f"{'total':<28}{sum(sizes.values()):>12,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
