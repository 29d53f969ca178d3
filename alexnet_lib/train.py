"""Training: ``train_one_epoch`` and ``fit(cfg)``, read top to bottom.

``fit`` is the same code on a CPU, one GPU or N processes under
``torchrun``: the distributed helpers are no-ops without torchrun. A run
folder (``cfg.out_dir``) holds checkpoint.pt, config.json, env.json and
metrics.jsonl; a later ``fit`` with the same folder resumes exactly where
the last one stopped (same batches, same dropout masks, same weights).
SIGTERM ends a run cleanly: after the update in progress, a checkpoint
(mid-epoch position included) is saved and ``fit`` returns with
``stopped == "signal"``.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import signal
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from alexnet_lib import runlog
from alexnet_lib.checkpoint import (CheckpointError, load_checkpoint,
                                    rng_state, save_checkpoint)
from alexnet_lib.config import ConfigError, TrainConfig, validate
from alexnet_lib.data import build_loaders, build_ten_crop_loader
from alexnet_lib.distributed import (all_gather_object, all_reduce_sum,
                                     barrier, cleanup, init_distributed,
                                     is_initialized, is_main)
from alexnet_lib.evaluate import evaluate
from alexnet_lib.models import create_model
from alexnet_lib.optim import PlateauSchedule, build_optimizer
from alexnet_lib.signals import StopFlag, stop_on, until_stopped
from alexnet_lib.speed import apply_speed


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; ``.step`` says when."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), Python's random and NumPy."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _diverged(loss: float, step: int, lr: float, batch: int) -> str:
    return (
        f"training diverged at step {step}: the loss is {loss}. Likely "
        f"causes: (1) the learning rate {lr:g} is too high for batch "
        f"size {batch} and this initialisation: try --lr {lr / 10:g} "
        f"with --no-resume or a new --out (a resumed run keeps its "
        f"rate); (2) inputs not mean-subtracted or wrongly scaled: check "
        f"data.mean (§2 subtracts the mean image from 0-255 pixels); "
        f"(3) the paper's bias-1 initialisation (§5) can give a flat or "
        f"exploding loss, as Caffe saw (its reference model uses 0.1): "
        f"lower --lr or try --model-option init=torch. The last good "
        f"checkpoint, if any, was not overwritten.")


def train_one_epoch(model: nn.Module, loader: Iterable,
                    optimizer: torch.optim.Optimizer,
                    device: torch.device | str, *,
                    max_updates: int | None = None, first_step: int = 1,
                    bar: Any = None) -> dict[str, float]:
    """One pass over ``loader`` (at most ``max_updates`` batches).

    Returns the mean training loss and top-1 error over the images seen
    (summed over all processes), the number of updates, images and
    images/s. Raises TrainingDivergedError before any update is made
    with a NaN or infinite loss. ``first_step`` numbers the updates in
    that message; ``bar`` is an optional tqdm bar to advance.
    """
    model.train()
    # The loader's randomness is a function of (seed, epoch, step):
    # making its iterator must not move the RNG that dropout draws from,
    # or a resumed run would see other dropout masks than a straight one.
    with torch.random.fork_rng(devices=[]):
        batches = iter(loader)
    sums = torch.zeros(3, dtype=torch.float64)  # loss*n, errors, n
    steps, start = 0, time.perf_counter()
    for x, y in itertools.islice(batches, max_updates):
        x = x.to(device, non_blocking=True)  # (B, 3, S, S) float
        y = y.to(device, non_blocking=True)  # (B,) int64
        logits = model(x)  # (B, C)
        loss = F.cross_entropy(logits, y)  # mean over the batch
        # One small all-reduce per step: the logged loss is the global
        # one, and a NaN on any rank stops every rank at the same step.
        stats = torch.stack([loss.detach().double() * y.numel(),
                             (logits.argmax(1) != y).sum().double(),
                             torch.tensor(float(y.numel()), device=device,
                                          dtype=torch.float64)])
        stats = all_reduce_sum(stats).cpu()
        if not math.isfinite(stats[0].item()):
            raise TrainingDivergedError(
                _diverged(stats[0].item(), first_step + steps,
                          optimizer.param_groups[0]["lr"],
                          int(stats[2].item())), first_step + steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        sums += stats
        if bar is not None:
            bar.update(1)
            seconds = time.perf_counter() - start
            bar.set_postfix(loss=f"{stats[0] / stats[2]:.3f}",
                            error=f"{sums[1] / sums[2]:.3f}",
                            img_s=f"{sums[2] / seconds:.0f}", refresh=False)
    seconds = time.perf_counter() - start
    n = max(sums[2].item(), 1.0)
    return {"loss": sums[0].item() / n, "error": sums[1].item() / n,
            "n": int(sums[2].item()), "steps": steps, "seconds": seconds,
            "images_per_s": sums[2].item() / max(seconds, 1e-9)}


def _merge(parts: list[dict[str, float]]) -> dict[str, float]:
    """Combine the chunks of one epoch (split by mid-epoch checkpoints)."""
    n = sum(p["n"] for p in parts) or 1
    seconds = sum(p["seconds"] for p in parts)
    return {"loss": sum(p["loss"] * p["n"] for p in parts) / n,
            "error": sum(p["error"] * p["n"] for p in parts) / n,
            "n": n, "steps": sum(p["steps"] for p in parts),
            "seconds": seconds, "images_per_s": n / max(seconds, 1e-9)}


def _plain_options(options: dict) -> dict:
    # Compare options as JSON sees them: a tuple and a list are the same.
    return json.loads(json.dumps(options))


def _save(path: Path, cfg: TrainConfig, model, optimizer, schedule,
          epoch: int, step_in_epoch: int, global_step: int) -> None:
    """Every rank's RNG state goes in; rank 0 writes the file."""
    rngs = all_gather_object(rng_state())
    if is_main():
        save_checkpoint(path, model=model, optimizer=optimizer,
                        schedule=schedule, epoch=epoch,
                        step_in_epoch=step_in_epoch,
                        global_step=global_step, rng=rngs,
                        config=cfg.to_dict(), model_name=cfg.model,
                        model_options=_plain_options(cfg.model_options))
    barrier()


