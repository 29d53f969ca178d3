"""Training: ``train_one_epoch`` and ``fit(cfg)``, read top to bottom.

``fit`` is the same code on a CPU, one GPU or N processes under
``torchrun``: the distributed helpers are no-ops without torchrun. A run
folder (``cfg.out_dir``) holds checkpoint.pt, config.json, env.json and
metrics.jsonl; a later ``fit`` with the same folder resumes exactly where
the last one stopped (same batches, same dropout masks, same weights).
One run owns the folder at a time (runlog.RunLock), a resume must keep
the settings that decide the updates (resume.check_settings), and no
earlier run's files are ever deleted (resume.choose_source).
SIGTERM ends a run cleanly, even when the whole process group gets it:
after the update in progress, a checkpoint (mid-epoch position
included) is saved and ``fit`` returns with ``stopped == "signal"``.
Besides epoch ends and ``checkpoint_every``, a checkpoint is saved
every CHECKPOINT_MINUTES, so a preempted long epoch loses little.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from alexnet_lib import preflight, resume, runlog
from alexnet_lib.checkpoint import (check_architecture, read_checkpoint,
                                    restore, rng_state, save_checkpoint)
from alexnet_lib.config import ConfigError, TrainConfig
from alexnet_lib.data import build_loaders, build_ten_crop_loader
from alexnet_lib.distributed import (all_gather_object, all_reduce_sum,
                                     barrier, cleanup, init_distributed,
                                     is_initialized, is_main)
from alexnet_lib.evaluate import evaluate
from alexnet_lib.models import create_model
from alexnet_lib.optim import PlateauSchedule, build_optimizer
from alexnet_lib.signals import (Shielded, StopFlag, shield_children,
                                 stop_on, stop_shielded_children,
                                 until_stopped)
from alexnet_lib.speed import apply_speed, keep_freed_memory

CHECKPOINT_MINUTES = 30.0  # also save mid-epoch after this long


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


def save_snapshot(model: nn.Module, out: Path, epoch: int) -> Path:
    """The convolutional weights after ``epoch``, in
    ``out/snapshots/epoch-NNN.pt`` (a few MB: for studying how features
    form, e.g. ZFNet's Fig. 4). Written whole or not at all."""
    model = getattr(model, "module", model)  # DDP
    model = getattr(model, "_orig_mod", model)  # torch.compile
    weights = {f"{name}.{key}": value.detach().float().cpu().clone()
               for name, m in model.named_modules()
               if isinstance(m, nn.Conv2d)
               for key, value in m.state_dict().items()}
    folder = out / "snapshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"epoch-{epoch:03d}.pt"
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"epoch": epoch, "conv_weights": weights}, tmp)
    os.replace(tmp, path)
    return path


def at_chance(top1_error: float, num_classes: int, n: int) -> bool:
    """True when a top-1 error is no better than guessing: within two
    standard errors of 1 - 1/K on n validation images, or above it."""
    chance = 1 - 1 / num_classes
    return top1_error >= chance - 2 * math.sqrt(chance * (1 - chance)
                                                / max(n, 1))


def chance_warning(top1_error: float, num_classes: int,
                   train_loss: float, epochs: int) -> str:
    """One line for a run whose validation error sits at chance."""
    return (f"at chance for {epochs} epoch(s): val top-1 error "
            f"{top1_error:.3f} is what guessing gives with {num_classes} "
            f"classes ({1 - 1 / num_classes:.3f}); the last train loss "
            f"is {train_loss:.2f} (a uniform guess scores ln "
            f"{num_classes} = {math.log(num_classes):.2f}). If it stays "
            f"there, the updates are too large for this start: §5's "
            f"biases of 1 make that likely with few classes, so try "
            f"--model-option bias=0.1 or a smaller --lr")


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
    # ZFNet §3: conv filters are scaled back to RMS 0.1 after each update
    renormalise = getattr(getattr(model, "module", model), "renormalise_",
                          None)
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
        if renormalise is not None:
            renormalise()
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


