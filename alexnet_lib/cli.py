"""Command line: ``python -m alexnet_lib {train,prepare-shards,fetch,
models,profiles,settings}``.

    python -m alexnet_lib train --model cifar_4layer --dataset cifar10 \\
        --profile ci --out runs/try
    torchrun --standalone --nproc_per_node=2 -m alexnet_lib train ...
    python -m alexnet_lib prepare-shards --data DIR --out SHARDS
    python -m alexnet_lib fetch imagenette --size 160px

A profile sets how much work a run does; flags given explicitly win over
it. Every setting also has a name (``python -m alexnet_lib settings``):
``--set optim.lr=0.001`` changes any of them, ``--config FILE`` reads
them from a JSON file shaped like a run's config.json (later wins:
profile, config file, flags, ``--set``). Mistakes in the input (unknown profile, bad value, missing data,
unusable checkpoint) print one line to stderr and exit with status 2.
SIGTERM or a first Ctrl-C (SIGINT) saves a checkpoint after the update
in progress and exits with 128 + the signal number (143 for SIGTERM,
130 for SIGINT), the shell's code for "ended by that signal": torchrun
--max-restarts then restarts a worker that alone was stopped, and the
same command resumes. A second Ctrl-C aborts at once.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any, Sequence

from alexnet_lib.config import (CHOICES, PROFILE_ENV, PROFILES,
                                ConfigError, TrainConfig, apply_profile,
                                setting_type)

# The settings that have a flag of their own: flag -> (setting name,
# help, metavar). Each flag's type, its choices and, for a true/false
# setting, its --no- form come from the setting in config.py; every
# other setting is reached with --set NAME=VALUE.
_SPEED = ("; not in the paper (default: on for CUDA with --profile "
          "imagenet, else off)")
FLAGS: dict[str, tuple[str, str, str | None]] = {
    "--dataset": ("data.dataset", "data set: imagenet means any "
                  "ILSVRC-layout folder such as Imagenette (paper: "
                  "ILSVRC-2010/2012, §2; default imagenet)", None),
    "--data": ("data.root", "folder holding the data set, or the shards "
               "prepare-shards wrote (default: $ALEXNET_DATA, else "
               "~/.cache/alexnet_lib/data)", "PATH"),
    "--data-format": ("data.format", "ImageNet input; auto (default): "
                      "shards if --data holds shards.json, else folder",
                      None),
    "--val-data": ("data.val_root", "folder holding val/, or val shards "
                   "(default: --data, or the folder shards were made "
                   "from)", "PATH"),
    "--epochs": ("epochs", "passes over the training set (paper: about "
                 "90, §5)", "N"),
    "--max-steps": ("max_steps", "stop after this many updates in total; "
                    "a later run with a larger value resumes exactly",
                    "N"),
    "--batch-size": ("optim.batch_size", "global batch size, split over "
                     "processes under torchrun (paper: 128, §5)", "N"),
    "--lr": ("optim.lr", "initial learning rate ε (paper: 0.01, §5)",
             "LR"),
    "--momentum": ("optim.momentum", "momentum (paper: 0.9, §5)", "M"),
    "--weight-decay": ("optim.weight_decay", "weight decay (paper: "
                       "0.0005, §5)", "WD"),
    "--update-rule": ("optim.update_rule", "paper: §5's update with ε "
                      "inside the velocity; torch: torch.optim.SGD, which "
                      "differs after a learning-rate drop (default: "
                      "paper)", None),
    "--patience": ("optim.plateau_patience", "epochs without a better "
                   "validation error before the rate is divided by 10, "
                   "at most 3 times (§5 does this by hand; default 2)",
                   "EPOCHS"),
    "--seed": ("seed", "random seed: the same seed gives the same "
               "weights on a CPU (default 0)", "N"),
    "--out": ("out_dir", "run folder for checkpoint.pt, config.json, "
              "env.json and metrics.jsonl (default runs/alexnet)", "DIR"),
    "--checkpoint-every": ("checkpoint_every", "also save a checkpoint "
                           "every N updates (default 0: only at each "
                           "epoch's end)", "N"),
    "--workers": ("data.num_workers", "data-loading worker processes "
                  "(the gpu profile uses 8)", "N"),
    "--image-size": ("data.image_size", "side of the square patch the "
                     "network sees (paper: 224, §3.5; 24 for the CIFAR "
                     "nets of §3.3)", "S"),
    "--resize": ("data.resize", "ImageNet input: side the images are "
                 "resized and centre-cropped to before the patches are "
                 "taken (paper: 256, §2)", "S"),
    "--train-subset": ("data.train_subset", "use only N training images, "
                       "the first of each class (ci profile: 256)", "N"),
    "--val-subset": ("data.val_subset", "use only N validation images, "
                     "the first of each class (ci profile: 128)", "N"),
    "--download": ("data.download", "download CIFAR-10 or Imagenette "
                   "with torchvision if it is missing", None),
    "--device": ("device", "auto (CUDA if present, else CPU), cpu, cuda "
                 "or cuda:N", "DEVICE"),
    "--ten-crop": ("ten_crop", "after training, also score the averaged "
                   "softmax of ten patches (four corners, centre and "
                   "their reflections; §4.1)", None),
    "--snapshot-epochs": ("snapshot_epochs", "keep the convolutional "
                          "weights after these epochs and the last one "
                          "in <out>/snapshots/ (for studying how features "
                          "form)", "E,E,..."),
    "--decode": ("data.decode", "ImageNet input: pil decodes and augments "
                 "each image in a worker; batched: workers only read "
                 "files, the device (GPU if used) decodes and augments "
                 "whole batches, giving the same images (default pil)",
                 None),
    "--on-corrupt": ("data.on_corrupt", "an image that cannot be read: "
                     "skip it (named, counted in metrics.jsonl) or stop "
                     "the run (default skip)", None),
    "--bf16": ("speed.bf16", "bfloat16 autocast of convolutions and "
               "matmuls" + _SPEED, None),
    "--channels-last": ("speed.channels_last", "NHWC memory layout "
                        "(tensor-core friendly)" + _SPEED, None),
    "--compile": ("speed.compile", "torch.compile the model (minutes of "
                  "compiling first)" + _SPEED, None),
    "--cudnn-benchmark": ("speed.cudnn_benchmark", "let cuDNN time its "
                          "algorithms per shape" + _SPEED, None),
    "--tf32": ("speed.tf32", "TF32 tensor cores for float32 matmuls and "
               "convolutions" + _SPEED, None),
}
FLAG_OF = {name: flag for flag, (name, _, _) in FLAGS.items()}


def _epoch_list(text: str) -> tuple[int, ...]:
    """1,2,5,10 -> (1, 2, 5, 10)."""
    try:
        epochs = tuple(sorted({int(e) for e in text.split(",") if e}))
    except ValueError:
        epochs = ()
    if not epochs or epochs[0] < 1:
        raise argparse.ArgumentTypeError(
            f"--snapshot-epochs wants epoch numbers >= 1 like 1,2,5,10, "
            f"got {text!r}")
    return epochs


def _key_value(flag: str, example: str):
    """An argparse type for ``flag``'s NAME=VALUE; VALUE is read as JSON
    when it parses (3, 0.5, true, [1,2]), else kept as text."""
    def parse(text: str) -> tuple[str, Any]:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(
                f"{flag} wants {example}, got {text!r}")
        try:
            return key.strip(), json.loads(value)
        except json.JSONDecodeError:
            return key.strip(), value
    return parse


_setting = _key_value("--set", "NAME=VALUE like optim.lr=0.001")
_option = _key_value("--model-option", "KEY=VALUE")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m alexnet_lib",
        description="AlexNet (Krizhevsky et al., 2012) reproduced in "
                    "PyTorch: train models, list models and run profiles.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train", help="train a model (resumes from --out if it can)",
        description="Train a model as §5 of the paper does. A profile "
                    "sets the amount of work; explicit flags win over it.")
    a = t.add_argument
    a("--config", metavar="FILE", help="settings from a JSON file "
      "shaped like a run's config.json (any part of it); explicit flags "
      "and --set win over it")
    a("--set", action="append", type=_setting, default=[],
      metavar="NAME=VALUE", dest="settings", help="any setting by name, "
      "repeatable: optim.lr=0.001, data.pca_lighting=0, epochs=5, "
      "speed.bf16=true (VALUE read as JSON when possible); applied last. "
      "All names: python -m alexnet_lib settings")
    a("--model", default=None,
      help="model to train, see `python -m alexnet_lib models` "
           "(default: alexnet, the paper's network, §3)")
    a("--model-option", action="append", type=_option, default=[],
      metavar="KEY=VALUE", help="a model constructor option, repeatable; "
      "VALUE is read as JSON when possible (e.g. lrn=false, dropout=0)")
    a("--profile", default=os.environ.get(PROFILE_ENV, "gpu"),
      metavar="NAME",
      help=f"run profile, one of {', '.join(PROFILES)}: sets epochs and "
           f"subset sizes, never the method (default: ${PROFILE_ENV}, "
           f"else gpu)")
    a("--no-resume", action="store_true", help="start afresh even if "
      "the run folder holds a checkpoint (its files are moved to "
      "DIR/old-runs/, never deleted)")
    a("--allow-change", metavar="NAMES", help="comma-separated settings "
      "a resume may change on purpose, of lr, momentum, weight-decay, "
      "patience, data, val-data, batch-size (a resume refuses any "
      "other change)")
    a("--resume", metavar="CHECKPOINT", help="resume from this "
      "checkpoint file instead of DIR/checkpoint.pt")
    a("--no-progress", action="store_true", help="hide progress bars")
    _setting_flags(a)
    _shards_parser(sub)
    _fetch_parser(sub)
    sub.add_parser("models", help="list the models and their parameter "
                   "counts")
    sub.add_parser("profiles", help="list the run profiles")
    st = sub.add_parser("settings", help="list every setting --set and "
                        "--config take, with its default")
    st.add_argument("--model", metavar="NAME", help="also list this "
                    "model's options (model_options.KEY), with their "
                    "types and defaults")
    return p


def _setting_flags(add) -> None:
    """One flag per FLAGS entry, typed by its setting in config.py."""
    for flag, (name, text, metavar) in FLAGS.items():
        kind = setting_type(name)
        if kind is bool:  # --x / --no-x; not given: the profile decides
            add(flag, dest=name, action=argparse.BooleanOptionalAction,
                default=None, help=text)
        elif name in CHOICES:
            add(flag, dest=name, choices=CHOICES[name], help=text)
        else:
            add(flag, dest=name, metavar=metavar, help=text,
                type=_epoch_list if kind is tuple else kind)


def _shards_parser(sub) -> None:
    s = sub.add_parser(
        "prepare-shards", help="write a split once as tar shards of "
        "images with shorter side 256 (resumable)",
        description="Decode and check every image of a split, resize "
                    "its shorter side to 256 (§2) and write WebDataset-"
                    "style tar shards (<key>.jpg + <key>.cls). Corrupt "
                    "images are reported and skipped; run the same "
                    "command again to finish an interrupted run.")
    a = s.add_argument
    a("--data", metavar="PATH", help="ImageNet-format folder with "
      "train/ and val/ (default: found under $ALEXNET_DATA)")
    a("--out", metavar="DIR", required=True, help="folder for the "
      "shards and shards.json")
    a("--split", default="train", help="train or val (default train)")
    a("--shard-size", type=int, default=1000, metavar="N",
      help="images per shard (default 1000, ~25 MB at 256 px)")
    a("--resize", type=int, default=256, metavar="S", help="shorter "
      "side of the stored images (paper: 256, §2)")
    a("--quality", type=int, default=95, metavar="Q", help="JPEG "
      "quality of resized images (default 95; smaller ones are copied)")
    a("--subset", type=int, metavar="N", help="only N images, the "
      "first of each class")
    a("--no-progress", action="store_true", help="hide the progress bar")


def _fetch_parser(sub) -> None:
    f = sub.add_parser(
        "fetch", help="download CIFAR-10, MNIST or Imagenette with torchvision",
        description="Download a data set into the data folder "
                    "($ALEXNET_DATA, else ~/.cache/alexnet_lib/data), "
                    "where every command and notebook finds it.")
    # plain strings, checked in _fetch: a mistake is one line, exit 2
    f.add_argument("dataset", nargs="?", metavar="{cifar10,imagenette,mnist}")
    f.add_argument("--size", metavar="{160px,320px,full}", help="Imagenette "
                   "images: shorter side 160 px (cpu profile, default), "
                   "320 px (gpu) or full size")
    f.add_argument("--data", metavar="DIR", help="folder to download "
                   "into (default: $ALEXNET_DATA, else "
                   "~/.cache/alexnet_lib/data)")


def _fetch(args: argparse.Namespace) -> int:
    from alexnet_lib.data.locate import (FETCHABLE, IMAGENETTE_SIZES,
                                         describe_dataset, fetch)
    if args.dataset not in FETCHABLE:
        raise ConfigError(
            f"cannot fetch {args.dataset!r}: choose "
            f"{' or '.join(FETCHABLE)}" if args.dataset else
            f"name the data set to fetch: {' or '.join(FETCHABLE)}")
    if args.dataset != "imagenette" and args.size is not None:
        raise ConfigError(f"--size is for imagenette; {args.dataset} has "
                          f"one size")
    size = args.size or "160px"
    if size not in IMAGENETTE_SIZES:
        raise ConfigError(f"--size must be one of "
                          f"{', '.join(IMAGENETTE_SIZES)}, got {size!r}")
    if args.data is not None and os.path.exists(args.data) \
            and not os.path.isdir(args.data):
        raise ConfigError(f"--data {args.data} is a file: pass the "
                          f"folder to download into")
    path = fetch(args.dataset, args.data, size)
    print(f"{describe_dataset(args.dataset, path)}: {path}")
    return 0


def _prepare_shards(args: argparse.Namespace) -> int:
    from alexnet_lib.data.shards import prepare_shards
    if args.data is not None and not os.path.isdir(args.data):
        raise ConfigError(f"data folder {args.data} does not exist: pass "
                          f"--data with the folder that holds train/ and "
                          f"val/")
    m = prepare_shards(args.data, args.out, args.split, args.shard_size,
                       args.resize, args.quality, args.subset,
                       progress=not args.no_progress)
    n = sum(e["count"] for e in m["shards"].values())
    print(f"{n} images in {len(m['shards'])} shards, "
          f"{len(m['corrupt'])} corrupt skipped: {args.out}")
    return 0


# settings that only ImageNet-format input reads
IMAGENET_ONLY = ("data.resize", "data.decode", "data.format",
                 "data.val_root")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig a ``train`` command line asks for (``fit``
    validates it, once, before it touches any data)."""
    from alexnet_lib.config import apply_settings, read_config_file
    # Later wins: the profile, the config file, the flags, then --set.
    cfg = apply_profile(TrainConfig(), args.profile)
    if args.config:
        cfg = apply_settings(cfg, read_config_file(args.config))
    flagged = {name: getattr(args, name) for name in FLAG_OF
               if getattr(args, name) is not None}
    if args.model is not None:
        flagged["model"] = args.model
    for key, value in args.model_option:
        flagged[f"model_options.{key}"] = value
    if args.no_resume:
        flagged["resume"] = False
    if args.no_progress:
        flagged["progress"] = False
    cfg = apply_settings(apply_settings(cfg, flagged), dict(args.settings))
    ignored = [FLAG_OF[name] for name in IMAGENET_ONLY if name in flagged]
    if cfg.data.dataset == "cifar10" and ignored:
        raise ConfigError(f"{', '.join(ignored)} only apply to --dataset "
                          f"imagenet, not cifar10: leave them out")
    from alexnet_lib.models import list_models
    if cfg.model not in list_models():
        raise ConfigError(f"unknown model {cfg.model!r}; choose one of "
                          f"{', '.join(list_models())} (python -m "
                          f"alexnet_lib models)")
    if cfg.data.root is not None and not os.path.isdir(cfg.data.root):
        raise ConfigError(f"data folder {cfg.data.root} does not exist: "
                          f"pass --data with the folder that holds the "
                          f"data set, or set ALEXNET_DATA")
    return cfg


def _allowed(args: argparse.Namespace) -> tuple[str, ...]:
    names = (args.allow_change or "").replace(" ", "").split(",")
    return tuple(n for n in names if n)


def _train(args: argparse.Namespace) -> int:
    from alexnet_lib.signals import stop_on
    from alexnet_lib.train import fit
    cfg = config_from_args(args)
    with stop_on(signal.SIGTERM, signal.SIGINT) as stop:
        results = fit(cfg, resume_from=args.resume,
                      allow_changes=_allowed(args))
    main = results["world_size"] == 1 or os.environ.get("RANK", "0") == "0"
    if results["stopped"] == "signal":
        if main:
            print(f"stopped by {results['signal']} after "
                  f"{results['global_step']} updates; checkpoint saved to "
                  f"{results['checkpoint']}: run the same command again "
                  f"to resume", file=sys.stderr)
        return 128 + (stop.signum or signal.SIGTERM)
    if main:
        print(f"{cfg.model}: val top-1 error {results['val_top1_error']:.4f}"
              f", top-5 error {results['val_top5_error']:.4f} after "
              f"{results['global_step']} updates (stopped: "
              f"{results['stopped']}); {results['skipped_images']} "
              f"unreadable images skipped; run folder "
              f"{results['out_dir']}")
        if results["at_chance"]:
            print(f"warning: {results['at_chance']}", file=sys.stderr)
    return 0


