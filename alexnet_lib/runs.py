"""Trained networks that several chapters share, kept outside git.

§6 trains the paper's ``AlexNet`` on Imagenette with the ``train``
command; §6.1 studies the same checkpoints and trains more seeds. Both
find a run by name in ``run_folder(name)`` (under ``cache_root()``, so
$ALEXNET_CACHE), train it with ``train_command`` when it is missing or
unfinished (the command resumes), and read it with ``load_run``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.transforms.v2.functional import center_crop

from alexnet_lib import runlog
from alexnet_lib.checkpoint import load_checkpoint
from alexnet_lib.config import TrainConfig, apply_profile, cache_root
from alexnet_lib.data.build import select_mean
from alexnet_lib.data.imagenet import ImageNetFolder
from alexnet_lib.data.sources import imagenet_root, open_train
from alexnet_lib.data.transforms import (ResizeCenterCrop,
                                         compute_mean_image)
from alexnet_lib.models import create_model

__all__ = ["ImagenettePlan", "IMAGENETTE_PLANS", "FULL_SIZE",
           "full_size_name", "run_name", "run_folder",
           "train_command", "run_train_command", "is_finished",
           "load_run", "input_mean", "centre_crops", "load_snapshots",
           "estimate_minutes", "predictions", "ensure_run",
           "plan_differences", "plan_config", "wall_time_s", "run_summary"]

RUNS_FOLDER = "runs"  # under cache_root()


@dataclass(frozen=True)
class ImagenettePlan:
    """How much of §5's recipe a profile runs on Imagenette.

    The method (groups, LRN, overlapping pooling, dropout, PCA colour,
    update rule, plateau schedule) is the paper's in every plan.
    """
    image_size: int = 224  # §3.5
    resize: int = 256  # §2
    train_subset: int | None = None  # None: all 9,469 images
    val_subset: int | None = None  # None: every validation image
    epochs: int = 90  # §5; the plateau schedule may stop it earlier
    batch_size: int = 128  # §5
    patience: int = 2  # epochs without improvement before lr / 10
    workers: int = 0  # data-loading processes
    init: str = "paper"  # §5: N(0, 0.01) weights (see FULL_SIZE's bias)
    bias: float | None = None  # the init's constant biases (None: its own)
    snapshot_epochs: tuple[int, ...] = ()  # conv weights kept (ZFNet)

    def __post_init__(self):
        if self.resize < self.image_size:
            raise ValueError(f"ImagenettePlan: resize={self.resize} must "
                             f"be >= image_size={self.image_size}")


# The culmination (§6): the paper's network at full size, 224x224 patches
# of 256-pixel images, every Imagenette image, trained on the CPU until
# the plateau schedule ends it (bf16 where the CPU has it, the cpu
# profile's speed settings). Conv weights are kept after a handful of
# epochs for the ZFNet chapter's feature evolution.
FULL_SIZE = ImagenettePlan(
    image_size=224, resize=256, epochs=60, patience=2,
    # every image (the cpu profile alone would take 5,000 and 1,000):
    # 9,469 training images, and all 3,925 validation images of the
    # official release (all 2,000 of the 224 px copy)
    train_subset=9469, val_subset=3925,
    # DEVIATION: biases of 0.1 instead of §5's 1 (Caffe's choice); with
    # 10 classes the bias-1 start leaves the network at chance (§5's
    # init comparison, results/init_comparison_224.json).
    init="paper", bias=0.1,
    snapshot_epochs=(1, 2, 3, 5, 10, 20, 30))

IMAGENETTE_PLANS = {
    # DEVIATION: (ci profile) 112x112 patches of images resized to 128
    # instead of 224 of 256, 160 images and one epoch: it only proves
    # that every cell runs. fc6 then reads 256x2x2 maps, not 256x6x6.
    "ci": dataclasses.replace(
        FULL_SIZE, image_size=112, resize=128, train_subset=160,
        val_subset=50, epochs=1, batch_size=32, patience=1,
        snapshot_epochs=(1,)),
    # cpu: the full-size run itself (40-45 minutes on two CPU cores)
    "cpu": FULL_SIZE,
    "gpu": dataclasses.replace(FULL_SIZE, epochs=90, workers=8),
}


def full_size_name(seed: int = 0, groups: int = 2) -> str:
    """The run folder name of the full-size network for one seed."""
    return f"imagenette-alexnet-groups{groups}-seed{seed}-full224"


def run_name(profile: str, seed: int = 0, groups: int = 2,
             epochs: int | None = None, model: str = "alexnet",
             size: int | None = None) -> str:
    """The name §6, §6.1 and §8 give an Imagenette run of a network.

    Under ``cpu`` the paper's network is the full-size run
    (:func:`full_size_name`), the one ``tools/train_full_size.py``
    trains; ``epochs`` names a run shortened to that many epochs
    (``...-10ep``). ``model="zfnet"`` names ZFNet's (one dense tower,
    so ``groups`` does not apply). ``size`` tells apart a run whose
    patches differ from its profile's plan (``...-ci224``); ``cpu``
    runs are 224-pixel runs by name.
    """
    if size is not None and profile == "cpu" and size != 224:
        raise ValueError(f"run_name: cpu runs are 224-pixel runs, got "
                         f"size={size}")
    tag = "full224" if profile == "cpu" else (
        profile if size is None else f"{profile}{size}")
    if model == "zfnet":
        name = f"imagenette-zfnet-seed{seed}-{tag}"
    elif model != "alexnet":
        raise ValueError(f"run_name: model must be 'alexnet' or 'zfnet', "
                         f"got {model!r}")
    else:
        name = f"imagenette-alexnet-groups{groups}-seed{seed}-{tag}"
    return name if epochs is None else f"{name}-{epochs}ep"


def run_folder(name: str) -> Path:
    """Where run ``name`` keeps its checkpoint and metrics."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"run name {name!r} must be a plain folder name")
    return cache_root() / RUNS_FOLDER / name


