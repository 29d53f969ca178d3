"""Where a run resumes from, and which settings a resume may change.

A run folder belongs to one run: a resume must keep every setting that
decides the images, their order and the updates (data, batch size,
seed, schedule, ...), or the result is neither the old run nor a new
one. ``check_settings`` compares them with the checkpoint's and names
every difference; the user may allow some on purpose (the learning
rate after a deliberate drop) with ``--allow-change``.

``choose_source`` never loses history: a corrupt newest checkpoint is
renamed (kept) and the previous one used; a fresh start in a used
folder moves the old run to ``old-runs/`` first.
"""
from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from alexnet_lib import runlog
from alexnet_lib.checkpoint import (CorruptCheckpointError, previous_path,
                                    read_checkpoint)
from alexnet_lib.config import ConfigError, TrainConfig

# config field -> how the user names it (the train flag, else the field)
FIXED = {
    "data.dataset": "dataset", "data.root": "data",
    "data.format": "data-format", "data.val_root": "val-data",
    "data.image_size": "image-size", "data.resize": "resize",
    "data.random_crop": "data.random_crop", "data.flip": "data.flip",
    "data.pca_lighting": "data.pca_lighting", "data.mean": "data.mean",
    "data.train_subset": "train-subset", "data.val_subset": "val-subset",
    "optim.batch_size": "batch-size", "optim.lr": "lr",
    "optim.momentum": "momentum", "optim.weight_decay": "weight-decay",
    "optim.update_rule": "update-rule", "optim.lr_drop": "optim.lr_drop",
    "optim.max_lr_drops": "optim.max_lr_drops",
    "optim.plateau_patience": "patience", "seed": "seed",
}
# what --allow-change accepts: these leave the data and the order alone
# (the batch size only at an epoch's end, where no batch is half-seen)
ALLOWABLE = ("lr", "momentum", "weight-decay", "patience", "data",
             "val-data", "batch-size")


class SettingsChangedError(ConfigError):
    """A resume would change settings the checkpoint was trained with."""


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return None if d == {} else d


def check_settings(stored: dict[str, Any] | None, cfg: TrainConfig,
                   source: Path, allow: Iterable[str] = (),
                   step_in_epoch: int = 0) -> list[str]:
    """The allowed changed names; raise SettingsChangedError otherwise."""
    allow = set(allow)
    unknown = sorted(allow - set(ALLOWABLE))
    if unknown:
        raise ConfigError(
            f"--allow-change takes {', '.join(ALLOWABLE)}, got "
            f"{', '.join(unknown)}")
    if not stored:  # a checkpoint from before configs were stored
        return []
    ours = cfg.to_dict()
    diffs = [(name, _get(ours, key), _get(stored, key))
             for key, name in FIXED.items()
             if _get(ours, key) != _get(stored, key)]
    refused = [d for d in diffs if d[0] not in allow
               or (d[0] == "batch-size" and step_in_epoch)]
    if not refused:
        return [d[0] for d in diffs]
    listed = ", ".join(f"{name} {now} (checkpoint: {was})"
                       for name, now, was in diffs)
    fix = ("use the checkpoint's values, or start a new run with "
           "--no-resume (the old run is moved to old-runs/) or another "
           "--out")
    allowable = [n for n in ALLOWABLE
                 if not (n == "batch-size" and step_in_epoch)]
    if all(d[0] in allowable for d in refused):
        names = ",".join(d[0] for d in diffs)
        fix += f"; to change them on purpose add --allow-change {names}"
    elif any(d[0] == "batch-size" for d in refused) and step_in_epoch:
        fix += "; the batch size can change only at an epoch's end"
    raise SettingsChangedError(
        f"cannot resume from {source}: this run differs from it in "
        f"{listed}: {fix}")


def apply_allowed(changed: list[str], cfg: TrainConfig, optimizer,
                  schedule) -> None:
    """After restoring, give the allowed new values to the objects."""
    o = cfg.optim
    for group in optimizer.param_groups:
        if "lr" in changed:
            group["lr"] = o.lr
        if "momentum" in changed:
            group["momentum"] = o.momentum
        if "weight-decay" in changed:
            group["weight_decay"] = o.weight_decay
    if "patience" in changed:
        schedule.patience = o.plateau_patience


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _keep_corrupt(path: Path) -> Path:
    """Rename a corrupt checkpoint so that no save links it over the
    previous good one; it stays in the folder for inspection."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    os.replace(path, kept)
    return kept


def choose_source(out: Path, resume: bool, resume_from: str | None
                  ) -> tuple[Path | None, dict[str, Any] | None]:
    """(checkpoint path, its dict) to resume from, or (None, None).

    Call on the process that holds the run folder's lock.
    """
    if resume and resume_from is not None:
        return Path(resume_from), read_checkpoint(resume_from)
    ckpt_path = out / runlog.CHECKPOINT_FILE
    prev = previous_path(ckpt_path)
    if resume and ckpt_path.is_file():
        try:
            return ckpt_path, read_checkpoint(ckpt_path)
        except CorruptCheckpointError:
            if not prev.is_file():
                raise
            ckpt = read_checkpoint(prev)  # raises if it is bad too
            kept = _keep_corrupt(ckpt_path)
            _say(f"warning: {ckpt_path} is unreadable (kept as "
                 f"{kept.name}); resuming from {prev.name} at step "
                 f"{ckpt['global_step']}")
            return prev, ckpt
    if resume and prev.is_file():
        ckpt = read_checkpoint(prev)
        _say(f"warning: {ckpt_path} is missing; resuming from "
             f"{prev.name} at step {ckpt['global_step']}")
        return prev, ckpt
    old = [p for p in out.glob("checkpoint.corrupt-*.pt")]
    if runlog.has_history(out) or old:
        dest = runlog.move_aside(out, tuple(old))
        _say(f"starting a new run in {out}: the previous run's files "
             f"were moved to {dest}")
    return None, None


def run_identity(out: Path, ckpt: dict[str, Any] | None) -> tuple[str, int]:
    """(run id, segment number) for the metrics rows of this process.

    A new run gets a new id; each start or resume of it is one more
    segment, counted from the checkpoint and the rows already logged.
    """
    if not ckpt or "run_id" not in ckpt:
        return uuid.uuid4().hex[:12], 1
    run_id = ckpt["run_id"]
    seen = [r.get("segment", 0) for r in runlog.read_metrics(out)
            if r.get("run_id") == run_id]
    return run_id, max([ckpt.get("segment", 0), *seen]) + 1
