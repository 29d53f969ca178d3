"""Checkpoints that survive crashes and load with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and
dicts: model, optimiser and schedule state, epoch, step inside the epoch,
global step, every RNG state, the run's config and the model's name and
options. It is written to a temporary file in the same folder, flushed,
fsync'ed and renamed over the old one (``os.replace`` is atomic), so a
crash mid-write leaves the last good checkpoint in place. The one it
replaces is kept as ``<name>.prev.pt``. A full disk is named as such,
and the last good checkpoint stays.
"""
from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alexnet_lib.distributed import get_rank, get_world_size, unwrap

FORMAT = "alexnet_lib.checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says what to do."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    pass


class CorruptCheckpointError(CheckpointError):
    pass


class NotACheckpointError(CheckpointError):
    pass


class ArchitectureMismatchError(CheckpointError):
    pass


class DiskFullError(CheckpointError):
    pass


def _disk_full(error: BaseException, folder: Path) -> bool:
    # torch.save reports a failed write as "enforce fail at
    # inline_container.cc"; the OSError it hides is in the chain.
    seen = error
    while seen is not None:
        if getattr(seen, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as tensors and lists."""
    np_name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": (torch.cuda.get_rng_state_all()
                 if torch.cuda.is_available() else []),
        "python": [version, list(py_state), py_gauss],
        "numpy": {"name": np_name, "keys": torch.from_numpy(
            keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() \
            and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32),
                         n["pos"], n["has_gauss"], n["cached_gaussian"]))


def _plain(value: Any) -> Any:
    # Modules, optimisers and schedules are stored as their state dicts.
    if isinstance(value, nn.Module):
        return unwrap(value).state_dict()
    if hasattr(value, "state_dict") and callable(value.state_dict):
        return value.state_dict()
    return value


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Atomically write ``state`` (objects become their state dicts).

    Usual keys: model, optimizer, schedule, epoch, step_in_epoch,
    global_step, rng, config, model_name, model_options. ``rng``
    defaults to this process's RNG states.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: _plain(v) for k, v in state.items()}
    payload.setdefault("rng", rng_state())
    payload.update(format=FORMAT, version=VERSION)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
        except (OSError, RuntimeError) as e:
            if not _disk_full(e, path.parent):
                raise
            raise DiskFullError(
                f"no space left on the device holding {path.parent} "
                f"while writing checkpoint {path.name}: free some space "
                f"(or pass another --out) and run the same command "
                f"again; the last good checkpoint was kept") from e
        if path.exists():  # keep the last good one beside the new one
            prev = previous_path(path)
            link = prev.with_name(prev.name + ".tmp")
            try:
                link.unlink(missing_ok=True)
                os.link(path, link)
                os.replace(link, prev)
            except OSError:  # no hard links here: keep just the newest
                link.unlink(missing_ok=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _previous_hint(path: Path) -> str:
    # Never advise deleting anything: a run folder's history is kept.
    prev = previous_path(path)
    if prev.is_file():
        return (f"resume from the previous one with --resume {prev} "
                f"(a run in that folder does so by itself)")
    return ("no previous checkpoint was kept beside it; point --resume "
            "at another checkpoint, or start again with --no-resume "
            "(the old run's files are moved to old-runs/, not deleted)")


def _read(path: Path, map_location: Any) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointNotFoundError(
            f"checkpoint {path} does not exist: check the path, or train "
            f"from scratch with --no-resume")
    with open(path, "rb") as f:
        head = f.read(4)
    unreadable = (f"checkpoint {path} is unreadable (truncated or "
                  f"corrupt): {_previous_hint(path)}")
    if head and head != b"PK\x03\x04":  # torch.save writes a zip file
        raise NotACheckpointError(
            f"{path} is not a checkpoint (not a file written by "
            f"torch.save); point --resume at a checkpoint.pt written by "
            f"alexnet_lib")
    try:
        return torch.load(path, map_location=map_location,
                          weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e).lower().replace(" ", "_"):
            raise NotACheckpointError(
                f"{path} holds Python objects that weights_only loading "
                f"refuses, so it is not an alexnet_lib checkpoint") from e
        raise CorruptCheckpointError(unreadable) from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile,
            ValueError) as e:
        raise CorruptCheckpointError(unreadable) from e


def _describe(name: Any, options: Any) -> str:
    return f"{name!r} with options {options}" if options else repr(name)


def check_architecture(ckpt: dict[str, Any], path: Path,
                       model: nn.Module | None = None,
                       model_name: str | None = None,
                       model_options: dict | None = None) -> None:
    """Raise ArchitectureMismatchError if ``ckpt`` holds another model."""
    theirs = _describe(ckpt.get("model_name"), ckpt.get("model_options"))
    fix = ("use another --out folder, --no-resume, or the same --model "
           "and --model-option values")
    if model_name is not None and (
            ckpt.get("model_name") != model_name
            or (model_options is not None
                and ckpt.get("model_options", {}) != model_options)):
        ours = _describe(model_name, model_options)
        raise ArchitectureMismatchError(
            f"checkpoint {path} holds a {theirs} model but this run "
            f"builds {ours}: {fix}")
    if model is None:
        return
    want = {k: tuple(v.shape) for k, v in unwrap(model).state_dict().items()}
    have = {k: tuple(v.shape) for k, v in ckpt["model"].items()}
    if want != have:
        diff = sorted(set(want) ^ set(have)) or sorted(
            k for k in want if want[k] != have[k])
        ours = _describe(model_name or type(unwrap(model)).__name__,
                         model_options)
        raise ArchitectureMismatchError(
            f"checkpoint {path} holds a {theirs} model whose weights do "
            f"not fit this run's {ours} (first differences: "
            f"{', '.join(diff[:3])}): {fix}")


def load_checkpoint(path: str | os.PathLike, model: nn.Module | None = None,
                    optimizer: Any = None, schedule: Any = None, *,
                    model_name: str | None = None,
                    model_options: dict | None = None,
                    restore_rng: bool = False,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``) and restore into objects.

    Checks the architecture first (name, options, weight names and
    shapes) so nothing is half-loaded. ``restore_rng``: set this
    process's RNGs as they were at saving. Returns the checkpoint dict.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location)
    return restore(ckpt, path, model, optimizer, schedule,
                   model_name=model_name, model_options=model_options,
                   restore_rng=restore_rng)


def read_checkpoint(path: str | os.PathLike,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path``, checked to be ours; no restore."""
    path = Path(path)
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        kind = "a bare state dict" if isinstance(ckpt, dict) else \
            f"a {type(ckpt).__name__}"
        raise NotACheckpointError(
            f"{path} is not an alexnet_lib checkpoint (it holds {kind}); "
            f"to use plain weights call model.load_state_dict("
            f"torch.load(path, weights_only=True))")
    return ckpt


def restore(ckpt: dict[str, Any], path: str | os.PathLike,
            model: nn.Module | None = None, optimizer: Any = None,
            schedule: Any = None, *, model_name: str | None = None,
            model_options: dict | None = None,
            restore_rng: bool = False) -> dict[str, Any]:
    """Put what :func:`read_checkpoint` gave into the objects."""
    path = Path(path)
    check_architecture(ckpt, path, model, model_name, model_options)
    if model is not None:
        unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None and "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    if schedule is not None and "schedule" in ckpt:
        schedule.load_state_dict(ckpt["schedule"])
    if restore_rng and "rng" in ckpt:
        rng = ckpt["rng"]  # one dict, or one per rank (torchrun runs)
        if isinstance(rng, list):
            rank = get_rank() if len(rng) == get_world_size() else 0
            rng = rng[rank]
        set_rng_state(rng)
    return ckpt
