"""AlexNet as §3.5 and Figure 2 of the paper describe it.

Five convolutional and three fully connected layers; conv2, conv4 and
conv5 only see the kernel maps on their own GPU (``groups=2``); ReLU,
then response normalization, then overlapping max-pooling after conv1
and conv2; max-pooling after conv5; dropout on fc6 and fc7.

Input size (the paper says 224; its 55x55 conv1 maps need 227 or
padding): ``input_size=224`` (default) follows the author's
cuda-convnet, whose conv output size is 1 + ceil((S - 11) / 4) = 55:
its last window hangs 3 pixels over the right and bottom edges,
which read as zeros. ``pad1`` makes those zeros explicit. With
``input_size=227`` (Caffe) the windows fit and ``pad1`` does nothing.
Either way: 55 -> 27 -> 27 -> 13 -> 13 -> 6, and 6*6*256 = 9216 into fc6.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from alexnet_lib.layers import PAPER_LRN, LocalResponseNorm, lrn_max_pool

__all__ = ["AlexNet", "PAPER_LRN", "init_paper_", "init_caffe_",
           "init_glorot_",
           "init_weights_", "feature_map_shapes", "check_choice",
           "check_options",
           "check_removed", "pool5_side", "conv1_padding", "check_input",
           "conv1_pad", "response_norm", "max_pool", "dropout_layer",
           "two_gpu_conv", "middle_inputs", "remove_middle"]

PAPER_WIDTHS = (96, 256, 384, 384, 256)  # kernels in conv1..conv5, §3.5
BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # §5
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
POOLINGS = {"overlapping": (3, 2), "non_overlapping": (2, 2)}  # (z, s)
INITS = ("paper", "caffe", "torch")
# §7: conv layers whose removal keeps every map size (13x13, no pooling
# or normalization in between), so the rest of the net is unchanged.
REMOVABLE = ("conv3", "conv4")


def conv1_padding(input_size: int, kernel: int = 11, stride: int = 4) -> int:
    """Right/bottom zero padding implied by cuda-convnet's conv arithmetic.

    cuda-convnet: out = 1 + ceil((S - kernel) / stride). The last window
    starts at (out - 1) * stride and must fit: 3 for 224, 0 for 227.
    """
    if input_size < kernel:
        raise ValueError(f"input_size={input_size} is smaller than the "
                         f"{kernel}x{kernel} conv1 kernel")
    out = 1 + math.ceil((input_size - kernel) / stride)
    return (out - 1) * stride + kernel - input_size


def check_choice(name: str, value, choices) -> None:
    """Raise a one-line ValueError unless ``value`` is in ``choices``
    (any collection; a dict's keys), naming the allowed values."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of "
                         f"{', '.join(map(repr, choices))}")


def check_options(activation, pooling, groups, dropout, widths, init,
                  lrn_options) -> dict:
    """Validate the options AlexNet and TwoTowerAlexNet share; return
    the full LRN options."""
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("pooling", pooling, POOLINGS)
    check_choice("groups", groups, (1, 2))
    check_choice("init", init, INITS)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout} must be in [0, 1); "
                         f"0 turns dropout off")
    if len(widths) != 5 or any(int(w) != w or w < 1 for w in widths):
        raise ValueError(f"widths={widths} must be five positive ints "
                         f"(kernels in conv1..conv5)")
    if groups == 2 and any(w % 2 for w in widths):
        raise ValueError(f"groups=2 splits every conv layer in two halves:"
                         f" widths={tuple(widths)} must all be even")
    lrn = {**PAPER_LRN, "scale_by_size": False, "groups": groups}
    unknown = set(lrn_options or {}) - set(lrn)
    if unknown:
        raise TypeError(f"lrn_options: unknown key(s) {sorted(unknown)}; "
                        f"known: {sorted(lrn)}")
    return {**lrn, **(lrn_options or {})}


def check_removed(removed) -> tuple:
    """The removed layers as a sorted tuple; unknown names raise."""
    if isinstance(removed, str):
        removed = (removed,)
    removed = tuple(sorted(set(removed)))
    unknown = [n for n in removed if n not in REMOVABLE]
    if unknown:
        raise ValueError(f"removed={unknown} cannot be removed: choose "
                         f"from {', '.join(REMOVABLE)} (the layers "
                         f"between two 13x13 maps with nothing between)")
    return removed


