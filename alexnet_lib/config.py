"""The paper's hyper-parameters, held once, and the named run profiles.

Every default is the paper's value, annotated with its section. A profile
(``ci``, ``cpu``, ``gpu``, ``imagenet``) only changes how much work a run
does, never what the method is.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILE_ENV = "ALEXNET_PROFILE"  # chooses the profile inside notebooks
DATA_ENV = "ALEXNET_DATA"  # folder that holds the data sets
CACHE_ENV = "ALEXNET_CACHE"  # folder for decoded tensors, mean images
DATA_FORMATS = ("auto", "folder", "shards")  # DataConfig.format


class ConfigError(ValueError):
    """A configuration value a run cannot use; the message says the fix."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "imagenet"  # "cifar10" or "imagenet" (any ILSVRC layout)
    root: str | None = None  # None: search as data/locate.py says
    # ImageNet: "folder" (<root>/{train,val}/<synset>/), "shards" (root
    # is what prepare-shards wrote) or "auto" (shards if root holds a
    # shards.json); see alexnet_lib/data/sources.py
    format: str = "auto"
    # validation images: a folder with val/ or val shards; None: root,
    # or for shards the folder they were made from
    val_root: str | None = None
    image_size: int = 224  # §3.5 network input (see AlexNet input_size)
    resize: int = 256  # §2 shorter side to 256, central 256x256
    random_crop: bool = True  # §4.1 random crops of the resized image
    flip: bool = True  # §4.1 horizontal reflections
    pca_lighting: float = 0.1  # §4.1 std of alpha; 0 turns it off
    mean: str = "pixel"  # §2 subtract the per-pixel mean image
    train_subset: int | None = None  # first N training images (profiles)
    val_subset: int | None = None  # first N validation images
    num_workers: int = 0  # DataLoader worker processes
    # ImageNet folders: "pil" decodes and augments each image in a
    # worker; "batched": workers only read the files, the device decodes
    # and augments whole batches (data/jpeg_batch.py, same images).
    # "pil" stays the default until the CUDA path is measured on a GPU.
    decode: str = "pil"
    on_corrupt: str = "skip"  # "skip" (count and report) or "stop"
    # fetch CIFAR-10 / Imagenette with torchvision if missing; None: as
    # the profile says (cpu, gpu: yes; ci never), see data/locate.py
    download: bool | None = None


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.01  # §5 initial learning rate
    momentum: float = 0.9  # §5
    weight_decay: float = 5e-4  # §5
    batch_size: int = 128  # §5
    update_rule: str = "paper"  # §5 exact rule; "torch" = torch.optim.SGD
    lr_drop: float = 0.1  # §5 divide by 10 ...
    max_lr_drops: int = 3  # §5 ... three times before stopping
    # DEVIATION: the paper drops the rate "when the validation error
    # stopped improving" by hand; we automate it with a patience in epochs.
    plateau_patience: int = 2


@dataclass(frozen=True)
class SpeedConfig:
    """Arithmetic options of today's GPUs (alexnet_lib/speed.py).

    None: on for CUDA; on a CPU, bf16 is on where the CPU has bfloat16
    instructions (speed.cpu_has_native_bf16), channels_last on x86-64
    CPUs and where bf16 is (speed.cpu_prefers_channels_last), the others
    off. False, the default, keeps every other run computing
    as it always did. Not in the paper; speed.check_option compares
    each with float32 eager results.
    """
    # DEVIATION (engineering): (imagenet profile on CUDA; cpu and
    # imagenet profiles on CPUs with bf16 instructions) bf16 autocast
    # and TF32 compute with shorter mantissas than the paper's float32
    # (speed.TOLERANCES).
    bf16: bool | None = False  # bfloat16 autocast
    channels_last: bool | None = False  # NHWC memory layout
    compile: bool | None = False  # torch.compile
    cudnn_benchmark: bool | None = False  # cuDNN autotuning
    tf32: bool | None = False  # TF32 tensor cores for float32

    def resolve(self, device_type: str) -> "SpeedConfig":
        """Every None replaced by the default for ``device_type``."""
        names = dataclasses.asdict(self)
        auto = dict.fromkeys(names, device_type == "cuda")
        if device_type == "cpu" and None in (self.bf16, self.channels_last):
            from alexnet_lib.speed import (cpu_has_native_bf16,
                                           cpu_prefers_channels_last)
            auto["bf16"] = cpu_has_native_bf16()
            auto["channels_last"] = cpu_prefers_channels_last()
        return SpeedConfig(**{k: auto[k] if v is None else v
                              for k, v in names.items()})