def train_command(plan: ImagenettePlan, out_dir: str | Path,
                  profile: str, seed: int = 0, groups: int = 2,
                  model: str = "alexnet") -> list[str]:
    """Arguments of ``python -m alexnet_lib train`` for ``plan``.

    ZFNet keeps its own initialisation (ZFNet §3: weights N(0, 0.01),
    biases 0) and has one tower: the plan's init, bias and ``groups``
    apply to AlexNet only.
    """
    args = ["train", "--model", model, "--dataset", "imagenet",
            "--profile", profile, "--out", str(out_dir),
            "--seed", str(seed), "--epochs", str(plan.epochs),
            "--batch-size", str(plan.batch_size),
            "--image-size", str(plan.image_size),
            "--resize", str(plan.resize),
            "--patience", str(plan.patience),
            "--workers", str(plan.workers), "--ten-crop", "--no-progress",
            "--model-option", f"input_size={plan.image_size}"]
    if model == "alexnet":
        args += ["--model-option", f"init={plan.init}"]
        if plan.bias is not None:
            args += ["--model-option", f"bias={plan.bias}"]
    if plan.snapshot_epochs:
        args += ["--snapshot-epochs",
                 ",".join(map(str, plan.snapshot_epochs))]
    if groups != 2 and model == "alexnet":
        args += ["--model-option", f"groups={groups}"]
    for flag, value in (("--train-subset", plan.train_subset),
                        ("--val-subset", plan.val_subset)):
        if value is not None:
            args += [flag, str(value)]
    return args


def plan_config(plan: ImagenettePlan, out_dir: str | Path, profile: str,
                seed: int = 0, groups: int = 2,
                model: str = "alexnet") -> TrainConfig:
    """The TrainConfig of ``plan``, built directly (the same settings
    the command of ``train_command`` asks for; a test keeps them equal).
    """
    options: dict = {"input_size": plan.image_size}
    if model == "alexnet":
        options["init"] = plan.init
        if plan.bias is not None:
            options["bias"] = plan.bias
        if groups != 2:
            options["groups"] = groups
    changes = dict(
        model=model, model_options=options, data__dataset="imagenet",
        out_dir=str(out_dir), seed=seed, epochs=plan.epochs,
        optim__batch_size=plan.batch_size, data__image_size=plan.image_size,
        data__resize=plan.resize, optim__plateau_patience=plan.patience,
        data__num_workers=plan.workers, ten_crop=True, progress=False,
        snapshot_epochs=tuple(plan.snapshot_epochs))
    if plan.train_subset is not None:
        changes["data__train_subset"] = plan.train_subset
    if plan.val_subset is not None:
        changes["data__val_subset"] = plan.val_subset
    return apply_profile(TrainConfig(), profile).replace(**changes)


