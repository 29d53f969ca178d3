"""Every check a training run makes before it loads any data.

``check_config`` adds to ``config.validate`` the values that only fail
later, deep inside a run (a negative worker count, an infinite rate, a
ten-patch test the image size cannot give); ``check_folder`` and
``check_cache`` make sure the run folder and the cache can be written.
Each failure is a ConfigError whose one line says what to do; the CLI
prints it and exits with status 2.
"""
from __future__ import annotations

import errno
import math
import os
import tempfile
from pathlib import Path

from alexnet_lib.config import ConfigError, TrainConfig, cache_root, validate

MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit


def check_config(cfg: TrainConfig) -> TrainConfig:
    """``validate(cfg)`` and the checks it leaves to later stages."""
    validate(cfg)
    o, d = cfg.optim, cfg.data
    checks = [
        (math.isfinite(o.lr), f"optim.lr must be a finite number "
         f"(paper §5: 0.01), got {o.lr} (--lr)"),
        (math.isfinite(o.weight_decay), f"optim.weight_decay must be a "
         f"finite number (paper: 5e-4), got {o.weight_decay} "
         f"(--weight-decay)"),
        (d.num_workers >= 0, f"data.num_workers must be >= 0 (0 loads "
         f"in the main process), got {d.num_workers} (--workers)"),
        (d.train_subset is None or d.train_subset >= 1,
         f"data.train_subset must be >= 1 image, got {d.train_subset} "
         f"(--train-subset; leave it out for the whole set)"),
        (d.val_subset is None or d.val_subset >= 1,
         f"data.val_subset must be >= 1 image, got {d.val_subset} "
         f"(--val-subset; leave it out for the whole set)"),
        (d.image_size >= 1, f"data.image_size must be >= 1 pixel "
         f"(paper: 224), got {d.image_size} (--image-size)"),
        (d.resize >= 1, f"data.resize must be >= 1 pixel (paper: 256), "
         f"got {d.resize} (--resize)"),
        (0 <= cfg.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, "
         f"got {cfg.seed} (--seed)"),
        (not (cfg.ten_crop and d.dataset == "cifar10"
              and d.image_size >= 32),
         "ten-crop testing needs patches smaller than the 32x32 CIFAR "
         "images: add --image-size 24 (cuda-convnet's CIFAR nets) or "
         "drop --ten-crop"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return cfg


def _writable(folder: Path, what: str, fix: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        reason = ("a file is in the way" if e.errno in
                  (errno.EEXIST, errno.ENOTDIR) else
                  e.strerror or str(e))
        raise ConfigError(f"cannot write to the {what} {folder} "
                          f"({reason}): {fix}") from None


def check_folder(out: str | os.PathLike) -> Path:
    """The run folder, created and writable, or a ConfigError."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder: pass "
                          f"--out with a folder for the run")
    _writable(out, "run folder", "pass --out with a writable folder")
    return out


def check_cache() -> Path:
    """The cache folder (decoded tensors, mean images), writable."""
    folder = cache_root()
    _writable(folder, "cache folder", "set ALEXNET_CACHE to a writable "
              "folder")
    return folder
