"""Models by name: ``create_model("alexnet", lrn=False)``.

A tiny registry in the style of timm's ``create_model``: names map to
constructors, options are the constructor's keyword arguments.
"""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from alexnet_lib.layers import (LocallyConnected2d, LocalResponseNorm,
                                local_response_norm)
from alexnet_lib.models.alexnet import AlexNet, feature_map_shapes
from alexnet_lib.models.cifar import (CifarConvLocalNet, CifarNet4Layer,
                                      cifar_11pct, cifar_13pct)
from alexnet_lib.models.googlenet import GoogLeNet, Inception
from alexnet_lib.models.lenet import LeNet5
from alexnet_lib.models.nin import NiN
from alexnet_lib.models.proxy import alexnet_cifar
from alexnet_lib.models.owt import (AlexNetOWT, PretrainedWeightsError,
                                    alexnet_owt)
from alexnet_lib.models.two_tower import TwoTowerAlexNet
from alexnet_lib.models.vgg import VGG
from alexnet_lib.models.zfnet import ZFNet

__all__ = ["register_model", "create_model", "list_models",
           "model_options", "AlexNet",
           "TwoTowerAlexNet", "AlexNetOWT", "alexnet_owt",
           "PretrainedWeightsError", "CifarNet4Layer", "CifarConvLocalNet",
           "cifar_11pct", "cifar_13pct", "alexnet_cifar",
           "LocalResponseNorm",
           "local_response_norm", "LocallyConnected2d",
           "feature_map_shapes", "ZFNet", "LeNet5", "NiN", "VGG",
           "GoogLeNet", "Inception"]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "alexnet": AlexNet,                       # the paper, §3.5
    "alexnet_two_tower": TwoTowerAlexNet,     # §3.2 on two devices
    "alexnet_owt": alexnet_owt,               # torchvision's 2014 variant
    "cifar_4layer": CifarNet4Layer,           # Figure 1
    "cifar_11pct": cifar_11pct,               # §3.3, with LRN
    "cifar_13pct": cifar_13pct,               # §3.3, without LRN
    "alexnet_cifar": alexnet_cifar,           # §3.2/§3.4 CIFAR proxy
    "zfnet": ZFNet,                           # Zeiler & Fergus, Fig. 3
    "lenet5": LeNet5,                         # LeCun et al. 1998
    "nin": NiN,                               # Lin et al. 2014, CIFAR-10
    "vgg": VGG,                               # Simonyan & Zisserman, A-E
    "googlenet": GoogLeNet,                   # Szegedy et al., Table 1
}


def register_model(name: str):
    """Decorator: ``@register_model("mine")`` above a constructor."""
    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS and _MODELS[name] is not fn:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = fn
        return fn
    return add


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_MODELS)


# An option's annotation -> what it takes (its type check).
_TAKES = {"bool": "true or false", "int": "a whole number",
          "float": "a number", "str": "a text", "tuple": "a list",
          "dict": "an object"}


def model_options(name: str) -> dict[str, tuple[str, object]]:
    """The typed options of model ``name``: ``{option: (type, default)}``
    from its constructor's signature (the model's config: one source),
    type one of bool, int, float, str, tuple, dict, with "|None" when
    None is allowed; "any" where the constructor does not say."""
    fn = _model(name)
    out = {}
    for key, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        text = str(p.annotation).replace(" ", "")
        kinds = [k.split("[")[0] for k in text.split("|")]
        kind = next((k for k in kinds if k in _TAKES), "any")
        if "None" in kinds and kind != "any":
            kind += "|None"
        default = None if p.default is p.empty else p.default
        out[key] = (kind, default)
    return out


def _model(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: "
                         f"{', '.join(list_models())}")
    return _MODELS[name]


def _check_type(name: str, key: str, kind: str, value):
    """``value`` for option ``key`` of type ``kind`` (a list becomes a
    tuple where a tuple is wanted), or a TypeError saying what it takes."""
    base, _, nullable = kind.partition("|")
    if value is None and nullable or base == "any":
        return value
    ok = {"bool": isinstance(value, bool),
          "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float))
          and not isinstance(value, bool),
          "str": isinstance(value, str),
          "tuple": isinstance(value, (list, tuple)),
          "dict": isinstance(value, dict)}[base]
    if not ok:
        raise TypeError(f"model {name!r}: option {key} takes "
                        f"{_TAKES[base]}, got {value!r}")
    return tuple(value) if base == "tuple" else value


def create_model(name: str, **options) -> nn.Module:
    """Build a registered model; ``options`` go to its constructor,
    checked against its typed options (``model_options``) first."""
    fn = _model(name)
    params = inspect.signature(fn).parameters
    var_kw = inspect.Parameter.VAR_KEYWORD
    takes_any = any(p.kind is var_kw for p in params.values())
    unknown = sorted(set(options) - set(params))
    if unknown and not takes_any:  # **options: the constructor checks
        known = [n for n, p in params.items() if p.kind is not var_kw]
        raise TypeError(f"model {name!r} got unknown option(s) {unknown}; "
                        f"its options are: {', '.join(known)}")
    typed = model_options(name)
    options = {key: _check_type(name, key, typed[key][0], value)
               if key in typed else value for key, value in options.items()}
    return fn(**options)