def fit(cfg: TrainConfig, resume_from: str | Path | None = None) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` as §5 describes; see module doc.

    ``resume_from``: a checkpoint to continue from instead of
    ``cfg.out_dir/checkpoint.pt`` (used only when ``cfg.resume``).
    """
    with stop_on(signal.SIGTERM) as stop:  # the CLI adds SIGINT
        return _fit(cfg, resume_from, stop)


def _fit(cfg: TrainConfig, resume_from, stop: StopFlag) -> dict:
    cfg = validate(cfg)
    wall_start = time.perf_counter()
    owns_group = not is_initialized()
    dist = init_distributed(cfg.device)
    rank, world, device = dist.rank, dist.world_size, dist.device
    seed_everything(cfg.seed)
    train_loader, val_loader, info = build_loaders(cfg, rank, world,
                                                   device=device)
    try:
        model = create_model(cfg.model, num_classes=info["num_classes"],
                             **cfg.model_options).to(device)
    except (TypeError, ValueError) as e:  # unknown name, option, value
        raise ConfigError(f"cannot build model {cfg.model!r}: {e}") from e
    want = getattr(model, "input_size", info["input_size"])
    if want != info["input_size"]:
        raise ConfigError(
            f"model {cfg.model!r} expects {want}x{want} inputs but the "
            f"data gives {info['input_size']}x{info['input_size']}: set "
            f"--image-size {want} (data.image_size) or --model-option "
            f"input_size={info['input_size']}")
    # bf16, channels_last, compile, ...: as cfg.speed says (default off)
    model = apply_speed(model, cfg.speed, device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg.optim)
    schedule = PlateauSchedule(optimizer, factor=cfg.optim.lr_drop,
                               patience=cfg.optim.plateau_patience,
                               max_drops=cfg.optim.max_lr_drops)

    out = Path(cfg.out_dir)
    ckpt_path = out / runlog.CHECKPOINT_FILE
    source = Path(resume_from) if resume_from else ckpt_path
    resumed = cfg.resume and (resume_from is not None or source.is_file())
    epoch = step_in_epoch = global_step = 0
    if resumed:
        ckpt = load_checkpoint(
            source, model, optimizer, schedule, model_name=cfg.model,
            model_options=_plain_options(cfg.model_options),
            restore_rng=True)
        rule = ckpt.get("config", {}).get("optim", {}).get("update_rule")
        if rule not in (None, cfg.optim.update_rule):
            raise CheckpointError(
                f"checkpoint {source} was trained with update rule "
                f"{rule!r}, this run asks for {cfg.optim.update_rule!r}: "
                f"use the same --update-rule or --no-resume")
        epoch, step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        global_step = ckpt["global_step"]
    main = rank == 0
    if main:
        runlog.write_config(out, cfg)
        runlog.write_env(out, cfg, device, world)
        metrics_path = runlog.start_metrics(out, append=resumed)
    history: list[dict[str, Any]] = []

    def log(record: dict[str, Any]) -> None:
        record["wall_time_s"] = time.perf_counter() - wall_start
        history.append(record)
        if main:
            runlog.log_metrics(metrics_path, record)

    val = None
    limit = cfg.max_steps if cfg.max_steps is not None else math.inf
    while (epoch < cfg.epochs and global_step < limit
           and not schedule.finished and not stop.agreed(device)):
        n_batches = len(train_loader)
        bar = tqdm(total=n_batches, initial=step_in_epoch,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (cfg.progress and main), dynamic_ncols=True)
        parts = []
        while (step_in_epoch < n_batches and global_step < limit
               and not stop.agreed(device)):
            # Train up to the next mid-epoch checkpoint or max_steps.
            todo = min(n_batches - step_in_epoch, limit - global_step)
            if cfg.checkpoint_every:
                every = cfg.checkpoint_every
                todo = min(todo, every - global_step % every)
            train_loader.set_epoch(epoch, start_step=step_in_epoch)
            part = train_one_epoch(model, until_stopped(
                                       train_loader, stop, device),
                                   optimizer, device,
                                   max_updates=int(todo),
                                   first_step=global_step + 1, bar=bar)
            if part["steps"] < todo and not stop.stopped:
                raise RuntimeError(f"the training loader gave fewer "
                                   f"batches than its len(), {n_batches}")
            parts.append(part)
            step_in_epoch += part["steps"]
            global_step += part["steps"]
            if step_in_epoch < n_batches:
                _save(ckpt_path, cfg, model, optimizer, schedule, epoch,
                      step_in_epoch, global_step)
        bar.close()
        train = _merge(parts)
        record = {"kind": "epoch", "epoch": epoch, "step": global_step,
                  "lr": optimizer.param_groups[0]["lr"],
                  "train_loss": train["loss"], "train_error": train["error"],
                  "images_per_s": train["images_per_s"]}
        if step_in_epoch < n_batches:  # max_steps or a signal mid-epoch
            log(dict(record, kind="partial_epoch",
                     step_in_epoch=step_in_epoch))
            val = None
            break
        val = evaluate(model, val_loader, device, sharded=False)
        schedule.step(val["top1_error"])  # §5: ÷10 on a plateau
        epoch, step_in_epoch = epoch + 1, 0
        _save(ckpt_path, cfg, model, optimizer, schedule, epoch, 0,
              global_step)
        log(dict(record, val_top1_error=val["top1_error"],
                 val_top5_error=val["top5_error"], val_loss=val["loss"],
                 lr_drops=schedule.drops))
        if main and cfg.progress:
            tqdm.write(f"epoch {epoch}: train loss {train['loss']:.4f} "
                       f"error {train['error']:.4f}; val top-1 "
                       f"{val['top1_error']:.4f} top-5 "
                       f"{val['top5_error']:.4f}; lr {record['lr']:g}")

    if stop.stopped:  # exit fast: the signal's sender will not wait
        val = val or dict.fromkeys(("top1_error", "top5_error", "loss"))
    elif val is None:  # the last weights were not validated yet
        val = evaluate(model, val_loader, device, sharded=False)
        log({"kind": "eval", "epoch": epoch, "step": global_step,
             "val_top1_error": val["top1_error"],
             "val_top5_error": val["top5_error"], "val_loss": val["loss"]})
    ten = None
    # §4.1: average the softmax over ten patches
    if cfg.ten_crop and not stop.stopped:
        ten = evaluate(model, build_ten_crop_loader(cfg), device,
                       ten_crop=True, sharded=False)
        log({"kind": "ten_crop", "epoch": epoch, "step": global_step,
             "top1_error": ten["top1_error"],
             "top5_error": ten["top5_error"], "loss": ten["loss"],
             "n": ten["n"]})
    # §5: the rate was cut three times and the error plateaued again
    stopped = ("signal" if stop.stopped else
               "plateau" if schedule.finished else
               "max_steps" if global_step >= limit else "epochs")
    results = {
        "epochs": epoch, "global_step": global_step, "stopped": stopped,
        "signal": stop.name,
        "resumed": resumed, "lr": optimizer.param_groups[0]["lr"],
        "lr_drops": schedule.drops, "val_top1_error": val["top1_error"],
        "val_top5_error": val["top5_error"], "val_loss": val["loss"],
        "ten_crop": ten, "history": history, "out_dir": str(out),
        "checkpoint": str(ckpt_path), "world_size": world,
        "device": str(device),
        "wall_time_s": time.perf_counter() - wall_start}
    if owns_group:
        cleanup()
    return results
