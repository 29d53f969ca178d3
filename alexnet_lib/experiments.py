"""Seeded ablation runs at CIFAR-10 scale, shared by the chapters.

§3.2 (two GPUs), §3.4 (overlapping pooling), the §4 ablations and §5's
weight decay all ask one question: does switch X change the test error
and the gap between training and test error? ``proxy_run`` answers it
for one network and one seed with the paper's recipe scaled down (§5
update rule, batch 128, momentum 0.9, weight decay 5e-4, lr 0.01
divided by 10 for the last epochs; §4.1 random crops and mirrors, PCA
colour noise when asked; the mean image subtracted from 0..255 pixels).
``run_arms`` runs several switches over several seeds and keeps each
finished (arm, seed) in the cache folder, so an interrupted experiment
continues where it stopped; ``mean_std`` summarises seeds.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from alexnet_lib.config import OptimConfig, cache_root
from alexnet_lib.data.cifar_loader import CifarLoader
from alexnet_lib.data.files import balanced_subset
from alexnet_lib.evaluate import evaluate
from alexnet_lib.optim import build_optimizer
from alexnet_lib.train import seed_everything, train_one_epoch

__all__ = ["ProxyPlan", "Arm", "proxy_run", "run_arms", "mean_std",
           "paired_differences", "train_eval_indices", "progress_bar",
           "epoch_summary", "split_off", "ABLATIONS_FOLDER"]

ABLATIONS_FOLDER = "ablations"  # under cache_root(): finished (arm, seed)


@dataclass(frozen=True)
class ProxyPlan:
    """How long and how a proxy run trains (the method, not the net)."""
    epochs: int = 10
    # DEVIATION: a fixed, compressed form of §5's schedule: lr 0.01,
    # divided by 10 for the last ``low_lr_epochs`` epochs, instead of
    # dividing on each validation plateau over ~90 epochs.
    low_lr_epochs: int = 2
    lr: float = 0.01  # §5
    batch_size: int = 128  # §5
    momentum: float = 0.9  # §5
    weight_decay: float = 5e-4  # §5
    crop: int = 27  # the proxy's input (alexnet_lib.models.proxy)
    random_crop: bool = True  # §4.1 (False: the centre crop in training)
    flip: bool = True  # §4.1
    pca_std: float = 0.0  # §4.1 colour noise (the paper: 0.1); 0 = off
    train_eval_images: int = 10_000  # training images scored at the end

    def __post_init__(self):
        if self.epochs < 1 or not 0 <= self.low_lr_epochs <= self.epochs:
            raise ValueError(
                f"ProxyPlan: need epochs >= 1 and 0 <= low_lr_epochs <= "
                f"epochs, got epochs={self.epochs}, "
                f"low_lr_epochs={self.low_lr_epochs}")
        if self.weight_decay < 0 or self.pca_std < 0:
            raise ValueError(
                f"ProxyPlan: weight_decay and pca_std must be >= 0, got "
                f"weight_decay={self.weight_decay}, pca_std={self.pca_std}")

    def lr_factor(self, epoch: int) -> float:
        """1 for epoch ``epoch`` (0-based), 0.1 in the last
        ``low_lr_epochs`` epochs; the rate is ``lr`` times this."""
        return 0.1 if epoch >= self.epochs - self.low_lr_epochs else 1.0


@dataclass(frozen=True)
class Arm:
    """One switch of an ablation: a network and a plan, run per seed.

    ``label`` is what tables print; ``plan`` None means the plan given
    to ``run_arms``; ``changes`` alters a few of its fields (e.g.
    ``dict(weight_decay=0.0)``); ``seeds`` None means all seeds;
    ``make_optimizer`` this arm's own optimizer (see ``proxy_run``).
    """
    label: str
    make_model: Callable[[], nn.Module]
    changes: dict = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None
    plan: ProxyPlan | None = None
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = \
        None


def proxy_run(make_model: Callable[[], nn.Module], train, test,
              plan: ProxyPlan, seed: int, mean: torch.Tensor,
              device="cpu", log: bool | None = True,
              name: str = "", *, pca=None,
              on_epoch: Callable[[nn.Module], dict] | None = None,
              make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
              | None = None, return_model: bool = False):
    """Train one freshly built model; return its curve and final errors.

    train, test: ``CifarTensors``; mean: the (3, 32, 32) mean image of
    the training images on the 0..255 scale. The final numbers are
    top-1 errors in evaluation mode on centre crops: ``test_error`` on
    the test images, ``train_error`` on ``plan.train_eval_images``
    training images spread evenly over the set (``train_eval_indices``;
    the loaded set is sorted by class), and their difference
    ``gap`` (how much the net overfits). ``log``: one progress bar
    for the run, its postfix the last epoch's errors (None: silent).

    Knobs: ``pca`` = (eigval, eigvec) of the colour noise when
    ``plan.pca_std`` > 0 (None: computed from the training images);
    ``on_epoch(model)`` returns extra numbers for each epoch's row of
    the curve (e.g. a weight norm); ``make_optimizer(model)`` replaces
    the §5 optimizer built from the plan (e.g. per-layer rates; the
    plan's schedule then scales each group's own rate);
    ``return_model``: return ``(result, model)``.
    """
    seed_everything(seed)  # same seed: same initial weights
    model = make_model().to(device)
    if make_optimizer is None:
        optimizer = build_optimizer(model, OptimConfig(
            lr=plan.lr, momentum=plan.momentum,
            weight_decay=plan.weight_decay))
    else:
        optimizer = make_optimizer(model)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    loader = CifarLoader(train.images, train.labels, plan.batch_size,
                         seed=seed, crop=plan.crop, flip=plan.flip,
                         random_crop=plan.random_crop,
                         pca_std=plan.pca_std, pca=pca, mean=mean,
                         device=device)
    # The loaded images are sorted by class, so the first N would score
    # only a few classes: score a fixed spread-out sample instead.
    scored = train_eval_indices(len(train), plan.train_eval_images)
    train_eval = CifarLoader(train.images[scored], train.labels[scored],
                             500, shuffle=False, crop=plan.crop, mean=mean,
                             train=False, device=device)
    test_eval = CifarLoader(test.images, test.labels, 500, shuffle=False,
                            crop=plan.crop, mean=mean, train=False,
                            device=device)
    curve, start = [], time.perf_counter()
    bar = progress_bar(plan.epochs, f"{name} seed {seed}", enabled=log)
    for epoch in range(plan.epochs):
        factor = plan.lr_factor(epoch)
        lr = plan.lr * factor
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        loader.set_epoch(epoch)
        fit = train_one_epoch(model, loader, optimizer, device)
        val = evaluate(model, test_eval, device)
        curve.append(dict(epoch=epoch + 1, lr=lr,
                          running_error=round(fit["error"], 4),
                          loss=round(fit["loss"], 4),
                          test_error=round(val["top1_error"], 4),
                          images_per_s=round(fit["images_per_s"], 1),
                          **(on_epoch(model) if on_epoch else {})))
        bar.set_postfix_str(epoch_summary(fit, val), refresh=False)
        bar.update()
    bar.close()
    final_train = evaluate(model, train_eval, device)["top1_error"]
    final_test = curve[-1]["test_error"]
    result = dict(seed=seed, curve=curve, test_error=final_test,
                  train_error=round(final_train, 4),
                  gap=round(final_test - final_train, 4),
                  seconds=round(time.perf_counter() - start, 1),
                  parameters=sum(p.numel() for p in model.parameters()))
    return (result, model) if return_model else result


def split_off(data, n: int):
    """(rest, held_out): ``n`` images of ``data`` (a ``CifarTensors``)
    set aside, class-balanced and deterministic (the first of each
    class, as ``files.balanced_subset`` picks them), for choosing a
    setting such as the learning rate without looking at the test set.
    """
    if not 1 <= n < len(data):
        raise ValueError(f"split_off: n must be in [1, {len(data) - 1}] "
                         f"for {len(data)} images, got {n}")
    held = torch.zeros(len(data), dtype=torch.bool)
    held[torch.tensor(balanced_subset(data.labels, n))] = True
    return (replace(data, images=data.images[~held],
                    labels=data.labels[~held]),
            replace(data, images=data.images[held],
                    labels=data.labels[held]))


def run_arms(arms: dict[str, Arm], train, test, plan: ProxyPlan,
             seeds, mean: torch.Tensor, device="cpu", *,
             experiment: str | None = None, keep_models: bool = False,
             log: bool | None = True, **knobs) -> dict:
    """Every arm for every seed (seeds outer, arms inner, so a cut-short
    experiment has whole seeds); returns ``{"runs": {arm: [result, ...]},
    "models": {(arm, seed): model}, "trained": n, "loaded": n}``.

    ``experiment``: a name; each finished (arm, seed) is written under
    ``cache_root()/ablations/<experiment>/`` and read back instead of
    trained again when the same arm, plan, seed, data and initial
    weights come round (the key hashes them all), so an interrupted
    experiment continues where it stopped. None: nothing cached.
    ``keep_models``: keep (and cache) the trained models too.
    ``knobs`` go to ``proxy_run`` (``pca``, ``on_epoch``,
    ``make_optimizer``). A loaded result carries ``"cached": True`` and
    the ``seconds`` its training took when it ran.
    """
    out = {"runs": {arm: [] for arm in arms}, "models": {}, "trained": 0,
           "loaded": 0}
    folder = None
    if experiment is not None:
        if not experiment or "/" in experiment or experiment[0] == ".":
            raise ValueError(f"experiment {experiment!r} must be a plain "
                             f"folder name")
        folder = cache_root() / ABLATIONS_FOLDER / experiment
    data_key = _data_key(train, test, mean, knobs.get("pca"))
    for seed in seeds:
        for arm, spec in arms.items():
            if spec.seeds is not None and seed not in spec.seeds:
                continue
            arm_plan = replace_plan(spec.plan or plan, spec.changes)
            arm_knobs = dict(knobs)
            if spec.make_optimizer is not None:
                arm_knobs["make_optimizer"] = spec.make_optimizer
            path = None
            if folder is not None:
                key = _run_key(arm, spec, arm_plan, seed, data_key,
                               arm_knobs)
                path = folder / f"{_slug(arm)}-seed{seed}-{key}"
                cached = _load_cached(path, spec, seed, keep_models, device)
                if cached is not None:
                    result, model = cached
                    out["runs"][arm].append(result)
                    if keep_models:
                        out["models"][arm, seed] = model
                    out["loaded"] += 1
                    if log:
                        print(f"{spec.label} seed {seed}: loaded from the "
                              f"cache (trained in {result['seconds']:.0f}"
                              f" s)")
                    continue
            result, model = proxy_run(
                spec.make_model, train, test, arm_plan, seed, mean, device,
                log=log, name=arm, return_model=True, **arm_knobs)
            out["runs"][arm].append(result)
            out["trained"] += 1
            if keep_models:
                out["models"][arm, seed] = model
            if path is not None:
                _save_cached(path, result, model if keep_models else None)
    return out


def replace_plan(plan: ProxyPlan, changes: dict) -> ProxyPlan:
    """``plan`` with ``changes``; a misspelt field is a clear error."""
    unknown = set(changes) - {f.name for f in fields(ProxyPlan)}
    if unknown:
        raise ValueError(f"ProxyPlan has no field(s) {sorted(unknown)}; "
                         f"fields: {[f.name for f in fields(ProxyPlan)]}")
    return replace(plan, **changes)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:40]


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.reshape(-1).numpy().tobytes())
        else:
            h.update(repr(part).encode())
    return h.hexdigest()[:16]


def _data_key(train, test, mean, pca) -> str:
    pca_parts = () if pca is None else tuple(pca)
    return _digest(train.images, train.labels, test.images, test.labels,
                   mean, *pca_parts)


def _run_key(arm: str, spec: Arm, plan: ProxyPlan, seed: int,
             data_key: str, knobs: dict) -> str:
    """A hash of everything the run's numbers depend on: the arm, plan,
    seed, data, the network's layout and initial weights (built here
    with the seed, as proxy_run builds it) and the names of the hooks."""
    seed_everything(seed)
    model = spec.make_model()
    hooks = {k: getattr(v, "__qualname__", repr(v))
             for k, v in sorted(knobs.items()) if k != "pca"}
    return _digest(arm, asdict(plan), seed, data_key, repr(model), hooks,
                   *[p for p in model.state_dict().values()])


def _load_cached(path: Path, spec: Arm, seed: int, keep_models: bool,
                 device):
    result_file = path.with_suffix(".json")
    model_file = path.with_suffix(".pt")
    if not result_file.is_file() or (keep_models and
                                     not model_file.is_file()):
        return None
    try:
        result = json.loads(result_file.read_text())
    except (OSError, ValueError):
        return None  # a torn write: train again
    model = None
    if keep_models:
        seed_everything(seed)
        model = spec.make_model().to(device)
        model.load_state_dict(torch.load(model_file, map_location=device))
        model.eval()
    result["cached"] = True
    return result, model


def _save_cached(path: Path, result: dict, model: nn.Module | None) -> None:
    """Model first, then the result (its presence marks the run done);
    each written to a temporary name and renamed, so a cut-off write
    leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is not None:
        tmp = path.with_suffix(".pt.tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path.with_suffix(".pt"))
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path.with_suffix(".json"))


