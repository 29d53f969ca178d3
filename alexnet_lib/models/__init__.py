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
from alexnet_lib.models.proxy import alexnet_cifar
from alexnet_lib.models.owt import (AlexNetOWT, PretrainedWeightsError,
                                    alexnet_owt)
from alexnet_lib.models.two_tower import TwoTowerAlexNet
from alexnet_lib.models.zfnet import ZFNet

__all__ = ["register_model", "create_model", "list_models", "AlexNet",
           "TwoTowerAlexNet", "AlexNetOWT", "alexnet_owt",
           "PretrainedWeightsError", "CifarNet4Layer", "CifarConvLocalNet",
           "cifar_11pct", "cifar_13pct", "alexnet_cifar",
           "LocalResponseNorm",
           "local_response_norm", "LocallyConnected2d",
           "feature_map_shapes", "ZFNet"]

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "alexnet": AlexNet,                       # the paper, §3.5
    "alexnet_two_tower": TwoTowerAlexNet,     # §3.2 on two devices
    "alexnet_owt": alexnet_owt,               # torchvision's 2014 variant
    "cifar_4layer": CifarNet4Layer,           # Figure 1
    "cifar_11pct": cifar_11pct,               # §3.3, with LRN
    "cifar_13pct": cifar_13pct,               # §3.3, without LRN
    "alexnet_cifar": alexnet_cifar,           # §3.2/§3.4 CIFAR proxy
    "zfnet": ZFNet,                           # Zeiler & Fergus, Fig. 3
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


def create_model(name: str, **options) -> nn.Module:
    """Build a registered model; ``options`` go to its constructor."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: "
                         f"{', '.join(list_models())}")
    fn = _MODELS[name]
    params = inspect.signature(fn).parameters
    var_kw = inspect.Parameter.VAR_KEYWORD
    takes_any = any(p.kind is var_kw for p in params.values())
    unknown = sorted(set(options) - set(params))
    if unknown and not takes_any:  # **options: the constructor checks
        known = [n for n, p in params.items() if p.kind is not var_kw]
        raise TypeError(f"model {name!r} got unknown option(s) {unknown}; "
                        f"its options are: {', '.join(known)}")
    return fn(**options)
