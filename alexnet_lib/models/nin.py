"""Network in Network (Lin, Chen and Yan, ICLR 2014), CIFAR-10 model.

What the paper says: a conventional convolution is a generalised linear
model of the patch under it; an "mlpconv" layer slides a small
multilayer perceptron over the input instead (§3.1), which equals a
k x k convolution followed by 1x1 convolutions, each with a ReLU
("cascaded cross channel parametric pooling", §3.2). The last mlpconv
layer has one map per class, and global average pooling of those maps
gives the class scores: no fully connected layer (§3.2, Fig. 2: three
mlpconv layers and one global average pooling layer). §4.6 compares
global average pooling with a fully connected layer in its place.

The paper's text gives no layer sizes; this module follows the
authors' cuda-convnet definition of the CIFAR-10 net
(github.com/mavenlin/cuda-convnet, file NIN/cifar-10_def):

    block 1: conv1 5x5 pad 2, 192 -> cccp1 1x1, 160 -> cccp2 1x1, 96
             -> max-pool 3x3 stride 2 -> dropout 0.5
    block 2: conv2 5x5 pad 2, 192 -> cccp3 1x1, 192 -> cccp4 1x1, 192
             -> max-pool 3x3 stride 2 -> dropout 0.5
    block 3: conv3 3x3 pad 1, 192 -> cccp5 1x1, 192 -> cccp6 1x1, 10
             -> average pooling over the whole 8x8 map

with a ReLU after every convolution, cccp6 included (so the class maps
and the scores are >= 0), and weights drawn from N(0, 0.05^2), biases
0 (its ``initW=0.05``; ``init="glorot"`` for inputs that are not
whitened, see the code). cuda-convnet rounds pooled sizes up (32 -> 16
-> 8): ``ceil_mode=True`` here. With 10 classes: 966,986 parameters.

``classifier="fc"`` is §4.6's comparison: the same three blocks, the
class maps flattened into one fully connected layer ``fc``
(num_classes * 8 * 8 -> num_classes) in place of the average.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from alexnet_lib.models.alexnet import (check_choice, check_input,
                                        init_glorot_)

__all__ = ["NiN", "NIN_CIFAR10", "pooled_side"]

# (kernel, channels of the conv, channels of the two 1x1 convs) per
# block; None: the last 1x1 conv gives one map per class.
NIN_CIFAR10 = ((5, 192, (160, 96)), (5, 192, (192, 192)),
               (3, 192, (192, None)))
CLASSIFIERS = ("gap", "fc")
INITS = ("paper", "glorot", "torch")


def pooled_side(size: int) -> int:
    """Side after a 3x3 stride-2 max-pool that rounds up (cuda-convnet:
    1 + ceil((size - 3) / 2))."""
    return 1 + math.ceil((size - 3) / 2)


class NiN(nn.Module):
    """NiN for CIFAR-sized inputs; ``forward`` returns logits.

    Layer names follow the authors' file: conv1, cccp1, cccp2 (block 1),
    conv2, cccp3, cccp4 (block 2), conv3, cccp5, cccp6 (block 3); each
    ReLU is ``relu_<layer>``; pool1, drop1, pool2, drop2; ``gap`` or
    ``fc``. ``width`` scales the hidden channels (192, 160, 96), not
    the class maps. ``class_maps(x)`` returns cccp6's output.
    """

    def __init__(self, num_classes: int = 10, input_size: int = 32,
                 width: float = 1.0, dropout: float = 0.5,
                 classifier: str = "gap", init: str = "paper"):
        super().__init__()
        check_choice("classifier", classifier, CLASSIFIERS)
        check_choice("init", init, INITS)
        if not width > 0:
            raise ValueError(f"width={width} must be > 0 (1.0 is the "
                             f"paper's 192 channels)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1); "
                             f"0 turns dropout off")
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes} must be >= 1")
        if input_size < 7:
            raise ValueError(f"input_size={input_size} is too small for "
                             f"two 3x3 poolings: use input_size >= 7")
        self.input_size, self.num_classes = input_size, num_classes
        self.classifier = classifier
        self.side = pooled_side(pooled_side(input_size))  # 8 at 32 px
        channels = 3
        cccp = 0
        for b, (k, conv_width, mlp) in enumerate(NIN_CIFAR10, start=1):
            out = max(1, round(conv_width * width))
            self.add_module(f"conv{b}", nn.Conv2d(channels, out, k,
                                                  padding=k // 2))
            self.add_module(f"relu_conv{b}", nn.ReLU())
            channels = out
            for m in mlp:
                cccp += 1
                out = num_classes if m is None else max(1, round(m * width))
                self.add_module(f"cccp{cccp}", nn.Conv2d(channels, out, 1))
                self.add_module(f"relu_cccp{cccp}", nn.ReLU())
                channels = out
            if b < len(NIN_CIFAR10):
                self.add_module(f"pool{b}", nn.MaxPool2d(3, 2,
                                                         ceil_mode=True))
                self.add_module(f"drop{b}", nn.Dropout(dropout))
        if classifier == "gap":
            self.gap = nn.AdaptiveAvgPool2d(1)  # = 8x8 average at 32 px
        else:
            self.fc = nn.Linear(num_classes * self.side ** 2, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and init == "paper":
                nn.init.normal_(m.weight, 0.0, 0.05)  # initW=0.05
                nn.init.zeros_(m.bias)
        if init == "glorot":
            # For inputs that are not whitened (0..255 pixels minus the
            # mean): std 0.05 scales the signal by 0.05 * sqrt(fan-in /
            # 2) per ReLU layer (0.22 to 0.87 at width 0.25, 0.31 to
            # 1.73 at full width), about 1/26,000 and 1/100 over the
            # nine layers, which leaves the class maps near zero.
            init_glorot_(self)

    def _block(self, x: torch.Tensor, b: int) -> torch.Tensor:
        x = getattr(self, f"relu_conv{b}")(getattr(self, f"conv{b}")(x))
        for c in (2 * b - 1, 2 * b):
            x = getattr(self, f"relu_cccp{c}")(getattr(self, f"cccp{c}")(x))
        return x

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> cccp6 after its ReLU, (B, num_classes, s, s):
        with ``classifier="gap"`` each map's mean is that class's
        score, so the map shows where the class is seen."""
        check_input(x, self.input_size, type(self).__name__)
        x = self.drop1(self.pool1(self._block(x, 1)))  # (B, 96, 16, 16)
        x = self.drop2(self.pool2(self._block(x, 2)))  # (B, 192, 8, 8)
        return self._block(x, 3)                      # (B, classes, 8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.class_maps(x)
        if self.classifier == "gap":
            return torch.flatten(self.gap(maps), 1)   # (B, classes)
        return self.fc(torch.flatten(maps, 1))        # (B, classes)