@dataclass(frozen=True)
class TrainConfig:
    model: str = "alexnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    epochs: int = 90  # §5 "roughly 90 cycles"
    max_steps: int | None = None  # stop after this many updates in total
    seed: int = 0
    device: str = "auto"  # "auto": cuda if present, else cpu
    out_dir: str = "runs/alexnet"
    resume: bool = True  # continue from out_dir/checkpoint.pt if present
    checkpoint_every: int = 0  # also save every N steps (0: epoch ends)
    ten_crop: bool = False  # 10-patch test (§4.1) after the last epoch
    # keep the conv weights after these epochs (snapshots/, small)
    snapshot_epochs: tuple[int, ...] = ()
    profile: str = "gpu"
    progress: bool = True  # tqdm bars

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["data"] = DataConfig(**d.get("data", {}))
        d["optim"] = OptimConfig(**d.get("optim", {}))
        d["speed"] = SpeedConfig(**d.get("speed", {}))
        d["snapshot_epochs"] = tuple(d.get("snapshot_epochs", ()))
        return cls(**d)

    def replace(self, **changes: Any) -> "TrainConfig":
        """Copy with changes; ``data__x``, ``optim__x``, ``speed__x``
        reach nested fields."""
        top = {k: v for k, v in changes.items() if "__" not in k}
        for part in ("data", "optim", "speed"):
            nested = {k[len(part) + 2:]: v for k, v in changes.items()
                      if k.startswith(part + "__")}
            if nested:
                top[part] = dataclasses.replace(getattr(self, part),
                                                **nested)
        return dataclasses.replace(self, **top)


@dataclass(frozen=True)
class Profile:
    """How much work a run does; the method stays the paper's."""
    name: str
    description: str
    hardware: str
    overrides: dict[str, Any]


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("ci", "seconds: a tiny real subset, 1 epoch", "2 CPU cores",
            {"epochs": 1, "data__train_subset": 256,
             "data__val_subset": 128, "optim__batch_size": 32,
             "progress": False}),
    Profile("cpu", "a laptop: about 30 minutes per experiment",
            "2-8 CPU cores", {"epochs": 3, "data__train_subset": 5000,
                              "data__val_subset": 1000,
                              # bf16 where the CPU has bf16
                              # instructions, channels_last on x86-64
                              # CPUs and with bf16 (None: by hardware)
                              "speed__bf16": None,
                              "speed__channels_last": None}),
    Profile("gpu", "the full experiment on its data set", "one CUDA GPU",
            {"data__num_workers": 8}),
    Profile("imagenet", "the paper's recipe on ILSVRC-2012 (§5)",
            "1-8 CUDA GPUs, fast disk", {
                "epochs": 90, "data__num_workers": 12,
                # every speed option on for CUDA (None: by device)
                "speed__bf16": None, "speed__channels_last": None,
                "speed__compile": None, "speed__cudnn_benchmark": None,
                "speed__tf32": None}),
]}


def get_profile(name: str) -> Profile:
    if name not in PROFILES:
        raise ConfigError(
            f"unknown run profile {name!r}; choose one of "
            f"{', '.join(PROFILES)} (set {PROFILE_ENV} or --profile)")
    return PROFILES[name]


def current_profile(default: str = "cpu") -> str:
    """The profile named by $ALEXNET_PROFILE, checked; for notebooks."""
    name = os.environ.get(PROFILE_ENV, default)
    return get_profile(name).name


