"""ZFNet (Zeiler and Fergus 2014, §3 and Fig. 3): AlexNet with its first
two layers fixed after looking at them with the deconvnet.

What changes against ``AlexNet`` (ZFNet §3, §4.1):

* conv1: 96 kernels of 7x7 with stride 2 instead of 11x11 with stride 4;
  conv2: stride 2;
* one dense tower: every layer reads all maps of the layer below (ZFNet
  replaced AlexNet's GPU-split connections by dense ones);
* the order after conv1 and conv2 is ReLU -> max-pooling -> contrast
  normalisation (AlexNet: ReLU -> normalisation -> pooling);
* weights drawn with standard deviation 0.01 and biases 0 (the paper
  says "initialized to 10^-2", read as a standard deviation);
* during training, any conv filter whose root mean square exceeds 0.1
  is scaled back to 0.1 (``renormalise_``; the training loop calls it
  after every update).

Fig. 3's map sizes (110, 55, 26, 13, 6 for a 224-pixel input) need a
rounding up the paper does not state: (224 - 7) / 2 + 1 = 109.5,
(110 - 3) / 2 + 1 = 54.5, (26 - 3) / 2 + 1 = 12.5. As for ``AlexNet``,
this model follows cuda-convnet, which rounds output sizes up: one zero
row and column on the right and bottom before conv1, and ceil-mode
pooling. With 1000 classes it has 62,357,608 parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from alexnet_lib.layers import PAPER_LRN, LocalResponseNorm
from alexnet_lib.models.alexnet import AlexNet, check_input

__all__ = ["ZFNet", "FILTER_RMS_RADIUS"]

FILTER_RMS_RADIUS = 0.1  # ZFNet §3: "a fixed radius of 10^-1"


class ZFNet(nn.Module):
    """ZFNet's 8-layer network (Fig. 3) in the library's layer names.

    ``norm_after_pool`` tells the deconvnet that normalisation follows
    pooling here. ``forward`` returns logits; input (B, 3, 224, 224),
    mean-subtracted.
    """
    norm_after_pool = True

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5,
                 input_size: int = 224):
        super().__init__()
        if input_size != 224:
            raise ValueError("ZFNet is defined for 224x224 inputs "
                             f"(Fig. 3), got input_size={input_size}")
        self.input_size, self.groups = input_size, 1
        self.num_classes = num_classes
        self.pad1 = nn.ZeroPad2d((0, 1, 0, 1))  # cuda-convnet rounding
        self.conv1 = nn.Conv2d(3, 96, 7, stride=2)          # 110x110
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)     # 55x55
        # DEVIATION: ZFNet names "contrast normalisation across feature
        # maps" without constants; AlexNet's LRN (§3.3) stands in.
        self.lrn1 = LocalResponseNorm(**PAPER_LRN)
        self.conv2 = nn.Conv2d(96, 256, 5, stride=2)        # 26x26
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)     # 13x13
        self.lrn2 = LocalResponseNorm(**PAPER_LRN)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1)
        self.relu4 = nn.ReLU()
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1)
        self.relu5 = nn.ReLU()
        self.pool5 = nn.MaxPool2d(3, 2)                     # 6x6
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> pool5 output (B, 256, 6, 6)."""
        check_input(x, self.input_size, type(self).__name__)
        x = self.conv1(self.pad1(x))                      # (B, 96, 110, 110)
        x = self.lrn1(self.pool1(self.relu1(x)))          # (B, 96, 55, 55)
        x = self.conv2(x)                                 # (B, 256, 26, 26)
        x = self.lrn2(self.pool2(self.relu2(x)))          # (B, 256, 13, 13)
        x = self.relu3(self.conv3(x))                     # (B, 384, 13, 13)
        x = self.relu4(self.conv4(x))                     # (B, 384, 13, 13)
        return self.pool5(self.relu5(self.conv5(x)))      # (B, 256, 6, 6)

    # fc6..fc8 are AlexNet's: the same head on the same pool5 shape
    penultimate = AlexNet.penultimate  # fc7 after its ReLU, (B, 4096)
    forward = AlexNet.forward  # logits, (B, num_classes)

    @torch.no_grad()
    def renormalise_(self, radius: float = FILTER_RMS_RADIUS) -> int:
        """Scale every conv filter whose RMS exceeds ``radius`` back to
        it (ZFNet §3); returns how many filters were scaled."""
        scaled = 0
        for m in (self.conv1, self.conv2, self.conv3, self.conv4,
                  self.conv5):
            rms = m.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()  # (out,)
            over = rms > radius
            if over.any():
                m.weight[over] *= (radius / rms[over])[:, None, None, None]
                scaled += int(over.sum())
        return scaled
