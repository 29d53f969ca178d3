"""Krizhevsky's CIFAR-10 nets, from his cuda-convnet example configs.

The paper's two CIFAR-10 experiments use small nets from the author's
code (dnouri/cuda-convnet mirror of code.google.com/p/cuda-convnet,
``example-layers/``):

* Figure 1 (ReLU vs tanh): ``CifarNet4Layer``. ``layers-18pct.cfg`` has
  exactly four weight layers (conv1-conv3 + fc10); we drop its two
  within-map ``rnorm`` layers, since Figure 1 uses "no regularization
  of any kind". ``variant="80sec"`` is ``layers-80sec.cfg`` (the same
  plus a 64-unit hidden fc layer): four *hidden* layers, the count the
  paper uses for its "four-layer" LRN net below.
* §3.3 (LRN on CIFAR-10, 11% vs 13% error): ``cifar_11pct`` and
  ``cifar_13pct`` from ``layers-conv-local-11pct.cfg`` / ``-13pct.cfg``.

cuda-convnet conventions kept here: pool output size is
1 + ceil((S - size) / stride) (``ceil_mode=True``); average pooling
divides by size**2 even where the window hangs over the edge
(``divisor_override``); cmrnorm divides scale by size and uses k = 1
(cuda-convnet's cmrnorm); weights ~ N(0, initW), biases 0. cuda-convnet's relu on
a pool layer comes after the max, which equals act-then-max for any
increasing activation.
"""
from __future__ import annotations

import torch
from torch import nn

from alexnet_lib.layers import LocallyConnected2d, LocalResponseNorm
from alexnet_lib.models.alexnet import check_choice, check_input

__all__ = ["CifarNet4Layer", "CifarConvLocalNet", "cifar_11pct",
           "cifar_13pct"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


def _ceil_side(size: int, k: int = 3, s: int = 2) -> int:
    return -(-(size - k) // s) + 1  # cuda-convnet pool output size


def _init(module: nn.Module, std: float) -> None:
    nn.init.normal_(module.weight, 0.0, std)  # cfg initW
    nn.init.zeros_(module.bias)


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, 2, ceil_mode=True, divisor_override=9)


def _activation(name: str) -> type[nn.Module]:
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


class CifarNet4Layer(nn.Module):
    """layers-18pct.cfg without rnorm (default) or layers-80sec.cfg.

    32x32 input: conv1 32@5x5 pad 2 -> maxpool 3/2 -> act (16x16) ->
    conv2 32@5x5 pad 2 -> act -> avgpool 3/2 (8x8) -> conv3 64@5x5 pad 2
    -> act -> avgpool 3/2 (4x4) -> [fc64 -> act] -> fc10.
    activation: "relu" or "tanh" (cuda-convnet's tanh[a,b] with a=b=1).
    """

    def __init__(self, activation: str = "relu", num_classes: int = 10,
                 variant: str = "18pct", input_size: int = 32):
        super().__init__()
        if variant not in ("18pct", "80sec"):
            raise ValueError(f"variant={variant!r} is not '18pct' or "
                             f"'80sec'")
        act = _activation(activation)
        self.input_size = input_size
        side = _ceil_side(_ceil_side(_ceil_side(input_size)))
        self.conv1 = nn.Conv2d(3, 32, 5, padding=2)
        self.pool1, self.relu1 = nn.MaxPool2d(3, 2, ceil_mode=True), act()
        self.conv2 = nn.Conv2d(32, 32, 5, padding=2)
        self.relu2, self.pool2 = act(), _avg_pool()
        self.conv3 = nn.Conv2d(32, 64, 5, padding=2)
        self.relu3, self.pool3 = act(), _avg_pool()
        if variant == "80sec":
            self.fc64, self.relu4 = nn.Linear(64 * side * side, 64), act()
            self.fc10 = nn.Linear(64, num_classes)
            _init(self.fc64, 0.1)
            _init(self.fc10, 0.1)
        else:
            self.fc64, self.relu4 = nn.Identity(), nn.Identity()
            self.fc10 = nn.Linear(64 * side * side, num_classes)
            _init(self.fc10, 0.01)
        _init(self.conv1, 1e-4)
        _init(self.conv2, 0.01)
        _init(self.conv3, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, type(self).__name__)
        x = self.relu1(self.pool1(self.conv1(x)))   # (B, 32, 16, 16)
        x = self.pool2(self.relu2(self.conv2(x)))   # (B, 32, 8, 8)
        x = self.pool3(self.relu3(self.conv3(x)))   # (B, 64, 4, 4)
        x = self.relu4(self.fc64(torch.flatten(x, 1)))
        return self.fc10(x)                         # (B, classes)


class CifarConvLocalNet(nn.Module):
    """layers-conv-local-11pct.cfg (lrn=True, local3_filters=64) and
    -13pct.cfg (lrn=False, local3_filters=32). 24x24 crops:

    conv1 64@5x5 pad 2 -> act -> maxpool 3/2 (12x12) -> [lrn1] ->
    conv2 64@5x5 pad 2 -> act -> [lrn2] -> maxpool 3/2 (6x6) ->
    local3 @3x3 pad 1 -> act -> local4 32@3x3 pad 1 -> act -> fc10.
    LRN: cmrnorm size 9, scale 0.001 (divided by 9), pow 0.75, k = 1.
    """

    def __init__(self, lrn: bool = True, local3_filters: int = 64,
                 num_classes: int = 10, input_size: int = 24,
                 activation: str = "relu"):
        super().__init__()
        act = _activation(activation)
        self.input_size = input_size
        s2 = _ceil_side(input_size)          # after pool1
        s3 = _ceil_side(s2)                  # after pool2

        def norm():
            return (LocalResponseNorm(9, 1e-3, 0.75, k=1.0,
                                      scale_by_size=True)
                    if lrn else nn.Identity())

        self.conv1 = nn.Conv2d(3, 64, 5, padding=2)
        self.relu1 = act()
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.lrn1 = norm()
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.relu2, self.lrn2 = act(), norm()
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.local3 = LocallyConnected2d(64, local3_filters, s3, 3,
                                         padding=1)
        self.relu3 = act()
        self.local4 = LocallyConnected2d(local3_filters, 32, s3, 3,
                                         padding=1)
        self.relu4 = act()
        self.fc10 = nn.Linear(32 * s3 * s3, num_classes)
        for layer, std in ((self.conv1, 1e-4), (self.conv2, 0.01),
                           (self.local3, 0.04), (self.local4, 0.04),
                           (self.fc10, 0.01)):
            _init(layer, std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, type(self).__name__)
        x = self.lrn1(self.pool1(self.relu1(self.conv1(x))))  # (B,64,12,12)
        x = self.pool2(self.lrn2(self.relu2(self.conv2(x))))  # (B,64,6,6)
        x = self.relu3(self.local3(x))                        # (B,64,6,6)
        x = self.relu4(self.local4(x))                        # (B,32,6,6)
        return self.fc10(torch.flatten(x, 1))                 # (B,classes)


def cifar_11pct(num_classes: int = 10, input_size: int = 24,
                lrn: bool = True, activation: str = "relu"
                ) -> CifarConvLocalNet:
    """The 11%-error net of §3.3 (with response normalization)."""
    return CifarConvLocalNet(lrn, 64, num_classes, input_size, activation)


def cifar_13pct(num_classes: int = 10, input_size: int = 24,
                activation: str = "relu") -> CifarConvLocalNet:
    """The 13%-error net of §3.3 (no normalization, 32 local3 filters)."""
    return CifarConvLocalNet(False, 32, num_classes, input_size,
                             activation)