def progress_bar(epochs: int, desc: str, enabled: bool | None = True):
    """One compact display per run: a tqdm bar over its epochs, kept
    when done (a widget in Jupyter, a text line elsewhere)."""
    return tqdm(total=epochs, desc=desc.strip(), unit="epoch",
                leave=True, disable=not enabled)


def epoch_summary(fit: dict, val: dict) -> str:
    """The bar's postfix: 'running error 0.488, test error 0.443, 536
    images/s' from ``train_one_epoch`` and ``evaluate`` results."""
    return (f"running error {fit['error']:.3f}, test error "
            f"{val['top1_error']:.3f}, {fit['images_per_s']:.0f} images/s")


def train_eval_indices(n: int, count: int) -> torch.Tensor:
    """``min(count, n)`` indices spread evenly over ``range(n)``, sorted.

    Evenly spaced, so a class-sorted set is sampled in proportion to its
    classes; the same for every run, so every run scores the same images.
    """
    count = min(count, n)
    return (torch.arange(count, dtype=torch.float64) * n / count).long()


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def paired_differences(runs_a: list[dict], runs_b: list[dict],
                       key: str = "test_error") -> list[float]:
    """b - a for each seed both lists ran (matched by ``seed``)."""
    b_by_seed = {r["seed"]: r[key] for r in runs_b}
    diffs = [b_by_seed[r["seed"]] - r[key] for r in runs_a
             if r["seed"] in b_by_seed]
    if not diffs:
        raise ValueError("the two lists of runs share no seed")
    return diffs
