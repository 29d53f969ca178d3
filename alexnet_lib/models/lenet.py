"""LeNet-5 (LeCun, Bottou, Bengio and Haffner 1998, §II.B, Fig. 2).

What the paper describes, layer by layer (32x32 input):

* C1: 6 feature maps, 5x5 convolution -> 28x28;
* S2: subsampling: each unit adds the four inputs of its 2x2 window,
  multiplies the sum by one trainable coefficient and adds one
  trainable bias per map, then applies the squashing function -> 14x14;
* C3: 16 maps, 5x5 convolution, but each map reads only a subset of the
  S2 maps (Table I): maps 0-5 read 3 neighbouring maps, 6-11 read 4
  neighbouring maps, 12-14 read 4 maps that are not all neighbours,
  map 15 reads all six. The paper gives two reasons: fewer connections,
  and a broken symmetry, so maps learn different combinations -> 10x10;
* S4: subsampling as S2 -> 5x5;
* C5: 120 maps, 5x5 convolution (1x1 output at 32 px: the paper still
  calls it a convolution, so it stays one if the input grows);
* F6: 84 units, fully connected;
* output: one Euclidean radial basis function (RBF) unit per class,
  y_i = sum_j (x_j - w_ij)^2, with fixed prototype codes w_i
  (stylised 7x12 bitmaps of the characters).

Every layer up to F6 uses the squashing function f(a) = A tanh(S a)
with A = 1.7159 and S = 2/3 (§II.B, reasons in Appendix A). Weights
start uniform in [-2.4/F, 2.4/F], F the unit's fan-in (Appendix A).

Trainable parameters with the defaults:
C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164, output 850:
60,850. With ``output="rbf"`` the 84x10 prototypes are a fixed buffer,
not trained, so the count is 60,000.

How this code differs: the default output is a fully connected 84->10
layer (see DEVIATION below); ``output="rbf"`` gives RBF units with ±1
prototype codes (rows of a Sylvester-Hadamard matrix) because the
paper's 7x12 bitmaps are not available to us, and returns the negated
squared distances as logits so that ``cross_entropy`` can train it
(the paper trains on the penalties with its own criterion, §II.C).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_lib.models.alexnet import check_choice

__all__ = ["LeNet5", "C3_TABLE", "SparseConv2d", "Subsampling",
           "ScaledTanh", "EuclideanRBF", "rbf_prototypes"]

# Table I of the paper, column by column: the S2 maps each C3 map reads.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
ACTIVATIONS = ("scaled_tanh", "tanh")
OUTPUTS = ("fc", "rbf")


class ScaledTanh(nn.Module):
    """f(a) = A tanh(S a), A = 1.7159, S = 2/3 (§II.B, Appendix A):
    f(1) = 1 and f(-1) = -1, and the gain is largest near ±1."""

    amplitude = 1.7159
    slope = 2.0 / 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


class Subsampling(nn.Module):
    """S2/S4 of LeNet-5 without the squashing: per map c,
    ``weight[c] * sum(2x2 window) + bias[c]``, as the paper says (the
    four inputs are added). With the Appendix A init (fan-in 4) this
    keeps the paper's scale; a mean would start 4 times smaller.
    2 parameters per map.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        fan_in = 4  # the four inputs of one unit
        nn.init.uniform_(self.weight, -2.4 / fan_in, 2.4 / fan_in)
        nn.init.uniform_(self.bias, -2.4 / fan_in, 2.4 / fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = 4.0 * F.avg_pool2d(x, 2)  # the sum of each 2x2 window
        return x * self.weight[:, None, None] + self.bias[:, None, None]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class SparseConv2d(nn.Module):
    """A convolution in which output map j reads only the input maps
    ``table[j]`` (LeNet-5's C3, Table I).

    Only the kernels of real connections are parameters: ``weight`` is
    (connections, k, k), one k x k kernel per (output, input) pair of
    the table, in table order; ``bias`` is one per output map. Each call
    scatters them into a dense (out, in, k, k) kernel whose other
    entries are zero and runs one ordinary convolution, so missing
    connections have neither a weight nor a gradient.
    """

    def __init__(self, in_channels: int, table, kernel_size: int):
        super().__init__()
        table = tuple(tuple(int(i) for i in row) for row in table)
        for row in table:
            if not row or len(set(row)) != len(row) or not all(
                    0 <= i < in_channels for i in row):
                raise ValueError(f"each table row must list distinct input"
                                 f" maps in 0..{in_channels - 1}, got {row}")
        self.in_channels, self.out_channels = in_channels, len(table)
        self.kernel_size, self.table = kernel_size, table
        flat = [j * in_channels + i for j, row in enumerate(table)
                for i in row]
        self.register_buffer("index", torch.tensor(flat), persistent=False)
        self.weight = nn.Parameter(
            torch.empty(len(flat), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(table)))
        with torch.no_grad():  # Appendix A, fan-in of each output map
            start = 0
            for j, row in enumerate(table):
                bound = 2.4 / (len(row) * kernel_size ** 2)
                self.weight[start:start + len(row)].uniform_(-bound, bound)
                self.bias[j].uniform_(-bound, bound)
                start += len(row)

    def mask(self) -> torch.Tensor:
        """(out, in) booleans: True where output map j reads map i."""
        m = torch.zeros(self.out_channels, self.in_channels,
                        dtype=torch.bool)
        for j, row in enumerate(self.table):
            m[j, list(row)] = True
        return m

    def dense_weight(self) -> torch.Tensor:
        """The (out, in, k, k) kernel, zero where there is no
        connection."""
        k = self.kernel_size
        dense = self.weight.new_zeros(self.out_channels * self.in_channels,
                                      k, k)
        dense = dense.index_copy(0, self.index, self.weight)
        return dense.view(self.out_channels, self.in_channels, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size="
                f"{self.kernel_size}, connections={self.weight.shape[0]}")


def rbf_prototypes(num_classes: int, features: int = 84) -> torch.Tensor:
    """Fixed ±1 codes, one row per class, for the RBF output.

    Rows 1..num_classes of the Sylvester-Hadamard matrix of order 128,
    first ``features`` columns: entry (i, j) = (-1)^popcount(i & j).
    The columns 1, 2, 4, ..., 64 are kept, so all 127 rows differ.
    (The paper draws its codes as 7x12 bitmaps of the characters.)
    """
    if not 1 <= num_classes <= 127 or features != 84:
        raise ValueError(f"rbf_prototypes gives up to 127 codes of 84 "
                         f"values, asked {num_classes} of {features}")
    rows = [[1.0 - 2.0 * (bin(i & j).count("1") % 2)
             for j in range(features)] for i in range(1, num_classes + 1)]
    return torch.tensor(rows)


class LeNet5(nn.Module):
    """LeNet-5 with the paper's layer names: c1, s2, c3, s4, c5, f6,
    output (each squashing function is ``act_<layer>``).

    Input (B, in_channels, input_size, input_size); ``forward`` returns
    logits (B, num_classes). in_channels=3 reads colour CIFAR-10 (C1
    then has 456 parameters instead of 156). Sizes other than 32 are
    allowed while C5 still has an output; F6 then reads all of C5's
    maps (120 * side**2 inputs).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 input_size: int = 32, activation: str = "scaled_tanh",
                 output: str = "fc", input_scale: float = 1.275 / 255):
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        check_choice("output", output, OUTPUTS)
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes={num_classes} and in_channels="
                             f"{in_channels} must be >= 1")
        if output == "rbf" and num_classes > 127:
            raise ValueError(f"output='rbf' has codes for at most 127 "
                             f"classes, got num_classes={num_classes}: "
                             f"use output='fc'")
        side = ((input_size - 4) // 2 - 4) // 2 - 4  # C5's output side
        if side < 1:
            raise ValueError(f"input_size={input_size} leaves C5 no output"
                             f": use input_size >= 32 (pad 28x28 MNIST "
                             f"digits to 32x32, the paper's input size)")
        self.input_size, self.in_channels = input_size, in_channels
        self.num_classes, self.output_kind = num_classes, output
        # DEVIATION: §III.A maps each pixel to [-0.1, 1.175] (background
        # -0.1, ink 1.175: mean about 0, variance about 1). The book's
        # loaders hand every network 0..255 pixels minus the mean image;
        # multiplying by 1.275 / 255 gives the paper's span, and the
        # mean image stands in for its fixed -0.1 offset. 1.0 turns
        # the scaling off.
        if not input_scale > 0:
            raise ValueError(f"input_scale={input_scale} must be > 0 "
                             f"(1.275 / 255 maps 0..255 pixels to the "
                             f"paper's span of 1.275)")
        self.input_scale = float(input_scale)
        act = ScaledTanh if activation == "scaled_tanh" else nn.Tanh
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.act_c1 = act()
        self.s2 = Subsampling(6)
        self.act_s2 = act()
        self.c3 = SparseConv2d(6, C3_TABLE, 5)
        self.act_c3 = act()
        self.s4 = Subsampling(16)
        self.act_s4 = act()
        self.c5 = nn.Conv2d(16, 120, 5)
        self.act_c5 = act()
        self.f6 = nn.Linear(120 * side * side, 84)
        self.act_f6 = act()
        for layer in (self.c1, self.c5, self.f6):  # Appendix A
            fan_in = layer.weight[0].numel()
            nn.init.uniform_(layer.weight, -2.4 / fan_in, 2.4 / fan_in)
            nn.init.uniform_(layer.bias, -2.4 / fan_in, 2.4 / fan_in)
        if output == "fc":
            # DEVIATION: the paper's output layer is Euclidean RBF units
            # with fixed prototypes (§II.B); a trainable 84 -> 10
            # layer is how later summaries draw it (the usual one now),
            # trains with cross-entropy, and adds 850 trainable
            # parameters to the paper's 60,000 (60,850).
            self.output = nn.Linear(84, num_classes)
            bound = 2.4 / 84
            nn.init.uniform_(self.output.weight, -bound, bound)
            nn.init.uniform_(self.output.bias, -bound, bound)
        else:
            self.output = EuclideanRBF(rbf_prototypes(num_classes))

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> F6 after its squashing, (B, 84)."""
        want = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"LeNet5(in_channels={self.in_channels}, input_size="
                f"{self.input_size}) expects (B, {want[0]}, {want[1]}, "
                f"{want[2]}) images, got {tuple(x.shape)}")
        x = self.act_c1(self.c1(x * self.input_scale))  # (B, 6, 28, 28)
        x = self.act_s2(self.s2(x))                    # (B, 6, 14, 14)
        x = self.act_c3(self.c3(x))                    # (B, 16, 10, 10)
        x = self.act_s4(self.s4(x))                    # (B, 16, 5, 5)
        x = self.act_c5(self.c5(x))                    # (B, 120, 1, 1)
        return self.act_f6(self.f6(torch.flatten(x, 1)))  # (B, 84)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.penultimate(x))           # (B, classes)


class EuclideanRBF(nn.Module):
    """RBF output units (§II.B): y_i = sum_j (x_j - w_ij)^2 with
    fixed prototypes w (a buffer, not a parameter).

    Returns -y, so the nearest prototype has the largest logit.
    """

    def __init__(self, prototypes: torch.Tensor):
        super().__init__()
        self.register_buffer("prototypes", prototypes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x[:, None, :] - self.prototypes[None]   # (B, classes, 84)
        # DEVIATION: negated penalties as logits, so that cross-entropy
        # trains it; the paper trains on the penalties (§II.C).
        return -diff.pow(2).sum(-1)

    def extra_repr(self) -> str:
        n, d = self.prototypes.shape
        return f"{d} -> {n}, fixed prototypes"
