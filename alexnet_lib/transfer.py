"""ZFNet §5.2 at our scale: a trained network's features on new data.

Zeiler and Fergus kept layers 1-7 of their ImageNet network fixed and
trained only a new softmax on Caltech-101 with 15 or 30 images per
class (86.5% with 30), against the same network trained from scratch on
those few images (46.5%). Here the trained network is §6's (Imagenette)
and the new data set CIFAR-10: its 32-pixel photos are enlarged to the
network's input, as ``upsample`` does, and a class-balanced handful per
class (``few_shot_indices``) is all either side may learn from.

* ``frozen_features``: fc7 after its ReLU (4096 numbers) of the fixed
  network, in eval mode (no dropout);
* ``train_softmax``: the new softmax (a linear layer and cross-entropy,
  with §5's weight decay) fitted on those features by L-BFGS;
* ``train_from_scratch``: the same network, new weights, trained with
  §5's update rule on the few images, with §4.1's random crops and
  flips, through the library's ``train_one_epoch``;
* ``mean_class_accuracy``: the Caltech protocol's score.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["few_shot_indices", "upsample", "frozen_features", "predict",
           "train_softmax", "train_from_scratch", "mean_class_accuracy"]


def few_shot_indices(labels: torch.Tensor, per_class: int, fold: int
                     ) -> torch.Tensor:
    """Indices of ``per_class`` images of every class, drawn at random
    (seeded by ``fold``: fold f always draws the same images), sorted."""
    labels = torch.as_tensor(labels)
    g = torch.Generator().manual_seed(1000 + fold)
    picked = []
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} images, fewer "
                             f"than per_class={per_class}")
        picked.append(members[torch.randperm(len(members),
                                             generator=g)[:per_class]])
    return torch.cat(picked).sort().values


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> float (N, 3, size, size), bilinear, still
    on the 0-255 scale."""
    return F.interpolate(images.float(), size=(size, size),
                         mode="bilinear", align_corners=False)


def _centre(x: torch.Tensor, size: int) -> torch.Tensor:
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


@torch.no_grad()
def frozen_features(model: nn.Module, images: torch.Tensor,
                    mean: torch.Tensor, resize: int, size: int,
                    batch: int = 100) -> torch.Tensor:
    """fc7 features (N, 4096) of uint8 images (N, 3, h, w): enlarged to
    ``resize``, centre ``size`` patch, ``mean`` (3, size, size)
    subtracted, as the run tested its own validation images."""
    model.eval()
    out = []
    for part in images.split(batch):
        x = _centre(upsample(part, resize), size) - mean
        out.append(model.penultimate(x).float())
    return torch.cat(out)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, mean: torch.Tensor,
            resize: int, size: int, batch: int = 100) -> torch.Tensor:
    """The most probable class (N,) of each uint8 image (N, 3, h, w),
    enlarged and centre-cropped as in :func:`frozen_features`."""
    model.eval()
    return torch.cat([
        model(_centre(upsample(part, resize), size) - mean).argmax(1)
        for part in images.split(batch)])


def mean_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor
                        ) -> float:
    """The mean over classes of each class's accuracy (Caltech's score;
    with equally many test images per class it is plain accuracy)."""
    labels = torch.as_tensor(labels)
    right = (torch.as_tensor(predicted) == labels).double()
    return torch.stack([right[labels == c].mean()
                        for c in labels.unique()]).mean().item()


def train_softmax(features: torch.Tensor, labels: torch.Tensor,
                  num_classes: int, weight_decay: float = 5e-4,
                  steps: int = 200) -> nn.Linear:
    """A new softmax layer (N, D) -> (N, num_classes) fitted to fixed
    features: cross-entropy plus ``weight_decay``/2 * ||W||^2 (§5's
    weight decay), minimised by L-BFGS from zeros (a convex problem, so
    the result does not depend on a seed)."""
    features = features.double()
    layer = nn.Linear(features.shape[1], num_classes).double()
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps,
                            line_search_fn="strong_wolfe")

    def loss_fn():
        opt.zero_grad()
        loss = F.cross_entropy(layer(features), labels) + \
            0.5 * weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(loss_fn)
    return layer.float()


def _batches(images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor,
             resize: int, size: int, batch: int, g: torch.Generator
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of §4.1's augmentation on the enlarged images: a random
    ``size`` patch of the ``resize`` image, flipped with probability 1/2."""
    order = torch.randperm(len(images), generator=g)
    for idx in order.split(batch):
        x = upsample(images[idx], resize)
        out = torch.empty(len(idx), 3, size, size)
        for i in range(len(idx)):
            top, left = torch.randint(0, resize - size + 1, (2,),
                                      generator=g).tolist()
            patch = x[i, :, top:top + size, left:left + size]
            if torch.rand((), generator=g) < 0.5:
                patch = patch.flip(-1)
            out[i] = patch - mean
        yield out, labels[idx]


def train_from_scratch(make_model: Callable[[], nn.Module],
                       images: torch.Tensor, labels: torch.Tensor,
                       mean: torch.Tensor, resize: int, size: int,
                       epochs: int, batch: int = 32, seed: int = 0,
                       prepare: Callable[[nn.Module], nn.Module] | None
                       = None) -> tuple[nn.Module, list[float]]:
    """Train ``make_model()`` (new weights) on the few uint8 ``images``
    for ``epochs`` epochs with §5's update rule (PaperSGD: lr 0.01,
    momentum 0.9, weight decay 5e-4) and §4.1's crops and flips.
    ``prepare`` may apply speed settings (``speed.apply_speed``).
    Returns (the model in eval mode, the training error per epoch)."""
    from alexnet_lib.config import OptimConfig
    from alexnet_lib.optim import build_optimizer
    from alexnet_lib.train import train_one_epoch
    torch.manual_seed(seed)
    model = make_model()
    if prepare is not None:
        model = prepare(model)
    optimizer = build_optimizer(model, OptimConfig())
    g = torch.Generator().manual_seed(seed)
    errors = []
    for _ in range(epochs):
        part = train_one_epoch(
            model, _batches(images, labels, mean, resize, size, batch, g),
            optimizer, "cpu")
        errors.append(part["error"])
    return model.eval(), errors