# One builder per idea of the paper; AlexNet.__init__ below and
# TwoTowerAlexNet put them together, and the chapters show them.

def conv1_pad(pad: int) -> nn.Module:
    """The zeros cuda-convnet reads past conv1's right and bottom edges
    (``conv1_padding``); an identity when the windows fit."""
    return nn.ZeroPad2d((0, pad, 0, pad)) if pad else nn.Identity()


def response_norm(on: bool, options: dict) -> nn.Module:
    """§3.3: local response normalization, applied after the ReLU of
    conv1 and conv2 (``options``: size, alpha, beta, k and the groups
    normalised apart); an identity when switched off."""
    return LocalResponseNorm(**options) if on else nn.Identity()


def max_pool(pooling: str) -> nn.MaxPool2d:
    """§3.4: max-pooling over z x z windows placed s apart; the paper's
    "overlapping" z=3, s=2 or the traditional z=s=2."""
    z, s = POOLINGS[pooling]
    return nn.MaxPool2d(z, s)


def dropout_layer(p: float) -> nn.Module:
    """§4.2: set each hidden neuron's output to zero with probability
    ``p`` while training (after relu6 and relu7); p=0 is no dropout."""
    # DEVIATION: inverted dropout (outputs x2 while training) instead
    # of the paper's x0.5 at test time; the same expected output.
    return nn.Dropout(p) if p > 0 else nn.Identity()


def two_gpu_conv(c_in: int, c_out: int, kernel: int,
                 groups: int) -> nn.Conv2d:
    """§3.2: with groups=2 each half of the output maps reads only the
    half of the input maps on its own GPU (conv2, conv4, conv5); the
    padding keeps the map size, as Fig. 2's sizes imply."""
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2,
                     groups=groups)


def middle_inputs(widths, removed: tuple) -> tuple[int, int, int]:
    """§7's depth ablation: the maps conv3, conv4 and conv5 read. A
    removed layer passes its input on, so the next layer reads the
    maps from before it."""
    c3_in = widths[1]
    c4_in = c3_in if "conv3" in removed else widths[2]
    c5_in = c4_in if "conv4" in removed else widths[3]
    return c3_in, c4_in, c5_in


def remove_middle(model: nn.Module, removed: tuple) -> None:
    """§7: each removed conv layer, and the ReLU after it, becomes an
    identity (names from REMOVABLE; ``forward`` is unchanged)."""
    for conv in removed:
        setattr(model, conv, nn.Identity())
        setattr(model, conv.replace("conv", "relu"), nn.Identity())


def init_paper_(model: nn.Module, bias: float = 1.0) -> None:
    """§5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6,
    fc7 (the hidden FC layers), 0 elsewhere (conv1, conv3, fc8).
    ``bias`` replaces that 1 (the one change §5's exercise tries)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
            layer = name.rsplit(".", 1)[-1]
            nn.init.constant_(m.bias, bias if layer in BIAS_ONE else 0.0)


def init_caffe_(model: nn.Module, bias: float = 0.1) -> None:
    """Caffe's bvlc_alexnet: weights ~ N(0, 0.01), fc6 and fc7 N(0,
    0.005); biases 0.1 where the paper has 1, 0 elsewhere."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            layer = name.rsplit(".", 1)[-1]
            std = 0.005 if layer in ("fc6", "fc7") else 0.01
            nn.init.normal_(m.weight, mean=0.0, std=std)
            nn.init.constant_(m.bias, bias if layer in BIAS_ONE else 0.0)


