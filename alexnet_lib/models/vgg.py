"""VGG (Simonyan and Zisserman, ICLR 2015), configurations A to E.

What the paper says (§2.1, §2.2, Table 1): 224x224 RGB input; stacks of
3x3 convolutions with stride 1 and padding 1 (configuration C also has
1x1 convolutions); five 2x2 max-pools with stride 2; three fully
connected layers of 4096, 4096 and 1000 units, then softmax; ReLU after
every hidden layer; no normalisation except in A-LRN, which puts the
response normalisation of Krizhevsky et al. (AlexNet §3.3, same
constants) after its first layer. Width starts at 64 and doubles after
each pool up to 512. Weight layers: A and A-LRN 11, B 13, C and D 16,
E 19. Table 2 gives 133, 133, 134, 138 and 144 million parameters;
exactly (biases included): A and A-LRN 132,863,336, B 133,047,848,
C 133,638,952, D 138,357,544, E 143,667,240.

Training (§3.1): dropout 0.5 on the first two fully connected layers;
random initial weights from a zero-mean normal distribution, biases 0
(the paper pre-initialised deeper nets from A; see ``init`` below).

Configuration C: its extra 1x1 layer is the LAST convolution of
blocks 3, 4 and 5 (Table 1), where D has a third 3x3. Copies of §3.1
that lost the exponent's sign print the variance as "102" for 10^-2
(see ``init`` for the value used).

What this code adds: ``width`` scales the conv widths (64 ... 512),
``fc_width`` the two hidden fully connected layers, and ``input_size``
sets fc6's input (last width x side x side, side = input_size // 32),
so that e.g. ``VGG("D", width=0.25, input_size=32, fc_width=512,
num_classes=10)`` trains on a CPU (fc6 then reads 128 values).
``init="paper"`` draws weights with standard deviation 0.01 and zero
biases (see the DEVIATION note in the code); ``init="glorot"`` draws
them as Glorot and Bengio (2010) do (uniform, variance 2 / (fan-in +
fan-out)), biases 0: what §3.1 found, after the submission, to train
the deep nets without pre-initialising them from A; ``init="torch"``
keeps PyTorch's defaults.
"""
from __future__ import annotations

import torch
from torch import nn

from alexnet_lib.layers import PAPER_LRN, LocalResponseNorm
from alexnet_lib.models.alexnet import (check_choice, check_input,
                                        init_glorot_)

__all__ = ["VGG", "CONFIGS", "WEIGHT_LAYERS", "parse_layer"]

# Table 1, one column per configuration, one tuple per block (each
# block ends with a 2x2 max-pool); "conv<k>-<channels>" as printed.
_B1 = ("conv3-64",)
_B2 = ("conv3-128",)
_B3 = ("conv3-256",)
_B4 = ("conv3-512",)
CONFIGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (_B1, _B2, _B3 * 2, _B4 * 2, _B4 * 2),
    "A-LRN": (_B1 + ("LRN",), _B2, _B3 * 2, _B4 * 2, _B4 * 2),
    "B": (_B1 * 2, _B2 * 2, _B3 * 2, _B4 * 2, _B4 * 2),
    "C": (_B1 * 2, _B2 * 2, _B3 * 2 + ("conv1-256",),
          _B4 * 2 + ("conv1-512",), _B4 * 2 + ("conv1-512",)),
    "D": (_B1 * 2, _B2 * 2, _B3 * 3, _B4 * 3, _B4 * 3),
    "E": (_B1 * 2, _B2 * 2, _B3 * 4, _B4 * 4, _B4 * 4),
}
# Weight layers (conv + 3 fully connected), the header of Table 1.
WEIGHT_LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}
INITS = ("paper", "glorot", "torch")


def parse_layer(spec: str) -> tuple[int, int]:
    """"conv3-256" -> (kernel 3, 256 channels)."""
    kernel, channels = spec.removeprefix("conv").split("-")
    return int(kernel), int(channels)


class VGG(nn.Module):
    """One VGG configuration of Table 1; ``forward`` returns logits.

    Layer names: conv<block>_<i> with relu<block>_<i>, lrn1 (A-LRN),
    pool1..pool5, then fc6, relu6, drop6, fc7, relu7, drop7, fc8.
    ``feature_layers`` lists the convolutional part in order.
    """

    def __init__(self, config: str = "D", num_classes: int = 1000,
                 input_size: int = 224, width: float = 1.0,
                 fc_width: int = 4096, dropout: float = 0.5,
                 init: str = "paper"):
        super().__init__()
        check_choice("config", config, CONFIGS)
        check_choice("init", init, INITS)
        if not width > 0 or fc_width < 1 or num_classes < 1:
            raise ValueError(f"width={width}, fc_width={fc_width} and "
                             f"num_classes={num_classes} must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1); "
                             f"0 turns dropout off")
        if input_size < 32:
            raise ValueError(f"input_size={input_size} is too small: five "
                             f"2x2 poolings need input_size >= 32")
        self.config, self.input_size = config, input_size
        self.num_classes = num_classes
        names, channels = [], 3
        for b, block in enumerate(CONFIGS[config], start=1):
            i = 0
            for spec in block:
                if spec == "LRN":  # §2.1: A-LRN, Krizhevsky's constants
                    self.lrn1 = LocalResponseNorm(**PAPER_LRN)
                    names.append("lrn1")
                    continue
                i += 1
                kernel, out = parse_layer(spec)
                out = max(1, round(out * width))
                self.add_module(f"conv{b}_{i}", nn.Conv2d(
                    channels, out, kernel, padding=kernel // 2))
                self.add_module(f"relu{b}_{i}", nn.ReLU())
                names += [f"conv{b}_{i}", f"relu{b}_{i}"]
                channels = out
            self.add_module(f"pool{b}", nn.MaxPool2d(2, 2))
            names.append(f"pool{b}")
        self.feature_layers = tuple(names)
        side = input_size // 32  # five floor(x / 2) poolings: 7 at 224
        self.fc6 = nn.Linear(channels * side * side, fc_width)
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout(dropout)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout(dropout)
        self.fc8 = nn.Linear(fc_width, num_classes)
        if init == "paper":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    # DEVIATION: §3.1 reads "zero mean and 10^-2
                    # variance" (std 0.1); we use std 0.01, as AlexNet
                    # and common practice do: std 0.1 multiplies the
                    # activations' variance by about 23 per layer at
                    # fan-in 4608 (4608 * 0.01 / 2), which cannot train.
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)  # §3.1: biases 0
        elif init == "glorot":  # §3.1, the note after the submission
            init_glorot_(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> pool5 output (B, C, S // 32, S // 32)."""
        check_input(x, self.input_size, type(self).__name__)
        for name in self.feature_layers:
            x = getattr(self, name)(x)
        return x

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 after its ReLU (and dropout in training), (B, fc_width)."""
        x = torch.flatten(self.features(x), 1)
        x = self.drop6(self.relu6(self.fc6(x)))
        return self.drop7(self.relu7(self.fc7(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.penultimate(x))           # (B, classes)