def run_train_command(args: list[str]) -> str:
    """Run the train command in a fresh process; returns its output.

    A failure raises RuntimeError with the command's last lines.
    """
    proc = subprocess.run([sys.executable, "-m", "alexnet_lib", *args],
                          capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(text.splitlines()[-15:])
        raise RuntimeError(f"the train command exited with status "
                           f"{proc.returncode}:\n{tail}")
    return text


def run_config(cfg: TrainConfig) -> str:
    """Train ``cfg`` in a fresh process, handed over as a config file
    (``train --config``: the settings themselves, no command line to
    parse back); returns its output. A failure raises RuntimeError with
    the command's last lines."""
    import json
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(cfg.to_dict()))
        return run_train_command(["train", "--profile", cfg.profile,
                                  "--config", str(path)])


def is_finished(out_dir: str | Path) -> bool:
    """True when the run's last record is its ten-crop test: training
    and every test are done (an unfinished run resumes instead)."""
    records = runlog.read_metrics(out_dir)
    done = bool(records) and records[-1].get("kind") == "ten_crop"
    return done and (Path(out_dir) / runlog.CHECKPOINT_FILE).is_file()


def load_run(out_dir: str | Path, device: str | torch.device = "cpu"
             ) -> tuple[nn.Module, TrainConfig, list[dict]]:
    """(model in eval mode, its TrainConfig, its metrics records)."""
    out = Path(out_dir)
    path = out / runlog.CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint in {out}: train the run first "
            f"(run_train_command(train_command(...)))")
    cfg = TrainConfig.from_dict(
        json.loads((out / runlog.CONFIG_FILE).read_text()))
    ckpt = load_checkpoint(path)  # checked: format, readable
    state = ckpt["model"]
    # fc8's rows are the classes; the other options are in the file.
    model = create_model(ckpt["model_name"],
                         num_classes=state["fc8.weight"].shape[0],
                         **ckpt["model_options"])
    model.load_state_dict(state)
    return model.to(device).eval(), cfg, runlog.read_metrics(out)


def input_mean(cfg: TrainConfig) -> torch.Tensor:
    """What the run subtracted from its centre patches: the training
    set's mean image (cached), cropped as the patch, (3, S, S)."""
    d = cfg.data
    mean = select_mean(d.mean, compute_mean_image(open_train(d, cfg.profile),
                                                  d.resize))
    if mean.shape[-1] == 1:  # per-channel mean or none
        return mean.expand(3, d.image_size, d.image_size).clone()
    return center_crop(mean, [d.image_size, d.image_size])


def centre_crops(cfg: TrainConfig, split: str, subset: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images uint8 (N, 3, S, S), labels (N,), class names) of a
    class-balanced subset of a split, as the run tests them: resized
    (§2) and centre-cropped. Network input: images.float() - mean."""
    d = cfg.data
    resize = ResizeCenterCrop(d.resize)

    def patch(img):  # the validation transform, before the mean
        return center_crop(resize(img), [d.image_size, d.image_size])

    folder = ImageNetFolder(imagenet_root(d, cfg.profile), split, patch,
                            d.on_corrupt, subset)
    images, labels = zip(*(folder[i] for i in range(len(folder))))
    return (torch.stack(images), torch.tensor(labels),
            list(folder.classes))


def wall_time_s(records: list[dict]) -> float:
    """A run's training time in seconds over all its segments: each
    record's ``wall_time_s`` counts from the start of its segment (the
    first start or a resume), so the run's time is the sum of every
    segment's last value."""
    ends: dict[int, float] = {}
    for r in records:
        seg = r.get("segment", 1)
        ends[seg] = max(ends.get(seg, 0.0), r["wall_time_s"])
    return sum(ends.values())