class _Timer:
    """True once CHECKPOINT_MINUTES passed since the last save, on every
    rank at the same step (rank 0's clock decides)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.fired = device, False
        self.reset()

    def reset(self) -> None:
        self.last, self.fired = time.monotonic(), False

    def __call__(self) -> bool:
        late = is_main() and (time.monotonic() - self.last
                              >= CHECKPOINT_MINUTES * 60)
        if is_initialized():
            late = all_reduce_sum(torch.tensor(
                [float(late)], device=self.device)).item() > 0
        self.fired = bool(late)
        return self.fired


def _save(path: Path, cfg: TrainConfig, model, optimizer, schedule,
          epoch: int, step_in_epoch: int, global_step: int,
          run: dict[str, Any]) -> None:
    """Every rank's RNG state goes in; rank 0 writes the file.

    ``run``: run_id, segment, and the metrics log whose unwritten rows
    travel in the checkpoint.
    """
    rngs = all_gather_object(rng_state())
    if is_main():
        log = run["metrics"]
        log.flush()
        save_checkpoint(path, model=model, optimizer=optimizer,
                        schedule=schedule, epoch=epoch,
                        step_in_epoch=step_in_epoch,
                        global_step=global_step, rng=rngs,
                        config=cfg.to_dict(), model_name=cfg.model,
                        model_options=_plain_options(cfg.model_options),
                        run_id=run["run_id"], segment=run["segment"],
                        pending_metrics=list(log.pending))
    barrier()


def fit(cfg: TrainConfig, resume_from: str | Path | None = None,
        allow_changes: tuple[str, ...] = ()) -> dict:
    """Train ``cfg.model`` on ``cfg.data`` as §5 describes; see module doc.

    ``resume_from``: a checkpoint to continue from instead of
    ``cfg.out_dir/checkpoint.pt`` (used only when ``cfg.resume``).
    ``allow_changes``: settings a resume may change (resume.ALLOWABLE).
    """
    with stop_on(signal.SIGTERM) as stop:  # the CLI adds SIGINT
        cfg = preflight.check_config(cfg)
        owns_group = not is_initialized()
        dist = init_distributed(cfg.device)
        lock, loaders = None, []
        try:
            lock, source, ckpt, changed = _claim_folder(
                cfg, resume_from, allow_changes, dist.rank == 0)
            return _fit(cfg, dist, stop, source, ckpt, changed, loaders)
        finally:
            _close(loaders)
            stop_shielded_children()  # nothing may outlive the run
            if lock is not None:
                lock.release()
            if owns_group:
                cleanup()


def _claim_folder(cfg: TrainConfig, resume_from, allow, main: bool):
    """Before any data: rank 0 takes the run folder, picks the checkpoint
    and checks the settings; every rank learns the outcome."""
    out, lock = Path(cfg.out_dir), None
    outcome: tuple = ("ok", None, [])
    ckpt = None
    if main:
        try:
            preflight.check_folder(out)
            preflight.check_cache()
            lock = runlog.RunLock(out).acquire()
            runlog.remove_stale_temps(out)
            source, ckpt = resume.choose_source(out, cfg.resume,
                                                resume_from)
            changed = []
            if ckpt is not None:
                check_architecture(ckpt, source, None, cfg.model,
                                   _plain_options(cfg.model_options))
                changed = resume.check_settings(
                    ckpt.get("config"), cfg, source, allow,
                    ckpt["step_in_epoch"])
            outcome = ("ok", source and str(source), changed)
        except Exception as e:
            if lock is not None:
                lock.release()
            if not is_initialized():
                raise
            all_gather_object(("error", type(e).__name__, str(e)))
            raise
    outcome = all_gather_object(outcome)[0]
    if outcome[0] == "error":  # rank 0 raised it; stop here alike
        raise ConfigError(f"rank 0: {outcome[2]}")
    source = Path(outcome[1]) if outcome[1] else None
    if source is not None and ckpt is None:
        ckpt = read_checkpoint(source)
    return lock, source, ckpt, outcome[2]


def _close(loaders: list) -> None:
    """Stop the workers of persistent DataLoaders inside ``loaders``, as
    a DataLoader does when its iterator is dropped. Left to the end of
    the program, multiprocessing would SIGTERM them, which shielded
    workers ignore (signals.stop_shielded_children)."""
    for loader in loaders:
        while loader is not None and not isinstance(loader, DataLoader):
            loader = getattr(loader, "loader", None)
        if loader is not None and loader._iterator is not None:
            loader._iterator._shutdown_workers()
            loader._iterator = None


def _fit(cfg: TrainConfig, dist, stop: StopFlag, source: Path | None,
         ckpt: dict | None, changed: list[str], loaders: list) -> dict:
    wall_start = time.perf_counter()
    rank, world, device = dist.rank, dist.world_size, dist.device
    seed_everything(cfg.seed)
    # Workers started here (mean image, loaders) ignore stop signals;
    # preparing the data must not move the RNG the weights come from,
    # or a run with a cold cache would differ from one with a warm one.
    with shield_children(), torch.random.fork_rng(devices=[]):
        train_loader, val_loader, info = build_loaders(cfg, rank, world,
                                                       device=device)
    loaders += [train_loader, val_loader]
    val_loader = Shielded(val_loader)
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
    if device.type == "cpu":  # reuse freed activations (speed.py)
        keep_freed_memory()
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, cfg.optim)
    schedule = PlateauSchedule(optimizer, factor=cfg.optim.lr_drop,
                               patience=cfg.optim.plateau_patience,
                               max_drops=cfg.optim.max_lr_drops)

    out = Path(cfg.out_dir)
    ckpt_path = out / runlog.CHECKPOINT_FILE
    resumed = source is not None
    epoch = step_in_epoch = global_step = 0
    if resumed:
        restore(ckpt, source, model, optimizer, schedule,
                model_name=cfg.model,
                model_options=_plain_options(cfg.model_options),
                restore_rng=True)
        resume.apply_allowed(changed, cfg, optimizer, schedule)
        epoch, step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        global_step = ckpt["global_step"]
    run_id, segment = resume.run_identity(out, ckpt)
    main = rank == 0
    metrics = runlog.MetricsLog(out / runlog.METRICS_FILE)
    if main:
        runlog.write_config(out, cfg)
        runlog.write_env(out, cfg, device, world)
        logged = runlog.read_metrics(out)  # rows a crash left unwritten
        metrics.pending = [r for r in (ckpt or {}).get(
            "pending_metrics", []) if r not in logged]
        metrics.flush()
    run = {"run_id": run_id, "segment": segment, "metrics": metrics}
    ckpt = None  # the weights are in the model now: free the memory
    history: list[dict[str, Any]] = []
    skipped = info["corrupt_files"]

    def log(record: dict[str, Any]) -> None:
        record.update(run_id=run_id, segment=segment,
                      skipped_images=len(skipped()),
                      wall_time_s=time.perf_counter() - wall_start)
        history.append(record)
        if main:
            metrics.append(record)

    def save(at_epoch: int, at_step: int) -> None:
        _save(ckpt_path, cfg, model, optimizer, schedule, at_epoch,
              at_step, global_step, run)
        timer.reset()

    val = None
    chance_epochs = 0  # how many of the last epochs ended at chance
    last_train_loss = math.nan
    timer = _Timer(device)
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
                                       train_loader, stop, device, timer),
                                   optimizer, device,
                                   max_updates=int(todo),
                                   first_step=global_step + 1, bar=bar)
            if part["steps"] < todo and not (stop.stopped or timer.fired):
                raise RuntimeError(f"the training loader gave fewer "
                                   f"batches than its len(), {n_batches}")
            parts.append(part)
            step_in_epoch += part["steps"]
            global_step += part["steps"]
            if step_in_epoch < n_batches:
                save(epoch, step_in_epoch)
        bar.close()
        train = _merge(parts)
        last_train_loss = train["loss"]
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
        save(epoch, 0)
        if main and epoch in cfg.snapshot_epochs:
            save_snapshot(model, out, epoch)
        stuck = at_chance(val["top1_error"], info["num_classes"],
                          val["n"])
        chance_epochs = chance_epochs + 1 if stuck else 0
        log(dict(record, val_top1_error=val["top1_error"],
                 val_top5_error=val["top5_error"], val_loss=val["loss"],
                 lr_drops=schedule.drops, at_chance=stuck))
        if main and cfg.progress:
            tqdm.write(f"epoch {epoch}: train loss {train['loss']:.4f} "
                       f"error {train['error']:.4f}; val top-1 "
                       f"{val['top1_error']:.4f} top-5 "
                       f"{val['top5_error']:.4f}; lr {record['lr']:g}"
                       + ("; AT CHANCE" if stuck else ""))

    if stop.stopped:  # exit fast: the signal's sender will not wait
        val = val or dict.fromkeys(("top1_error", "top5_error", "loss"))
    elif val is None:  # the last weights were not validated yet
        val = evaluate(model, val_loader, device, sharded=False)
        log({"kind": "eval", "epoch": epoch, "step": global_step,
             "val_top1_error": val["top1_error"],
             "val_top5_error": val["top5_error"], "val_loss": val["loss"]})
    if (main and cfg.snapshot_epochs and not stop.stopped and epoch
            and step_in_epoch == 0 and not (out / "snapshots" / f"epoch-{epoch:03d}.pt").exists()):
        save_snapshot(model, out, epoch)  # the last epoch's weights too
    ten = None
    # §4.1: average the softmax over ten patches
    if cfg.ten_crop and not stop.stopped:
        with shield_children(), torch.random.fork_rng(devices=[]):
            ten_loader = build_ten_crop_loader(cfg)
        ten = evaluate(model, Shielded(ten_loader), device,
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
        "device": str(device), "run_id": run_id, "segment": segment,
        "skipped_images": len(skipped()),
        "at_chance": (chance_warning(val["top1_error"],
                                     info["num_classes"], last_train_loss,
                                     chance_epochs)
                      if chance_epochs else None),
        "wall_time_s": time.perf_counter() - wall_start}
    if main and not metrics.flush():
        print("warning: these metrics rows could not be written: "
              + json.dumps(metrics.pending, default=str), file=sys.stderr)
    return results