def _models() -> int:
    import torch

    from alexnet_lib.models import create_model, list_models
    print(f"{'model':<22}{'parameters':>14}")
    for name in list_models():
        try:  # meta tensors: count parameters without allocating them
            with torch.device("meta"):
                model = create_model(name)
        except Exception:  # noqa: BLE001 (a model that needs real memory)
            model = create_model(name)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name:<22}{count:>14,}")
    return 0


def _settings(model: str | None) -> int:
    from alexnet_lib.config import _default_of, setting_names
    from alexnet_lib.models import list_models, model_options
    if model is not None and model not in list_models():
        raise ConfigError(f"unknown model {model!r}; choose one of "
                          f"{', '.join(list_models())}")
    for name in setting_names():
        print(f"{name:<24}{json.dumps(_default_of(name))}")
    for key, (kind, default) in (model_options(model).items()
                                 if model else ()):
        name = f"model_options.{key}"
        print(f"{name:<24}{json.dumps(default, default=str)} ({kind})"
              if len(name) < 24 else
              f"{name} {json.dumps(default, default=str)} ({kind})")
    return 0


def _profiles() -> int:
    for p in PROFILES.values():
        print(f"{p.name:<9}{p.description} [{p.hardware}]")
        print(f"{'':<9}overrides: {p.overrides}")
    return 0


def _exit_code(error: Exception) -> int | None:
    """2: a mistake in the input; 1: the run diverged; None: a bug."""
    from alexnet_lib.checkpoint import CheckpointError
    from alexnet_lib.data.errors import DataError
    from alexnet_lib.train import TrainingDivergedError
    if isinstance(error, (ConfigError, CheckpointError, DataError)):
        return 2
    if isinstance(error, TrainingDivergedError):
        return 1
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "prepare-shards":
            return _prepare_shards(args)
        if args.command == "fetch":
            return _fetch(args)
        if args.command == "settings":
            return _settings(args.model)
        return _models() if args.command == "models" else _profiles()
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume",
              file=sys.stderr)
        return 130
    except Exception as e:
        code = _exit_code(e)
        if code is None:
            raise  # a bug: keep the traceback
        print(f"error: {e}", file=sys.stderr)
        return code