def apply_profile(cfg: TrainConfig, name: str) -> TrainConfig:
    profile = get_profile(name)
    return cfg.replace(profile=profile.name, **profile.overrides)


SECTIONS = ("data", "optim", "speed")  # nested parts of TrainConfig

# The values a text setting may take: validate() checks them and the
# command line offers them as its flags' choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.dataset": ("cifar10", "imagenet"),
    "data.format": DATA_FORMATS,
    "data.decode": ("pil", "batched"),
    "data.on_corrupt": ("skip", "stop"),
    "data.mean": ("pixel", "channel", "none"),
    "optim.update_rule": ("paper", "torch"),
}
_KINDS = {"bool": bool, "int": int, "float": float, "str": str}


def setting_names() -> list[str]:
    """Every setting a run has, as "epochs", "optim.lr", "data.flip", ..."""
    names = []
    for f in dataclasses.fields(TrainConfig):
        if f.name in SECTIONS:
            section = {"data": DataConfig, "optim": OptimConfig,
                       "speed": SpeedConfig}[f.name]
            names += [f"{f.name}.{g.name}"
                      for g in dataclasses.fields(section)]
        else:
            names.append(f.name)
    return names


def setting_type(name: str) -> type:
    """What setting ``name`` holds, from its annotation: bool, int,
    float, str, tuple or dict (``None`` allowed or not)."""
    section, _, field_name = name.rpartition(".")
    owner = {"": TrainConfig, "data": DataConfig, "optim": OptimConfig,
             "speed": SpeedConfig}[section]
    annotation = next(f.type for f in dataclasses.fields(owner)
                      if f.name == field_name)
    base = str(annotation).replace(" | None", "").split("[")[0]
    return _KINDS.get(base) or {"tuple": tuple, "dict": dict}[base]


def _default_of(name: str) -> Any:
    cfg: Any = TrainConfig()
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _coerce(name: str, value: Any) -> Any:
    """``value`` as the type of setting ``name`` (``setting_type``), or
    a ConfigError that says what the setting takes."""
    kind = setting_type(name)
    if value is None and (_default_of(name) is None
                          or name.startswith("speed.")):
        return None  # "not set" (speed: decided by the hardware)

    def wrong(takes: str):
        return ConfigError(f"setting {name} takes {takes}, got {value!r}")
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or int(value) != value:
            raise wrong("a whole number")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise wrong("a text")
    elif kind is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong("a list like [1, 2, 5]")
        value = tuple(value)
    elif kind is dict:
        if not isinstance(value, dict):
            raise wrong('an object like {"dropout": 0}')
    return value


def apply_settings(cfg: TrainConfig, settings: dict[str, Any]
                   ) -> TrainConfig:
    """``cfg`` with ``{"optim.lr": 0.001, "epochs": 5, ...}`` applied:
    the one way every setting can be changed by name (the command
    line's flags, ``--set`` and ``--config``). ``model_options.KEY``
    sets one option of the model (``model_options``: all of them). An
    unknown name or a value of the wrong type raises ConfigError naming
    what is allowed."""
    known = setting_names()
    changes = {}
    options = dict(cfg.model_options)
    for name, value in settings.items():
        if name.startswith("model_options.") and name.count(".") == 1:
            # one model option; typed by the model (models.model_options)
            # when the model is built
            options[name.split(".", 1)[1]] = value
            changes["model_options"] = options
            continue
        if name not in known:
            near = [k for k in known if k.split(".")[-1] ==
                    name.split(".")[-1]]
            hint = (f"did you mean {' or '.join(near)}?" if near else
                    "`python -m alexnet_lib settings` lists them all")
            raise ConfigError(f"unknown setting {name!r}: {hint}")
        changes[name.replace(".", "__")] = _coerce(name, value)
        if name == "model_options":
            options = dict(changes["model_options"])
    return cfg.replace(**changes)


