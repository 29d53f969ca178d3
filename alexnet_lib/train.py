"""Training: ``train_step`` (one §5 update), ``train_one_epoch`` (a
pass over a loader) and ``fit(cfg)`` (a whole run), read top to bottom.

``fit`` fits on one page: (1) claim the run folder and build data,
network, optimiser and schedule (``_Run``, restored from a checkpoint
when resuming); (2) the step loop, which asks before each batch whether
to stop and after each update whether to checkpoint; (3) the epoch's
end (validation, the §5 schedule, checkpoint, log); (4) the results.

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
                                 stop_on, stop_shielded_children)
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


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               optimizer: torch.optim.Optimizer, device: torch.device | str,
               step: int = 1) -> torch.Tensor:
    """One §5 update on the batch (x, y); returns float64
    [loss * n, errors, n] summed over all processes.

    Raises TrainingDivergedError, before the update, when the loss is
    NaN or infinite; ``step`` numbers the update in that message.
    """
    x = x.to(device, non_blocking=True)  # (B, 3, S, S) float
    y = y.to(device, non_blocking=True)  # (B,) int64
    logits = model(x)  # (B, C)
    loss = F.cross_entropy(logits, y)  # mean over the batch
    # One small all-reduce per step: the logged loss is the global one,
    # and a NaN on any rank stops every rank at the same step.
    stats = torch.stack([loss.detach().double() * y.numel(),
                         (logits.argmax(1) != y).sum().double(),
                         torch.tensor(float(y.numel()), device=device,
                                      dtype=torch.float64)])
    stats = all_reduce_sum(stats).cpu()
    if not math.isfinite(stats[0].item()):
        raise TrainingDivergedError(
            _diverged(stats[0].item(), step,
                      optimizer.param_groups[0]["lr"], int(stats[2].item())),
            step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # ZFNet §3: conv filters are scaled back to RMS 0.1 after each update
    renormalise = getattr(getattr(model, "module", model), "renormalise_",
                          None)
    if renormalise is not None:
        renormalise()
    return stats


class EpochStats:
    """Running loss and error of the updates made so far in an epoch."""

    def __init__(self) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64)  # loss*n, errors, n
        self.steps, self.seconds = 0, 0.0

    def add(self, stats: torch.Tensor, seconds: float) -> None:
        self.sums += stats
        self.steps += 1
        self.seconds += seconds

    def state(self) -> dict[str, Any]:
        """What a mid-epoch checkpoint keeps, so that a resumed epoch
        reports the loss and error of all its updates, not only of those
        after the resume."""
        return {"sums": self.sums.tolist(), "steps": self.steps,
                "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> "EpochStats":
        stats = cls()
        if state:
            stats.sums = torch.tensor(state["sums"], dtype=torch.float64)
            stats.steps, stats.seconds = state["steps"], state["seconds"]
        return stats

    def summary(self) -> dict[str, float]:
        n = max(self.sums[2].item(), 1.0)
        return {"loss": self.sums[0].item() / n,
                "error": self.sums[1].item() / n,
                "n": int(self.sums[2].item()), "steps": self.steps,
                "seconds": self.seconds,
                "images_per_s": self.sums[2].item()
                / max(self.seconds, 1e-9)}


def _batches(loader: Iterable) -> Iterator:
    # The loader's randomness is a function of (seed, epoch, step):
    # making its iterator must not move the RNG that dropout draws from,
    # or a resumed run would see other dropout masks than a straight one.
    with torch.random.fork_rng(devices=[]), shield_children():
        return iter(loader)


def train_one_epoch(model: nn.Module, loader: Iterable,
                    optimizer: torch.optim.Optimizer,
                    device: torch.device | str, *,
                    max_updates: int | None = None, first_step: int = 1,
                    bar: Any = None) -> dict[str, float]:
    """``train_step`` over ``loader`` (at most ``max_updates`` batches).

    Returns the mean training loss and top-1 error over the images seen
    (summed over all processes), the number of updates, images and
    images/s. ``first_step`` numbers the updates in a divergence
    message; ``bar`` is an optional tqdm bar to advance.
    """
    model.train()
    epoch = EpochStats()
    clock = time.perf_counter()
    for x, y in itertools.islice(_batches(loader), max_updates):
        stats = train_step(model, x, y, optimizer, device,
                           first_step + epoch.steps)
        now = time.perf_counter()
        epoch.add(stats, now - clock)
        clock = now
        if bar is not None:
            _show(bar, stats, epoch)
    return epoch.summary()


def _show(bar, stats: torch.Tensor, epoch: EpochStats) -> None:
    bar.update(1)
    bar.set_postfix(loss=f"{stats[0] / stats[2]:.3f}",
                    error=f"{epoch.sums[1] / epoch.sums[2]:.3f}",
                    img_s=f"{epoch.sums[2] / max(epoch.seconds, 1e-9):.0f}",
                    refresh=False)


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

    ``run``: run_id, segment, the metrics log whose unwritten rows
    travel in the checkpoint, and the running sums of the epoch so far
    (None at an epoch's end).
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
                        pending_metrics=list(log.pending),
                        epoch_stats=run.get("epoch_stats"))
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
        lock, loaders, device = None, [], dist.device
        try:
            # 1. The run folder and the checkpoint to resume from, if any;
            # then data, network, optimiser and schedule, restored from it.
            lock, source, ckpt, changed = _claim_folder(
                cfg, resume_from, allow_changes, dist.rank == 0)
            run = _Run(cfg, dist, source, ckpt, changed, loaders)
            del ckpt  # the weights are in the model now: free the memory
            limit = math.inf if cfg.max_steps is None else cfg.max_steps
            timer = _Timer(device)
            # 2. The step loop: one epoch after another, each from the
            # step it stands at (a resumed epoch starts midway).
            while run.epoch < cfg.epochs and not run.schedule.finished:
                if run.global_step >= limit or stop.agreed(device):
                    break
                n_batches = len(run.train_loader)
                run.train_loader.set_epoch(run.epoch,
                                           start_step=run.step_in_epoch)
                batches = _batches(run.train_loader)
                # a resumed epoch goes on with the sums of its first part
                stats = run.stats = EpochStats.from_state(run.carried_stats)
                run.carried_stats = None
                bar = run.bar(n_batches)
                run.model.train()
                clock = time.perf_counter()
                while run.step_in_epoch < n_batches:
                    # Stop? Asked before fetching a batch, so the update
                    # in progress when a signal came is finished first.
                    if run.global_step >= limit or stop.agreed(device):
                        break
                    x, y = _next_batch(batches, n_batches)
                    step = train_step(run.model, x, y, run.optimizer,
                                      device, run.global_step + 1)
                    run.step_in_epoch += 1
                    run.global_step += 1
                    stats.add(step, time.perf_counter() - clock)
                    _show(bar, step, stats)
                    # Checkpoint mid-epoch? Every checkpoint_every
                    # updates, every CHECKPOINT_MINUTES, and at max_steps.
                    if run.step_in_epoch < n_batches and (
                            run.global_step >= limit
                            or (cfg.checkpoint_every and run.global_step
                                % cfg.checkpoint_every == 0)
                            or timer()):
                        run.save(timer)
                    clock = time.perf_counter()
                bar.close()
                # 3. The epoch's end, or the point where it stopped.
                epoch = stats.summary()
                record = {"kind": "epoch", "epoch": run.epoch,
                          "step": run.global_step,
                          "lr": run.optimizer.param_groups[0]["lr"],
                          "train_loss": epoch["loss"],
                          "train_error": epoch["error"],
                          "images_per_s": epoch["images_per_s"]}
                run.last_train_loss = epoch["loss"]
                if run.step_in_epoch < n_batches:  # max_steps or signal
                    run.save(timer)  # nothing to do if just saved here
                    run.log(dict(record, kind="partial_epoch",
                                 step_in_epoch=run.step_in_epoch))
                    run.val = None
                    break
                run.end_epoch(record, timer)
            # 4. What the run reached.
            return run.results(stop, limit)
        finally:
            _close(loaders)
            stop_shielded_children()  # nothing may outlive the run
            if lock is not None:
                lock.release()
            if owns_group:
                cleanup()


def _next_batch(batches: Iterator, n_batches: int):
    try:
        return next(batches)
    except StopIteration:
        raise RuntimeError(f"the training loader gave fewer batches than "
                           f"its len(), {n_batches}") from None


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


class _Run:
    """What one ``fit`` works on: data, network, optimiser, schedule,
    where it stands (epoch, step in the epoch, updates made) and its
    logs. ``save``, ``log`` and ``end_epoch`` act on it; ``results``
    sums it up."""

    def __init__(self, cfg: TrainConfig, dist, source: Path | None,
                 ckpt: dict | None, changed: list[str], loaders: list):
        self.wall_start = time.perf_counter()
        self.cfg, self.device = cfg, dist.device
        self.world, self.main = dist.world_size, dist.rank == 0
        seed_everything(cfg.seed)
        # Workers started here (mean image, loaders) ignore stop signals;
        # preparing the data must not move the RNG the weights come
        # from, or a run with a cold cache would differ from a warm one.
        with shield_children(), torch.random.fork_rng(devices=[]):
            train_loader, val_loader, self.info = build_loaders(
                cfg.data, cfg.optim.batch_size, cfg.seed, cfg.profile,
                dist.rank, dist.world_size, device=self.device)
        loaders += [train_loader, val_loader]
        self.train_loader = train_loader
        self.val_loader = Shielded(val_loader)
        self.model = self._build_model()
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.schedule = PlateauSchedule(
            self.optimizer, factor=cfg.optim.lr_drop,
            patience=cfg.optim.plateau_patience,
            max_drops=cfg.optim.max_lr_drops)
        self.out = Path(cfg.out_dir)
        self.ckpt_path = self.out / runlog.CHECKPOINT_FILE
        self.resumed = source is not None
        self.epoch = self.step_in_epoch = self.global_step = 0
        if self.resumed:
            restore(ckpt, source, self.model, self.optimizer, self.schedule,
                    model_name=cfg.model,
                    model_options=_plain_options(cfg.model_options),
                    restore_rng=True)
            resume.apply_allowed(changed, cfg, self.optimizer,
                                 self.schedule)
            self.epoch = ckpt["epoch"]
            self.step_in_epoch = ckpt["step_in_epoch"]
            self.global_step = ckpt["global_step"]
        # the running loss and error of the epoch a checkpoint stopped in
        # (absent from checkpoints written before they were kept)
        self.carried_stats = ((ckpt or {}).get("epoch_stats")
                              if self.step_in_epoch else None)
        self.stats = EpochStats()
        self.saved_at = (self.epoch, self.step_in_epoch)
        self.run_id, self.segment = resume.run_identity(self.out, ckpt)
        self.metrics = runlog.MetricsLog(self.out / runlog.METRICS_FILE)
        if self.main:
            runlog.write_config(self.out, cfg)
            runlog.write_env(self.out, cfg, self.device, self.world)
            logged = runlog.read_metrics(self.out)  # rows a crash lost
            self.metrics.pending = [r for r in (ckpt or {}).get(
                "pending_metrics", []) if r not in logged]
            self.metrics.flush()
        self.history: list[dict[str, Any]] = []
        self.skipped = self.info["corrupt_files"]
        self.val = None  # the last validation, if these weights had one
        self.chance_epochs = 0  # how many of the last epochs sat at chance
        self.last_train_loss = math.nan

    def _build_model(self) -> nn.Module:
        cfg, info, device = self.cfg, self.info, self.device
        try:
            model = create_model(cfg.model, num_classes=info["num_classes"],
                                 **cfg.model_options).to(device)
        except (TypeError, ValueError) as e:  # unknown name/option/value
            raise ConfigError(f"cannot build model {cfg.model!r}: {e}"
                              ) from e
        want = getattr(model, "input_size", info["input_size"])
        if want != info["input_size"]:
            raise ConfigError(
                f"model {cfg.model!r} expects {want}x{want} inputs but the "
                f"data gives {info['input_size']}x{info['input_size']}: "
                f"set --image-size {want} (data.image_size) or "
                f"--model-option input_size={info['input_size']}")
        # bf16, channels_last, compile, ...: as cfg.speed says (default off)
        model = apply_speed(model, cfg.speed, device)
        if device.type == "cpu":  # reuse freed activations (speed.py)
            keep_freed_memory()
        if self.world > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device] if device.type == "cuda"
                else None)
        return model

    def bar(self, n_batches: int):
        return tqdm(total=n_batches, initial=self.step_in_epoch,
                    desc=f"epoch {self.epoch + 1}/{self.cfg.epochs}",
                    disable=not (self.cfg.progress and self.main),
                    dynamic_ncols=True)

    def log(self, record: dict[str, Any]) -> None:
        record.update(run_id=self.run_id, segment=self.segment,
                      skipped_images=len(self.skipped()),
                      wall_time_s=time.perf_counter() - self.wall_start)
        self.history.append(record)
        if self.main:
            self.metrics.append(record)

    def save(self, timer: _Timer) -> None:
        """A checkpoint of where the run stands (once per position)."""
        if self.saved_at == (self.epoch, self.step_in_epoch):
            return
        _save(self.ckpt_path, self.cfg, self.model, self.optimizer,
              self.schedule, self.epoch, self.step_in_epoch,
              self.global_step, {"run_id": self.run_id,
                                 "segment": self.segment,
                                 "metrics": self.metrics,
                                 "epoch_stats": (self.stats.state()
                                                 if self.step_in_epoch
                                                 else None)})
        self.saved_at = (self.epoch, self.step_in_epoch)
        timer.reset()

    def end_epoch(self, record: dict, timer: _Timer) -> None:
        """Validate, step the schedule (§5: ÷10 on a plateau), save a
        checkpoint (and a snapshot where asked), log the epoch."""
        cfg, out = self.cfg, self.out
        self.val = val = evaluate(self.model, self.val_loader, self.device,
                                  sharded=False)
        self.schedule.step(val["top1_error"])
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.save(timer)
        if self.main and self.epoch in cfg.snapshot_epochs:
            save_snapshot(self.model, out, self.epoch)
        stuck = at_chance(val["top1_error"], self.info["num_classes"],
                          val["n"])
        self.chance_epochs = self.chance_epochs + 1 if stuck else 0
        self.log(dict(record, val_top1_error=val["top1_error"],
                      val_top5_error=val["top5_error"], val_loss=val["loss"],
                      lr_drops=self.schedule.drops, at_chance=stuck))
        if self.main and cfg.progress:
            tqdm.write(f"epoch {self.epoch}: train loss "
                       f"{record['train_loss']:.4f} error "
                       f"{record['train_error']:.4f}; val top-1 "
                       f"{val['top1_error']:.4f} top-5 "
                       f"{val['top5_error']:.4f}; lr {record['lr']:g}"
                       + ("; AT CHANCE" if stuck else ""))

    def results(self, stop: StopFlag, limit: float) -> dict:
        """Validate weights not validated yet; the last snapshot and the
        ten-patch test (§4.1) where asked; the run's summary."""
        cfg, out, device, val = self.cfg, self.out, self.device, self.val
        if stop.stopped:  # exit fast: the signal's sender will not wait
            val = val or dict.fromkeys(("top1_error", "top5_error", "loss"))
        elif val is None:  # the last weights were not validated yet
            val = evaluate(self.model, self.val_loader, device,
                           sharded=False)
            self.log({"kind": "eval", "epoch": self.epoch,
                      "step": self.global_step,
                      "val_top1_error": val["top1_error"],
                      "val_top5_error": val["top5_error"],
                      "val_loss": val["loss"]})
        last = out / "snapshots" / f"epoch-{self.epoch:03d}.pt"
        if (self.main and cfg.snapshot_epochs and not stop.stopped
                and self.epoch and self.step_in_epoch == 0
                and not last.exists()):
            save_snapshot(self.model, out, self.epoch)  # the last weights
        ten = None
        # §4.1: average the softmax over ten patches
        if cfg.ten_crop and not stop.stopped:
            with shield_children(), torch.random.fork_rng(devices=[]):
                ten_loader = build_ten_crop_loader(
                    cfg.data, cfg.optim.batch_size, cfg.profile)
            ten = evaluate(self.model, Shielded(ten_loader), device,
                           ten_crop=True, sharded=False)
            self.log({"kind": "ten_crop", "epoch": self.epoch,
                      "step": self.global_step,
                      "top1_error": ten["top1_error"],
                      "top5_error": ten["top5_error"], "loss": ten["loss"],
                      "n": ten["n"]})
        # §5: the rate was cut three times and the error plateaued again
        stopped = ("signal" if stop.stopped else
                   "plateau" if self.schedule.finished else
                   "max_steps" if self.global_step >= limit else "epochs")
        results = {
            "epochs": self.epoch, "global_step": self.global_step,
            "stopped": stopped, "signal": stop.name,
            "resumed": self.resumed,
            "lr": self.optimizer.param_groups[0]["lr"],
            "lr_drops": self.schedule.drops,
            "val_top1_error": val["top1_error"],
            "val_top5_error": val["top5_error"], "val_loss": val["loss"],
            "ten_crop": ten, "history": self.history, "out_dir": str(out),
            "checkpoint": str(self.ckpt_path), "world_size": self.world,
            "device": str(device), "run_id": self.run_id,
            "segment": self.segment,
            "skipped_images": len(self.skipped()),
            "at_chance": (chance_warning(val["top1_error"],
                                         self.info["num_classes"],
                                         self.last_train_loss,
                                         self.chance_epochs)
                          if self.chance_epochs else None),
            "wall_time_s": time.perf_counter() - self.wall_start}
        if self.main and not self.metrics.flush():
            print("warning: these metrics rows could not be written: "
                  + json.dumps(self.metrics.pending, default=str),
                  file=sys.stderr)
        return results