def run_summary(out_dir: str | Path) -> dict:
    """A finished run's numbers from its records: per epoch, ``val``
    (centre-patch top-1 error) and ``train`` (training error, with
    dropout and augmentation); after the last epoch ``top1`` and
    ``top5``; the ten-patch test's ``ten1`` and ``ten5``; the median
    ``rate`` in images/s over the epochs, ``minutes`` over all segments
    (:func:`wall_time_s`) and the number of ``epochs``."""
    records = runlog.read_metrics(out_dir)
    epochs = [r for r in records if r["kind"] == "epoch"]
    tens = [r for r in records if r["kind"] == "ten_crop"]
    if not epochs or not tens:
        raise ValueError(f"the run in {out_dir} has not finished: train "
                         f"it first (its records end before the "
                         f"ten-patch test)")
    import statistics
    return dict(val=[r["val_top1_error"] for r in epochs],
                train=[r["train_error"] for r in epochs],
                top1=epochs[-1]["val_top1_error"],
                top5=epochs[-1]["val_top5_error"],
                ten1=tens[-1]["top1_error"], ten5=tens[-1]["top5_error"],
                rate=statistics.median(r["images_per_s"] for r in epochs),
                minutes=wall_time_s(records) / 60, epochs=len(epochs))


def load_snapshots(out_dir: str | Path) -> dict[int, dict[str, torch.Tensor]]:
    """The convolutional weights a run kept (``--snapshot-epochs``):
    ``{epoch: {"conv1.weight": tensor, ...}}``, epochs ascending; empty
    when the run kept none."""
    found = {}
    for path in sorted((Path(out_dir) / "snapshots").glob("epoch-*.pt")):
        data = torch.load(path, map_location="cpu", weights_only=True)
        found[int(data["epoch"])] = data["conv_weights"]
    return dict(sorted(found.items()))


def estimate_minutes(plan: ImagenettePlan, epochs: int, profile: str = "cpu",
                     groups: int = 2, batch: int = 64, steps: int = 2,
                     model: str = "alexnet") -> dict[str, float]:
    """How long ``epochs`` epochs of ``plan`` would take here.

    Times ``steps`` training steps (after one untimed) of the plan's
    network on random batches, with the profile's speed settings (on a
    CPU: bf16 where it has bf16 instructions, channels_last on x86-64
    and with bf16), and scales the rate to
    the plan's training images plus its validation images (forward
    only: about a third of a training step each). Data loading is not
    timed, so the estimate is a lower bound. Returns images_per_s and
    minutes.
    """
    from alexnet_lib import speed
    device = "cuda" if profile != "cpu" and torch.cuda.is_available() \
        else "cpu"
    opts = apply_profile(TrainConfig(), profile).speed.resolve(device)
    options = {"groups": groups} if model == "alexnet" else {}
    net = create_model(model, num_classes=10, input_size=plan.image_size,
                       **options).to(device)
    speed.apply_speed(net, opts, device)
    s = plan.image_size
    x = torch.randn(batch, 3, s, s, device=device)
    if opts.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    step()  # untimed: first-call costs
    if device == "cuda":
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    rate = batch * steps / (time.perf_counter() - began)
    images = (plan.train_subset or 9469) + (plan.val_subset or 3925) / 3
    return {"images_per_s": rate, "minutes": epochs * images / rate / 60,
            "bf16": bool(opts.bf16), "device": device}


PREDICTIONS_FILE = "predictions.pt"


@torch.no_grad()
def predictions(out_dir: str | Path, device: str = "cpu") -> dict:
    """A finished run's softmax outputs on its validation images.

    ``centre`` (N, C): the centre patch; ``ten`` (N, C): the mean over
    the ten patches (§4.1); ``labels`` (N,); ``files`` (the N image
    paths) and ``classes``. Computed once, with the loaders, batches
    and speed settings (bf16 where the run used it) of the run's own
    validation and ten-patch test, so the error rates equal its records
    (in bf16 up to a flipped near-tie); kept in the run folder
    (``predictions.pt``) until the checkpoint changes.
    """
    from alexnet_lib.data.build import build_loaders, build_ten_crop_loader
    from alexnet_lib.speed import apply_speed
    out = Path(out_dir)
    path, ckpt = out / PREDICTIONS_FILE, out / runlog.CHECKPOINT_FILE
    if path.is_file() and ckpt.is_file() and \
            path.stat().st_mtime >= ckpt.stat().st_mtime:
        return torch.load(path, map_location="cpu", weights_only=True)
    model, cfg, _ = load_run(out, device)
    model = apply_speed(model, cfg.speed, device)
    # the two loaders of the run's own tests: the centre patches of its
    # per-epoch validation, the ten patches of its last test (bf16
    # results depend on the batch, so the batches must be the same)
    centre, labels = [], []
    for x, y in build_loaders(cfg.data, cfg.optim.batch_size, cfg.seed,
                              cfg.profile)[1]:
        centre.append(model(x.to(device)).float().softmax(1).cpu())
        labels.append(torch.as_tensor(y))
    loader = build_ten_crop_loader(cfg.data, cfg.optim.batch_size,
                                   cfg.profile)
    ten = []
    for x, _ in loader:  # x: (B, 10, 3, S, S)
        p = model(x.to(device).flatten(0, 1)).float().softmax(1)
        ten.append(p.view(x.shape[0], 10, -1).mean(1).cpu())
    data = loader.dataset
    result = {"centre": torch.cat(centre), "ten": torch.cat(ten),
              "labels": torch.cat(labels),
              "files": [str(data.name(i)) for i in range(len(data))],
              "classes": list(data.classes)}
    tmp = path.with_suffix(".pt.tmp")
    torch.save(result, tmp)
    os.replace(tmp, path)
    return result