def init_glorot_(model: nn.Module) -> None:
    """Glorot and Bengio (2010): every conv and linear weight uniform
    with variance 2 / (fan-in + fan-out), biases 0 (the later networks'
    CPU proxies: VGG, NiN, GoogLeNet)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def init_weights_(model: nn.Module, init: str,
                  bias: float | None = None) -> None:
    """Apply ``init``: "paper" (§5), "caffe" (bvlc_alexnet) or "torch"
    (leave PyTorch's default). ``bias``: the constant bias of conv2,
    conv4, conv5, fc6 and fc7 instead of the init's own (1 or 0.1)."""
    if init == "paper":
        init_paper_(model, 1.0 if bias is None else bias)
    elif init == "caffe":
        init_caffe_(model, 0.1 if bias is None else bias)
    elif bias is not None:
        raise ValueError("bias sets the constant biases of the paper's "
                         "or Caffe's init: use it with init='paper' or "
                         "'caffe'")


class AlexNet(nn.Module):
    """The paper's network (§3.5, Fig. 2) with switches for ablations.

    Defaults are the paper's: 60,965,224 parameters for 1000 classes.
    ``forward`` returns logits (the softmax is in the loss). Input:
    (B, 3, input_size, input_size) float, mean-subtracted.

    activation: "relu" (§3.1) or "tanh" (Fig. 1's comparison). The
        nonlinearity slots are named relu1..relu7 either way, as in
        Caffe's bvlc_alexnet.
    lrn: response normalization after relu1 and relu2 (§3.3);
        lrn_options overrides size, alpha, beta, k, scale_by_size, groups.
    pooling: "overlapping" (z=3, s=2, §3.4) or "non_overlapping" (2, 2).
    groups: 2 = the two-GPU connectivity of §3.2 (conv2, conv4, conv5 see
        only their own GPU's maps); 1 = one dense tower.
    widths: kernels in conv1..conv5; (48, 128, 192, 192, 256) with
        groups=1 is §3.2's one-GPU comparison net (footnote 2).
    dropout: drop probability after relu6 and relu7 (§4.2); 0 disables.
    init: "paper" (§5), "caffe" (bvlc_alexnet: biases 0.1, fc6/fc7
        std 0.005) or "torch" (PyTorch's default init).
    bias: the constant bias of conv2, conv4, conv5, fc6 and fc7 (§5: 1;
        Caffe: 0.1); None keeps the init's own.
    removed: names from REMOVABLE ("conv3", "conv4") to leave out, for
        §7's "removing any of the middle layers"; () is the paper's net.

    LRN with groups=2: each half of the kernel maps is normalised on its
    own (LRN groups = groups unless lrn_options says otherwise). In the
    paper each GPU computes its own layer parts, and the two-GPU config
    of the author's cuda-convnet2 normalises 48 maps per GPU (rnorm1a,
    rnorm1b). So N in §3.3 is the maps on one GPU, and this model and
    ``TwoTowerAlexNet`` compute the same function. Caffe's bvlc_alexnet
    normalises across all 96: ``lrn_options={"groups": 1}``.
    """

    def __init__(self, num_classes: int = 1000, activation: str = "relu",
                 lrn: bool = True, lrn_options: dict | None = None,
                 pooling: str = "overlapping", groups: int = 2,
                 dropout: float = 0.5, input_size: int = 224,
                 widths: tuple = PAPER_WIDTHS, fc_width: int = 4096,
                 conv1_kernel: int = 11, conv1_stride: int = 4,
                 init: str = "paper", bias: float | None = None,
                 removed: tuple = ()):
        super().__init__()
        lrn_opts = check_options(activation, pooling, groups, dropout,
                                 widths, init, lrn_options)
        removed = check_removed(removed)
        # the constructor's arguments, to rebuild the same architecture
        self.options = dict(
            num_classes=num_classes, activation=activation, lrn=lrn,
            lrn_options=lrn_options, pooling=pooling, groups=groups,
            dropout=dropout, input_size=input_size, widths=tuple(widths),
            fc_width=fc_width, conv1_kernel=conv1_kernel,
            conv1_stride=conv1_stride, init=init)
        if bias is not None:  # only when set, as removed below
            self.options["bias"] = bias
        if removed:  # only when set: TwoTowerAlexNet has no such option
            self.options["removed"] = removed
        self.removed = removed
        self.input_size, self.groups = input_size, groups
        self.num_classes = num_classes
        w1, w2, w3, w4, w5 = widths
        act = ACTIVATIONS[activation]
        pad = conv1_padding(input_size, conv1_kernel, conv1_stride)
        self.pad1 = conv1_pad(pad)
        self.conv1 = nn.Conv2d(3, w1, conv1_kernel, conv1_stride)
        self.relu1 = act()
        self.lrn1 = response_norm(lrn, lrn_opts)
        self.pool1 = max_pool(pooling)
        self.conv2 = two_gpu_conv(w1, w2, 5, groups)
        self.relu2 = act()
        self.lrn2 = response_norm(lrn, lrn_opts)
        self.pool2 = max_pool(pooling)
        c3_in, c4_in, c5_in = middle_inputs(widths, removed)
        self.conv3 = two_gpu_conv(c3_in, w3, 3, 1)  # reads both GPUs
        self.relu3 = act()
        self.conv4 = two_gpu_conv(c4_in, w4, 3, groups)
        self.relu4 = act()
        remove_middle(self, removed)
        self.conv5 = two_gpu_conv(c5_in, w5, 3, groups)
        self.relu5, self.pool5 = act(), max_pool(pooling)
        z, s = POOLINGS[pooling]
        side = pool5_side(input_size + pad, conv1_kernel, conv1_stride,
                          z, s)
        self.fc6 = nn.Linear(w5 * side * side, fc_width)
        self.relu6, self.drop6 = act(), dropout_layer(dropout)
        self.fc7 = nn.Linear(fc_width, fc_width)
        self.relu7, self.drop7 = act(), dropout_layer(dropout)
        self.fc8 = nn.Linear(fc_width, num_classes)
        init_weights_(self, init, bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> pool5 output (B, 256, 6, 6)."""
        check_input(x, self.input_size, type(self).__name__)
        x = self.conv1(self.pad1(x))                     # (B, 96, 55, 55)
        x = lrn_max_pool(self.lrn1, self.pool1, self.relu1(x))  # 96x27x27
        x = self.conv2(x)                                # (B, 256, 27, 27)
        x = lrn_max_pool(self.lrn2, self.pool2, self.relu2(x))  # 256x13x13
        x = self.relu3(self.conv3(x))                    # (B, 384, 13, 13)
        x = self.relu4(self.conv4(x))                    # (B, 384, 13, 13)
        # (a removed conv3/conv4 is an identity: 256 or 384 maps go on)
        return self.pool5(self.relu5(self.conv5(x)))     # (B, 256, 6, 6)

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 after its ReLU, (B, 4096): the feature §6.1 compares."""
        x = torch.flatten(self.features(x), 1)           # (B, 9216)
        x = self.drop6(self.relu6(self.fc6(x)))          # (B, 4096)
        return self.relu7(self.fc7(x))                   # (B, 4096)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.drop7(self.penultimate(x)))  # (B, classes)


def check_input(x: torch.Tensor, input_size: int, name: str) -> None:
    """Raise a clear error unless x is (B, 3, input_size, input_size)."""
    want = (3, input_size, input_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(
            f"{name}(input_size={input_size}) expects (B, 3, {input_size}, "
            f"{input_size}) images, got {tuple(x.shape)}: crop or resize "
            f"the input, or build the model with input_size="
            f"{x.shape[-1] if x.dim() == 4 else '...'}")


def pool5_side(size: int, k1: int, s1: int, z: int, s: int) -> int:
    """Side of pool5's output for a padded input of side ``size``."""
    size = (size - k1) // s1 + 1          # conv1
    size = (size - z) // s + 1            # pool1 (conv2 keeps the size)
    size = (size - z) // s + 1            # pool2 (conv3..5 keep it)
    size = (size - z) // s + 1            # pool5
    if size < 1:
        raise ValueError("the input is too small: pool5 would be empty; "
                         "use a larger input_size or smaller conv1 stride")
    return size


def feature_map_shapes(model: nn.Module, input_size: int | None = None,
                       ) -> dict[str, tuple[int, ...]]:
    """Output shape (C, H, W or features) of every named layer, from one
    zero image through forward hooks."""
    size = input_size or model.input_size
    shapes, hooks = {}, []
    for name, m in model.named_modules():
        if name and not list(m.children()):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, name=name:
                shapes.__setitem__(name, tuple(out.shape[1:]))))
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes
