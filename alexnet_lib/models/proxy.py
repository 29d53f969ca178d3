"""``alexnet_cifar``: AlexNet's design at CIFAR-10 scale, for ablations.

The paper measures its architectural choices (two GPUs, §3.2;
overlapping pooling, §3.4) on ImageNet. Two CPU cores cannot train the
full network, so the book measures the same switches on a proxy: the
same ``AlexNet`` class (five conv layers, groups on conv2/4/5, ReLU,
LRN, max-pooling after conv1, conv2 and conv5, two dropout fc layers,
§5 init), with a quarter of the kernels per layer, an eighth of the fc
width, a 5x5 stride-1 conv1, 27x27 crops of the 32x32 images and
PyTorch's default initialisation (see ``alexnet_cifar``). Every
result from it is a proxy, and the chapters say so.

27 is chosen so that overlapping (3, 2) and non-overlapping (2, 2)
pooling give equal map sizes at every pool, as 55 -> 27 -> 13 -> 6 does
in the paper: 27 -> conv1 23 -> pool 11 -> pool 5 -> pool 2.
"""
from __future__ import annotations

from alexnet_lib.models.alexnet import AlexNet, check_choice

__all__ = ["alexnet_cifar", "PROXY_WIDTHS", "PROXY_ONE_TOWER_WIDTHS",
           "PROXY_INPUT"]

# DEVIATION: the CIFAR-10 proxy of §3.2/§3.4 (module docstring): a
# quarter of the paper's kernels (96, 256, 384, 384, 256) / 4, fc 512
# instead of 4096, conv1 5x5 stride 1 instead of 11x11 stride 4.
PROXY_WIDTHS = (24, 64, 96, 96, 64)
# §3.2's one-GPU comparison net (footnote 2): half the kernels in conv1
# to conv4, the last conv layer and the fc layers kept at full size.
PROXY_ONE_TOWER_WIDTHS = (12, 32, 48, 48, 64)
PROXY_INPUT = 27
PROXY_FC = 512


# DEVIATION: the proxy starts from PyTorch's default init. §5's
# N(0, 0.01) weights with biases of 1 leave this narrow net at chance
# (90% error after three epochs on 5,000 images, measured while building
# it): its fan-ins are about 4x smaller than the paper's, so a 0.01 std
# shrinks the signal layer after layer.
def alexnet_cifar(num_classes: int = 10, towers: str = "two",
                  pooling: str = "overlapping", lrn: bool = True,
                  dropout: float = 0.5, input_size: int = PROXY_INPUT,
                  init: str = "torch", activation: str = "relu",
                  removed: tuple = ()) -> AlexNet:
    """The CIFAR-10 proxy of AlexNet.

    towers: "two" = the paper's grouped net (conv2, conv4, conv5 see
        only their own half); "one_half" = §3.2's one-GPU net with half
        the kernels (footnote 2: the last conv layer and the fc layers
        keep their size); "one_full" = all kernels in one dense tower.
    removed: ("conv3",), ("conv4",) or both: §7's depth ablation.
    The other options are ``AlexNet``'s.

    init: "torch" by default (see the comment above the function);
    ``init="paper"`` is there to see the paper's init stall.
    """
    choices = {"two": (PROXY_WIDTHS, 2),
               "one_half": (PROXY_ONE_TOWER_WIDTHS, 1),
               "one_full": (PROXY_WIDTHS, 1)}
    check_choice("towers", towers, choices)
    widths, groups = choices[towers]
    return AlexNet(num_classes=num_classes, activation=activation,
                   lrn=lrn, pooling=pooling, groups=groups,
                   dropout=dropout, input_size=input_size, widths=widths,
                   fc_width=PROXY_FC, conv1_kernel=5, conv1_stride=1,
                   init=init, removed=removed)
