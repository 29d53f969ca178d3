"""The files a run leaves in its folder, besides its checkpoint.

config.json   the TrainConfig that ran (``TrainConfig.from_dict`` reads it)
env.json      versions, commit, hardware, world size, seed and profile
metrics.jsonl one JSON object per line: every epoch, stop and final test
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from alexnet_lib.config import TrainConfig
from alexnet_lib.sysinfo import cpu_name, environment

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"


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


def start_metrics(out_dir: Path, append: bool) -> Path:
    """The metrics file; emptied unless the run resumes (then appended)."""
    path = out_dir / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not append:
        path.write_text("")
    return path


def log_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(_json_safe(record), default=str) + "\n")


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's metrics.jsonl, in order."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()
            if line.strip()]