def plan_differences(out_dir: str | Path, cfg: TrainConfig) -> list[str]:
    """What the run in ``out_dir`` was trained with that ``cfg`` (see
    ``plan_config``) would now do differently: "name: was -> now" for
    the model options, patch sizes, subsets, epochs, seed and snapshots
    (an older cached run of a plan that has since changed)."""
    saved = json.loads((Path(out_dir) / runlog.CONFIG_FILE).read_text())
    now = cfg.to_dict()
    fields = [("model_options",), ("data", "image_size"),
              ("data", "resize"), ("data", "train_subset"),
              ("data", "val_subset"), ("epochs",), ("seed",),
              ("snapshot_epochs",)]
    changed = []
    for path in fields:
        was, new = saved, now
        for key in path:
            was, new = was.get(key), new.get(key)
        if isinstance(new, tuple):
            new = list(new)
        if was != new:
            changed.append(f"{'.'.join(path)}: {was} -> {new}")
    return changed


def ensure_run(plan: ImagenettePlan, out_dir: str | Path, profile: str,
               seed: int = 0, groups: int = 2,
               expected_epochs: int | None = None,
               model: str = "alexnet") -> tuple[str, float]:
    """Load a finished run, or train it now (what §6 and §6.1 do).

    Prints the command as a reader would type it (the run folder under
    ``$ALEXNET_CACHE`` or ``~/.cache/alexnet_lib``), then either that the
    run finished before, or an estimate from :func:`estimate_minutes`
    (``expected_epochs``, default the plan's) and trains; an interrupted
    run resumes. Returns (the command, seconds spent training here).
    """
    out = Path(out_dir)
    args = train_command(plan, out, profile, seed=seed, groups=groups,
                         model=model)
    cache = "$ALEXNET_CACHE" if "ALEXNET_CACHE" in os.environ else (
        "~/.cache/alexnet_lib")
    command = "python -m alexnet_lib " + " ".join(args).replace(
        str(out), f"{cache}/{RUNS_FOLDER}/{out.name}")
    print(command)
    if is_finished(out):
        print(f"  finished before: loading {out.name}")
        changed = plan_differences(out, plan_config(
            plan, out, profile, seed=seed, groups=groups, model=model))
        if changed:
            print(f"  note: it was trained with another plan ("
                  f"{'; '.join(changed)}) and is used as it is; delete "
                  f"the folder to train the current one")
        return command, 0.0
    epochs = expected_epochs or plan.epochs
    guess = estimate_minutes(plan, epochs, profile, groups, model=model)
    minutes = guess["minutes"]
    when = f"{minutes:.0f} min" if minutes >= 1 else f"{60 * minutes:.0f} s"
    print(f"  not in the cache: training it now, about {when} or more "
          f"on this machine "
          f"({guess['images_per_s']:.0f} images/s in a timed step, "
          f"{epochs} epochs); if interrupted, it resumes", flush=True)
    began = time.perf_counter()
    # the printed command and this config are the same settings (a test
    # keeps train_command and plan_config equal)
    run_config(plan_config(plan, out, profile, seed=seed, groups=groups,
                           model=model))
    seconds = time.perf_counter() - began
    print(f"  trained in {seconds / 60:.1f} min")
    return command, seconds
