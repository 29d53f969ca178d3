"""The files a run leaves in its folder, besides its checkpoint.

config.json   the TrainConfig that ran (``TrainConfig.from_dict`` reads it)
env.json      versions, commit, hardware, world size, seed and profile
metrics.jsonl one JSON object per line: every epoch, stop and final test,
              each with the run's id and the segment (start or resume)
              that wrote it
.lock         held (``flock``) by the one run using the folder; the
              kernel drops the lock when that process dies

History is never thrown away: a run that starts afresh in a used folder
moves the old run's files into ``old-runs/<time>/``, and metrics rows
are appended whole and fsync'ed, or kept until they can be.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from alexnet_lib.config import ConfigError, TrainConfig
from alexnet_lib.sysinfo import cpu_name, environment

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"
OLD_RUNS = "old-runs"
# what a run leaves behind; moved aside together by move_aside
RUN_FILES = (CHECKPOINT_FILE, "checkpoint.prev.pt", CONFIG_FILE, ENV_FILE,
             METRICS_FILE)


def _json_safe(value: Any) -> Any:
    # JSON has no NaN/inf: write them as strings a reader will notice.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=2, default=str)
                   + "\n")
    tmp.replace(path)


def write_config(out_dir: Path, cfg: TrainConfig) -> None:
    write_json(out_dir / CONFIG_FILE, cfg.to_dict())


def write_env(out_dir: Path, cfg: TrainConfig, device: torch.device,
              world_size: int) -> dict[str, Any]:
    env = environment()
    env.update(
        device=str(device),
        device_name=(torch.cuda.get_device_name(device)
                     if device.type == "cuda" else cpu_name()),
        world_size=world_size, seed=cfg.seed, profile=cfg.profile)
    write_json(out_dir / ENV_FILE, env)
    return env


class RunFolderBusyError(ConfigError):
    """Another live process holds the run folder."""


class RunLock:
    """Ownership of a run folder for as long as this process lives.

    ``flock`` on ``<folder>/.lock``: the kernel releases it when the
    holder exits or is killed, so a dead run never leaves a stale lock.
    The file holds the holder's pid and host, for the error message.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.read(fd, 200).decode(errors="replace").strip()
            os.close(fd)
            raise RunFolderBusyError(
                f"run folder {self.folder} is in use by another run "
                f"({holder or 'pid unknown'}): wait for it to finish, or "
                f"pass another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {os.uname().nodename}".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files a killed save left behind (hold the lock)."""
    # save_checkpoint's .checkpoint.pt.<random>.tmp and the link to the
    # previous one; write_json's <name>.json.tmp
    stale = [p for pattern in (".checkpoint*.tmp", "checkpoint*.tmp",
                               "*.json.tmp")
             for p in folder.glob(pattern) if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def has_history(folder: Path) -> bool:
    """Whether ``folder`` holds files of an earlier run."""
    return any((folder / name).exists() for name in RUN_FILES)


def move_aside(folder: Path, extra: tuple[Path, ...] = ()) -> Path | None:
    """Move an earlier run's files to ``folder/old-runs/<time>/``.

    Returns that folder, or None when there was nothing to move.
    """
    files = [folder / n for n in RUN_FILES if (folder / n).exists()]
    files += [p for p in extra if p.exists()]
    if not files:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = folder / OLD_RUNS / stamp
    n = 1
    while dest.exists():
        n += 1
        dest = folder / OLD_RUNS / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    for p in files:
        os.replace(p, dest / p.name)
    return dest


class MetricsLog:
    """Appends rows to metrics.jsonl whole and durably, or keeps them.

    Each row goes in one ``write`` on an O_APPEND file, then ``fsync``.
    If that fails (disk full, quota), the file is cut back to its last
    complete line and the row stays in ``pending``; every later append
    and :meth:`flush` tries again, and ``pending`` also travels inside
    each checkpoint, so a resumed run writes what this one could not.
    """

    def __init__(self, path: Path, pending: list | None = None) -> None:
        self.path = Path(path)
        self.pending: list[dict[str, Any]] = list(pending or [])
        self.warned = False

    def append(self, record: dict[str, Any]) -> bool:
        self.pending.append(_json_safe(record))
        return self.flush()

    def flush(self) -> bool:
        """Write every pending row; False (and a warning) if it fails."""
        if not self.pending:
            return True
        text = "".join(json.dumps(r, default=str) + "\n"
                       for r in self.pending).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                     0o644)
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, text)
            if written != len(text):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, size)  # no half row stays behind
            except OSError:
                pass
            if not self.warned:
                print(f"warning: cannot append to {self.path} "
                      f"({e.strerror or e}): {len(self.pending)} metrics "
                      f"row(s) kept; they are written at the next save "
                      f"and travel in the checkpoint", file=sys.stderr,
                      flush=True)
                self.warned = True
            return False
        finally:
            os.close(fd)
        self.pending, self.warned = [], False
        return True


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's metrics.jsonl, in order."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip()]
