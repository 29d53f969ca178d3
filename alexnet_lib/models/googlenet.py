"""GoogLeNet (Szegedy et al., "Going deeper with convolutions", CVPR
2015; arXiv:1409.4842), the network of its Table 1 and Figure 3.

What the paper says:

* §4, Fig. 2(b): an Inception module runs four branches on the same
  input and concatenates their outputs along the channels: a 1x1
  convolution; a 1x1 "reduce" convolution then a 3x3; a 1x1 reduce
  then a 5x5; a 3x3 max-pool with stride 1 then a 1x1 "pool proj"
  convolution. The 1x1 reductions (after NiN) keep the 3x3 and 5x5
  convolutions cheap; Fig. 2(a) is the "naive" module without them.
  Every convolution, reductions included, is followed by a ReLU (§5).
* §5, Table 1, 224x224 input: conv 7x7/2, 64 -> max-pool 3x3/2 ->
  LRN -> conv 1x1, 64 -> conv 3x3, 192 -> LRN -> max-pool 3x3/2 ->
  inception 3a, 3b -> max-pool -> 4a ... 4e -> max-pool -> 5a, 5b ->
  average pool 7x7 -> dropout 40% -> linear 1000 -> softmax.
  Map sides 112, 56, 28, 14, 7; 22 layers with parameters.
* §5: two auxiliary classifiers on the outputs of 4a and 4d (average
  pool 5x5/3, 1x1 conv 128, fully connected 1024, dropout 70%, linear),
  their losses added with weight 0.3 during training only.

Table 1 as used here: the arXiv paper's Table 1
(https://arxiv.org/abs/1409.4842), read from a plain-text transcription
of it; ``INCEPTION_TABLE`` has its filter counts and ``TABLE_PARAMS_K``
its "params" column as printed.

Where the sources disagree:

* Table 1's params column is not the exact count of the layers it
  lists. Its "K" is 1024 where it matches (conv2 112K = 114,688
  weights; linear 1000K = 1,024,000), and biases are left out; but
  conv1 prints 2.7K for 7*7*3*64 = 9,408 weights, and 4a, 4c, 4d, 4e,
  5a, 5b are off by 3 to 54 K (see the tests). Its column sums to
  6,797.7K (about 6.8 M); the layers of the table have 6,990,272
  weights, 6,998,552 parameters with biases (1000 classes).
* A secondary summary's generic Inception table (1x1 convolutions
  with stride 2, a pool branch that changes the channel count)
  contradicts Fig. 2 and Table 1; it is not used.
* Figure 3 marks the convolutions and max-pools "S" (same padding):
  3x3 pools with stride 2 round up here (``ceil_mode=True``, as in
  Caffe), giving 56, 28, 14, 7; conv1 is padded by 3.

Multiply-adds (Table 1's "ops" column is weights x output pixels):
``inception_madds`` counts them for one module with and without the
1x1 reductions; for 3a at 28x28 it gives 128,049,152 (Table 1: 128M)
against 303,464,448 for the naive module.

The paper states no weight initialisation; PyTorch's default is kept
(``init="torch"``). ``init="glorot"`` draws every weight as Glorot and
Bengio (2010) do, biases 0: PyTorch's default shrinks the signal about
2.5 times per ReLU layer, which 22 layers do not survive from a cold
start (the CPU proxies of the book use it).
``width`` scales every channel count (not the classes); ``input_size``
other than 224 keeps the same layers (the final average pooling covers
the whole last map).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from alexnet_lib.layers import PAPER_LRN, LocalResponseNorm
from alexnet_lib.models.alexnet import (check_choice, check_input,
                                        init_glorot_)

__all__ = ["GoogLeNet", "Inception", "NaiveInception", "AuxClassifier",
           "INCEPTION_TABLE",
           "TABLE_PARAMS_K", "TABLE_DEPTH", "AUX_LOSS_WEIGHT",
           "inception_madds", "reduction_saving", "stage_sides"]

# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
# Table 1's "params" column (thousands, as printed) and "depth" column.
TABLE_PARAMS_K = {"conv1": 2.7, "conv2": 112, "inception3a": 159,
                  "inception3b": 380, "inception4a": 364,
                  "inception4b": 437, "inception4c": 463,
                  "inception4d": 580, "inception4e": 840,
                  "inception5a": 1072, "inception5b": 1388, "fc": 1000}
TABLE_DEPTH = {"conv1": 1, "conv2": 2, **{f"inception{k}": 2
                                          for k in INCEPTION_TABLE},
               "fc": 1}
AUX_LOSS_WEIGHT = 0.3  # §5: weight of each auxiliary loss
AUX_AFTER = ("4a", "4d")  # §5: where the auxiliary classifiers sit


def inception_madds(in_channels: int, spec, side: int,
                    reductions: bool = True) -> int:
    """Multiply-adds of one Inception module on a side x side map.

    ``spec``: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
    With ``reductions`` (Fig. 2b): every convolution of the module.
    Without (Fig. 2a, "naive"): the 1x1, 3x3 and 5x5 convolutions read
    all ``in_channels`` maps and the pool branch has no projection.
    Biases and the max-pool's comparisons are not counted.
    """
    n1, r3, n3, r5, n5, proj = spec
    c = in_channels
    if reductions:
        per_pixel = (c * n1 + c * r3 + 9 * r3 * n3 + c * r5
                     + 25 * r5 * n5 + c * proj)
    else:
        per_pixel = c * n1 + 9 * c * n3 + 25 * c * n5
    return per_pixel * side * side


def reduction_saving(in_channels: int, spec, side: int) -> dict:
    """Multiply-adds of one module without and with the 1x1 reductions
    and their ratio: ``{"naive", "reduced", "ratio"}``."""
    naive = inception_madds(in_channels, spec, side, reductions=False)
    reduced = inception_madds(in_channels, spec, side, reductions=True)
    return {"naive": naive, "reduced": reduced, "ratio": naive / reduced}


def _pool_side(size: int) -> int:
    """3x3 stride-2 max-pool that rounds up: 1 + ceil((size - 3) / 2)."""
    return 1 + math.ceil((size - 3) / 2)


def stage_sides(input_size: int) -> dict[str, int]:
    """Map side after conv1 and after each stride-2 max-pool:
    ``{"conv1": 112, "pool1": 56, "pool2": 28, "pool3": 14,
    "pool4": 7}`` at 224 px."""
    sides = {"conv1": (input_size + 2 * 3 - 7) // 2 + 1}
    size = sides["conv1"]
    for i in range(1, 5):
        if size < 2:
            raise ValueError(f"input_size={input_size} is too small: "
                             f"pool{i} would get a {size}x{size} map; use "
                             f"input_size >= 32")
        size = sides[f"pool{i}"] = _pool_side(size)
    return sides


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _conv_relu(module: nn.Module, name: str, c_in: int, c_out: int,
               kernel: int, stride: int = 1) -> None:
    """Add conv ``name`` and its ReLU ``relu_<name>`` to ``module``."""
    module.add_module(name, nn.Conv2d(c_in, c_out, kernel, stride,
                                      padding=kernel // 2))
    module.add_module(f"relu_{name}", nn.ReLU())


class Inception(nn.Module):
    """The Inception module of Fig. 2(b); ReLU after every convolution.

    Branches: conv1x1; conv3x3_reduce -> conv3x3; conv5x5_reduce ->
    conv5x5; pool (3x3, stride 1, pad 1) -> pool_proj. Output: the four
    concatenated in that order, ``out_channels`` maps of the same side.
    """

    def __init__(self, in_channels: int, n1x1: int, n3x3_reduce: int,
                 n3x3: int, n5x5_reduce: int, n5x5: int, pool_proj: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj
        _conv_relu(self, "conv1x1", in_channels, n1x1, 1)
        _conv_relu(self, "conv3x3_reduce", in_channels, n3x3_reduce, 1)
        _conv_relu(self, "conv3x3", n3x3_reduce, n3x3, 3)
        _conv_relu(self, "conv5x5_reduce", in_channels, n5x5_reduce, 1)
        _conv_relu(self, "conv5x5", n5x5_reduce, n5x5, 5)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        _conv_relu(self, "pool_proj", in_channels, pool_proj, 1)

    def _run(self, x: torch.Tensor, *names: str) -> torch.Tensor:
        for name in names:
            x = getattr(self, f"relu_{name}")(getattr(self, name)(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self._run(x, "conv1x1"),
            self._run(x, "conv3x3_reduce", "conv3x3"),
            self._run(x, "conv5x5_reduce", "conv5x5"),
            self._run(self.pool(x), "pool_proj")], dim=1)


class NaiveInception(nn.Module):
    """The naive module of Fig. 2(a), to measure what the reductions
    save: conv1x1, conv3x3 and conv5x5 all read the ``in_channels``
    input maps, and the pool branch passes its maps on unprojected, so
    ``out_channels`` = n1x1 + n3x3 + n5x5 + in_channels. Takes the
    same ``spec`` as ``Inception`` and ignores its reduce and
    projection widths."""

    def __init__(self, in_channels: int, n1x1: int, n3x3_reduce: int,
                 n3x3: int, n5x5_reduce: int, n5x5: int, pool_proj: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = n1x1 + n3x3 + n5x5 + in_channels
        _conv_relu(self, "conv1x1", in_channels, n1x1, 1)
        _conv_relu(self, "conv3x3", in_channels, n3x3, 3)
        _conv_relu(self, "conv5x5", in_channels, n5x5, 5)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.relu_conv1x1(self.conv1x1(x)),
                          self.relu_conv3x3(self.conv3x3(x)),
                          self.relu_conv5x5(self.conv5x5(x)),
                          self.pool(x)], dim=1)


class AuxClassifier(nn.Module):
    """§5's auxiliary classifier: average pool 5x5 stride 3 -> conv 1x1,
    128 -> ReLU -> fully connected 1024 -> ReLU -> dropout 70% ->
    linear to the classes. Used in training only."""

    def __init__(self, in_channels: int, side: int, num_classes: int,
                 width: float = 1.0):
        super().__init__()
        if side < 5:
            raise ValueError(f"the auxiliary classifiers pool 5x5 windows"
                             f" but the map is {side}x{side}: use a larger"
                             f" input_size or aux_classifiers=False")
        pooled = (side - 5) // 3 + 1                  # 4 at 224 px
        c, hidden = _scaled(128, width), _scaled(1024, width)
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = nn.Conv2d(in_channels, c, 1)
        self.relu_conv = nn.ReLU()
        self.fc1 = nn.Linear(c * pooled * pooled, hidden)
        self.relu_fc1 = nn.ReLU()
        self.dropout = nn.Dropout(0.7)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu_conv(self.conv(self.pool(x)))
        x = self.relu_fc1(self.fc1(torch.flatten(x, 1)))
        return self.fc2(self.dropout(x))               # (B, classes)


class GoogLeNet(nn.Module):
    """GoogLeNet of Table 1; ``forward`` returns logits (B, classes).

    Names: conv1, pool1, lrn1, conv2_reduce, conv2, lrn2, pool2,
    inception3a, inception3b, pool3, inception4a ... inception4e, pool4,
    inception5a, inception5b, avgpool, dropout, fc (each convolution's
    ReLU is ``relu_<conv>``). With ``aux_classifiers=True`` the modules
    aux1 (after 4a) and aux2 (after 4d) exist and ``forward_with_aux``
    returns (logits, aux1 logits, aux2 logits) for training;
    ``forward`` never runs them.
    """

    def __init__(self, num_classes: int = 1000, input_size: int = 224,
                 width: float = 1.0, aux_classifiers: bool = False,
                 lrn: bool = True, dropout: float = 0.4,
                 init: str = "torch"):
        super().__init__()
        check_choice("init", init, ("torch", "glorot"))
        if not width > 0 or num_classes < 1:
            raise ValueError(f"width={width} and num_classes={num_classes}"
                             f" must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1); "
                             f"0 turns dropout off (Table 1: 0.4)")
        sides = stage_sides(input_size)
        self.input_size, self.num_classes = input_size, num_classes
        self.aux_classifiers = aux_classifiers
        _conv_relu(self, "conv1", 3, _scaled(64, width), 7, stride=2)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        # DEVIATION: Fig. 3 has LocalRespNorm without constants; the
        # AlexNet paper's (§3.3, PAPER_LRN) stand in (Caffe's reference
        # GoogLeNet uses size 5, alpha 1e-4, beta 0.75 in its own
        # convention: k = 1, alpha divided by the size).
        self.lrn1 = LocalResponseNorm(**PAPER_LRN) if lrn else nn.Identity()
        _conv_relu(self, "conv2_reduce", _scaled(64, width),
                   _scaled(64, width), 1)
        _conv_relu(self, "conv2", _scaled(64, width), _scaled(192, width),
                   3)
        self.lrn2 = LocalResponseNorm(**PAPER_LRN) if lrn else nn.Identity()
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        channels = _scaled(192, width)
        self.stages = {"3": [], "4": [], "5": []}
        for key, spec in INCEPTION_TABLE.items():
            module = Inception(channels,
                               *(_scaled(n, width) for n in spec))
            self.add_module(f"inception{key}", module)
            self.stages[key[0]].append(f"inception{key}")
            channels = module.out_channels
            if aux_classifiers and key in AUX_AFTER:
                name = f"aux{AUX_AFTER.index(key) + 1}"
                self.add_module(name, AuxClassifier(
                    channels, sides["pool3"], num_classes, width))
        self.pool3 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # Table 1: 7x7 at 224 px
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        if init == "glorot":
            init_glorot_(self)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_size, type(self).__name__)
        x = self.lrn1(self.pool1(self.relu_conv1(self.conv1(x))))
        x = self.relu_conv2_reduce(self.conv2_reduce(x))
        x = self.lrn2(self.relu_conv2(self.conv2(x)))
        return self.pool2(x)                           # (B, 192, 28, 28)

    def _main(self, x: torch.Tensor, aux: list | None) -> torch.Tensor:
        x = self._stem(x)
        for stage, pool in (("3", self.pool3), ("4", self.pool4),
                            ("5", None)):
            for name in self.stages[stage]:
                x = getattr(self, name)(x)
                key = name.removeprefix("inception")
                if aux is not None and key in AUX_AFTER:
                    aux.append(getattr(self, f"aux{len(aux) + 1}")(x))
            if pool is not None:
                x = pool(x)                            # 14x14, then 7x7
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return self.fc(x)                              # (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._main(x, None)

    def forward_with_aux(self, x: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor,
                                    torch.Tensor]:
        """(logits, aux1 logits, aux2 logits); the training loss of §5
        is ``loss(logits) + AUX_LOSS_WEIGHT * (loss(aux1) +
        loss(aux2))``."""
        if not self.aux_classifiers:
            raise ValueError("this GoogLeNet has no auxiliary classifiers"
                             ": build it with aux_classifiers=True")
        aux: list = []
        logits = self._main(x, aux)
        return logits, aux[0], aux[1]
