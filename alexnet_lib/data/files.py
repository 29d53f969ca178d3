"""Image folders on disk: class layout, decoding, subsets, caches.

Shared by the CIFAR-10 image folder and the ILSVRC/Imagenette folders,
which have the same ``<split>/<class>/<image>`` layout.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import torch

try:  # deprecated in torchvision 0.29 (TorchCodec replaces it)
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg
except ImportError:  # pragma: no cover - a future torchvision
    decode_jpeg = None

from .errors import DataLayoutError, WHERE_TO_SET, corrupt_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def scan_class_folders(split_dir: Path) -> tuple[list[str], list[str],
                                                    list[int]]:
    """Sorted class folders and their sorted images.

    Returns (classes, files, labels); label = index in sorted ``classes``,
    so the order is the same on every machine and every run. Paths are
    str: 50,000 Path objects alone cost ~0.3 s.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataLayoutError(
            f"split folder {split_dir} is missing. Expected the layout "
            f"{split_dir.parent}/<split>/<class>/<image files>; copy the "
            f"full data set there, then {WHERE_TO_SET}.")
    classes = sorted(e.name for e in os.scandir(split_dir)
                     if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataLayoutError(
            f"{split_dir} has no class folders. Expected "
            f"{split_dir}/<class>/<image files> (one folder per class, "
            f"e.g. train/cat/0000.jpg or train/n01440764/x.JPEG); "
            f"re-extract the data set, then {WHERE_TO_SET}.")
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        folder = os.path.join(split_dir, name)
        names = sorted(n for n in os.listdir(folder)
                       if n.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise DataLayoutError(
                f"class folder {split_dir / name} holds no images "
                f"(looked for {', '.join(IMAGE_SUFFIXES)}). Restore its "
                f"images or remove the folder, then {WHERE_TO_SET}.")
        files.extend(os.path.join(folder, n) for n in names)
        labels.extend([label] * len(names))
    return classes, files, labels


def check_same_classes(dir_a: Path, classes_a: list[str], dir_b: Path,
                       classes_b: list[str]) -> None:
    """Train and test must name the same classes, or labels disagree."""
    if classes_a == classes_b:
        return
    only_a = sorted(set(classes_a) - set(classes_b))
    only_b = sorted(set(classes_b) - set(classes_a))
    raise DataLayoutError(
        f"class folders differ between {dir_a} and {dir_b}: only in the "
        f"first: {only_a or '-'}; only in the second: {only_b or '-'}. "
        f"Both splits need the same class folders, or label i would mean "
        f"different classes; fix the copy, then {WHERE_TO_SET}.")


def balanced_subset(labels: list[int] | torch.Tensor, n: int) -> list[int]:
    """Indices of a class-balanced, deterministic first-``n`` subset.

    Round-robin over the classes: the first image (in file order) of
    every class, then the second of every class, ...; a class that runs
    short is passed over. So each class gets ``n // C`` or one more (the
    first classes), when it has that many. Indices come back sorted.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if n < 1:
        raise ValueError(f"subset must be >= 1 image, got {n}")
    if n >= len(labels):
        return list(range(len(labels)))
    classes, dense = torch.unique(labels, return_inverse=True)
    order = torch.argsort(dense, stable=True)  # class by class, in order
    counts = torch.bincount(dense)
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(labels)) - starts  # k-th of its class
    key = rank * len(classes) + dense  # round-robin position
    return sorted(torch.argsort(key)[:n].tolist())


# An image whose header declares more pixels than this is treated as
# corrupt (a "decompression bomb": a few KB that decode to gigabytes).
# PIL's own hard limit, so every decoder path agrees; 537 MB as RGB.
MAX_PIXELS = 2 * 89_478_485
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG frame headers


def declared_size(data) -> tuple[int, int] | None:
    """(width, height) from a JPEG or PNG header without decoding it;
    None for other formats or a header that cannot be parsed."""
    data = memoryview(data).cast("B")
    if bytes(data[:8]) == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return (int.from_bytes(data[16:20], "big"),
                int.from_bytes(data[20:24], "big"))
    if bytes(data[:2]) != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 <= n:
        if data[i] != 0xFF:  # stray bytes: libjpeg skips to a marker
            i += 1
            continue
        marker = data[i + 1]
        if marker in _SOF:  # FF Cx, length, precision, height, width
            return (int.from_bytes(data[i + 7:i + 9], "big"),
                    int.from_bytes(data[i + 5:i + 7], "big"))
        if marker == 0xDA:  # scan data before any frame header
            return None
        if marker in (0xFF, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2  # fill byte or no length
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _check_size(path, data: bytes) -> None:
    """CorruptImageError if ``data`` would decode to over MAX_PIXELS."""
    size = declared_size(data)
    if size is None and data[:2] != b"\xff\xd8":
        from PIL import Image  # another format: PIL reads its header
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore",
                                      Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    size = image.size
        except Image.DecompressionBombError:
            size = (MAX_PIXELS + 1, 1)
        except Exception:  # not an image: decoding will say so
            return
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise corrupt_image(
            path, f"its header declares {size[0]} x {size[1]} pixels, "
            f"over the limit of {MAX_PIXELS:,} (a decompression bomb?)")


def decode_file(path: str | Path, data: bytes | None = None) -> torch.Tensor:
    """Decode an image file to uint8 RGB (3, H, W); CorruptImageError.

    libjpeg-turbo through ``torchvision.io`` first (about 2x faster than
    PIL at 32x32); PIL as the fallback for formats it cannot read.
    Images declaring more than MAX_PIXELS are refused before decoding.
    """
    try:
        if data is None:
            data = Path(path).read_bytes()
    except OSError as err:
        raise corrupt_image(path, f"cannot read it ({err})") from err
    if not data:
        raise corrupt_image(path, "the file is empty")
    _check_size(path, data)
    if decode_jpeg is not None:
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                if data[:2] == b"\xff\xd8":
                    return decode_jpeg(raw, mode=ImageReadMode.RGB)
                return decode_image(raw, mode=ImageReadMode.RGB)
        except RuntimeError:
            pass  # e.g. CMYK or truncated: PIL decides below.
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = torch.tensor(bytearray(image.convert("RGB").tobytes()))
            w, h = image.size
    except UnidentifiedImageError as err:  # its text names a BytesIO
        raise corrupt_image(path, "not an image format that torchvision "
                            "or PIL can read") from err
    except Exception as err:  # PIL raises many types for bad files
        raise corrupt_image(path, f"cannot decode it ({err})") from err
    return array.view(h, w, 3).permute(2, 0, 1).contiguous()


def fingerprint(root: Path, files: list[str], extra: str = "") -> str:
    """Cache key from the folder, its file names and folder mtimes.

    Directory mtimes change when a file is added, removed or renamed;
    this costs far less than a stat() of every file (which would also
    catch a file rewritten in place).
    """
    # os.fsencode: file names need not be UTF-8 (the same bytes as
    # str.encode() for those that are, so keys do not change)
    h = hashlib.sha1(os.fsencode(f"{Path(root).resolve()}|{len(files)}|"
                                 f"{extra}|"))
    for folder in sorted({os.path.dirname(f) for f in files}):
        h.update(os.fsencode(f"{folder}:{os.stat(folder).st_mtime_ns};"))
    h.update(os.fsencode("\n".join(files)))
    return h.hexdigest()[:16]


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file, then rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_cached(path: Path):
    """The cached object at ``path``, or None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        # mmap: pages are read when used, so a load takes milliseconds.
        return torch.load(path, map_location="cpu", weights_only=True,
                          mmap=True)
    except Exception:  # a stale or truncated cache is rebuilt
        return None