def flatten_settings(tree: dict[str, Any]) -> dict[str, Any]:
    """A config.json-style dict ({"optim": {"lr": ...}, ...}) as dotted
    names ({"optim.lr": ...}); a section must hold an object."""
    flat = {}
    for key, value in tree.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"setting {key} must be an object of "
                                  f"{key}.* settings, got {value!r}")
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a JSON file shaped like a run's config.json
    (any subset of it), as dotted names."""
    import json
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: "
                          f"{e.strerror or e}") from None
    try:
        tree = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config file {path} is not valid JSON (line "
                          f"{e.lineno}: {e.msg})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a JSON object "
                          f"like a run's config.json")
    return flatten_settings(tree)


def default_data_root() -> Path:
    """The documented data folder: ~/.cache/alexnet_lib/data."""
    return Path.home() / ".cache" / "alexnet_lib" / "data"


def data_root() -> Path:
    """Where data sets live and downloads go: $ALEXNET_DATA, else
    default_data_root(). Search order: alexnet_lib/data/locate.py."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_root()


def cache_root() -> Path:
    """Writable folder for derived files (decoded tensors, mean images)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "alexnet_lib"


def validate(cfg: TrainConfig) -> TrainConfig:
    """Reject values no run can use, with a message that says the fix."""
    o, d = cfg.optim, cfg.data
    checks = [
        (o.lr > 0, f"optim.lr must be > 0 (paper §5: 0.01), got {o.lr}"),
        (0 <= o.momentum < 1,
         f"optim.momentum must be in [0, 1) (paper: 0.9), got {o.momentum}"),
        (o.weight_decay >= 0,
         f"optim.weight_decay must be >= 0 (paper: 5e-4), "
         f"got {o.weight_decay}"),
        (o.batch_size >= 1,
         f"optim.batch_size must be >= 1 (paper: 128), got {o.batch_size}"),
        (o.update_rule in CHOICES["optim.update_rule"],
         f"optim.update_rule must be 'paper' or 'torch', "
         f"got {o.update_rule!r}"),
        (0 < o.lr_drop < 1,
         f"optim.lr_drop must be in (0, 1) (paper: 0.1), got {o.lr_drop}"),
        (cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}"),
        (cfg.max_steps is None or cfg.max_steps >= 1,
         f"max_steps must be >= 1 or None, got {cfg.max_steps}"),
        (cfg.checkpoint_every >= 0,
         f"checkpoint_every must be >= 0, got {cfg.checkpoint_every}"),
        (all(isinstance(e, int) and e >= 1 for e in cfg.snapshot_epochs),
         f"snapshot_epochs must be epoch numbers >= 1, got "
         f"{list(cfg.snapshot_epochs)}"),
        (o.plateau_patience >= 1, f"optim.plateau_patience must be "
         f">= 1 epoch, got {o.plateau_patience}"),
        (d.dataset in CHOICES["data.dataset"],
         f"data.dataset must be 'cifar10' or 'imagenet', got {d.dataset!r}"),
        (d.on_corrupt in CHOICES["data.on_corrupt"],
         f"data.on_corrupt must be 'skip' or 'stop', got {d.on_corrupt!r}"),
        (d.format in CHOICES["data.format"],
         f"data.format must be one of {', '.join(DATA_FORMATS)}, "
         f"got {d.format!r}"),
        (d.format != "shards" or d.dataset == "imagenet",
         f"data.format 'shards' is for ImageNet-format data, not "
         f"{d.dataset!r}"),
        (d.decode in CHOICES["data.decode"],
         f"data.decode must be 'pil' or 'batched', got {d.decode!r}"),
        (d.mean in CHOICES["data.mean"],
         f"data.mean must be 'pixel', 'channel' or 'none', got {d.mean!r}"),
        (d.dataset != "imagenet" or d.resize >= d.image_size,
         f"data.resize ({d.resize}) must be >= data.image_size "
         f"({d.image_size}): the patches are cut from the resized image"
         f" (paper: 256 and 224; --resize, --image-size)"),
        (d.pca_lighting >= 0,
         f"data.pca_lighting must be >= 0 (paper: 0.1), "
         f"got {d.pca_lighting}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    get_profile(cfg.profile)
    return cfg
