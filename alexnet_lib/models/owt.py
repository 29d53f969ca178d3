"""torchvision's ``alexnet``: the 2014 "one weird trick" variant.

Not the 2012 paper's network: 64-192-384-256-256 kernels, no response
normalization, no groups, dropout *before* fc6 and fc7, and an adaptive
average pool so other input sizes still give 6x6 maps. Its state-dict
keys match torchvision's, so torchvision's ImageNet weights load here.
61,100,840 parameters with 1000 classes.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["AlexNetOWT", "alexnet_owt", "PretrainedWeightsError"]

WEIGHTS_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


class PretrainedWeightsError(RuntimeError):
    """The pretrained weights could not be downloaded or read."""


class AlexNetOWT(nn.Module):
    """Keys: features.{0,3,6,8,10}, classifier.{1,4,6} (torchvision's)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.input_size = 224
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),   # 0: (B, 64, 55, 55)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                          # 2: (B, 64, 27, 27)
            nn.Conv2d(64, 192, 5, padding=2),            # 3
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                          # 5: (B, 192, 13, 13)
            nn.Conv2d(192, 384, 3, padding=1),           # 6
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),           # 8
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),           # 10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),                          # 12: (B, 256, 6, 6)
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),                # 1
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),                       # 4
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),                # 6
        )

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """The second 4096 layer after its ReLU, (B, 4096)."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier[6](self.penultimate(x))


def _download_state_dict() -> dict:
    """torchvision's AlexNet_Weights.IMAGENET1K_V1 (cached by torch.hub)."""
    from torchvision.models import AlexNet_Weights
    return AlexNet_Weights.IMAGENET1K_V1.get_state_dict(progress=True)


def alexnet_owt(num_classes: int = 1000, dropout: float = 0.5,
                pretrained: bool = False,
                weights_path: str | Path | None = None) -> AlexNetOWT:
    """torchvision-compatible AlexNet (the 2014 one-GPU variant).

    pretrained: load torchvision's ImageNet weights (downloads once into
        the torch.hub cache). weights_path: load them from a local file
        instead (e.g. a copy of alexnet-owt-7be5be79.pth).
    """
    model = AlexNetOWT(num_classes, dropout)
    if not pretrained and weights_path is None:
        return model
    if num_classes != 1000:
        raise ValueError("the pretrained weights have 1000 classes: load "
                         "them with num_classes=1000, then replace "
                         "model.classifier[6]")
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"weights_path={str(path)!r} does not exist: download "
                f"{WEIGHTS_URL} there, or pass pretrained=True online")
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        try:
            state = _download_state_dict()
        except Exception as e:  # URLError, socket errors, HTTP errors, ...
            raise PretrainedWeightsError(
                f"could not download torchvision's AlexNet weights from "
                f"{WEIGHTS_URL} ({type(e).__name__}: {e}). Connect to the "
                f"internet and retry, or fetch the file on another machine "
                f"and pass alexnet_owt(weights_path='/path/to/"
                f"alexnet-owt-7be5be79.pth').") from e
    model.load_state_dict(state)
    return model
