"""torchvision's ImageNet weights in ``alexnet_owt``, or a clear no.

These are the weights of the 2014 "one weird trick" network (one tower,
64-192-384-256-256 kernels, no response normalization), not of the 2012
paper's. They need the internet once (torch.hub caches them) or a local
copy of the file. Offline, ``load_pretrained_owt`` returns no model and
a message that says how to get them, so a notebook can go on.
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from alexnet_lib.data.locate import find_dataset
from alexnet_lib.evaluate import topk_correct
from alexnet_lib.models.owt import PretrainedWeightsError, alexnet_owt

__all__ = ["PretrainedOWT", "load_pretrained_owt", "owt_transform",
           "outside_ilsvrc_train",
           "imagenet_class_indices", "score_on_imagenet_classes"]



@dataclass
class PretrainedOWT:
    model: nn.Module | None  # None: the weights could not be had
    message: str

    @property
    def available(self) -> bool:
        return self.model is not None


def load_pretrained_owt(weights_path: str | Path | None = None,
                        timeout_s: float = 20.0) -> PretrainedOWT:
    """torchvision's IMAGENET1K_V1 weights in ``alexnet_owt``, in eval
    mode; or, when they cannot be had, no model and the reason."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)  # no endless wait on a dead link
    try:
        # torch.hub announces a download with the local cache path; the
        # message returned here says what happened instead
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            model = alexnet_owt(pretrained=weights_path is None,
                                weights_path=weights_path)
    except (PretrainedWeightsError, FileNotFoundError, OSError,
            RuntimeError) as e:
        return PretrainedOWT(None, f"No pretrained weights, so this "
                             f"part is skipped: {e}")
    finally:
        socket.setdefaulttimeout(old)
    source = weights_path or "torchvision (torch.hub cache)"
    return PretrainedOWT(model.eval(), (
        f"Loaded torchvision's ImageNet weights from {source} into "
        f"alexnet_owt: the 2014 one-weird-trick variant, not the 2012 "
        f"paper's network."))


def owt_transform():
    """torchvision's test transform for these weights: resize 256,
    centre 224, pixels / 255, normalised by ImageNet's mean and std."""
    from torchvision.models import AlexNet_Weights
    return AlexNet_Weights.IMAGENET1K_V1.transforms()


def imagenet_class_indices(synsets: list[str],
                           index_file: str | Path | None = None
                           ) -> list[int]:
    """Position of each synset among the 1000 ILSVRC classes."""
    path = (Path(index_file) if index_file
            else find_dataset("class-index"))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: it maps synsets to the 1000 class "
            f"numbers (Keras' imagenet_class_index.json)")
    index = json.loads(path.read_text())
    position = {synset: int(i) for i, (synset, _) in index.items()}
    missing = [s for s in synsets if s not in position]
    if missing:
        raise ValueError(f"synsets not among the 1000 ILSVRC classes: "
                         f"{missing}")
    return [position[s] for s in synsets]


def outside_ilsvrc_train(paths) -> list[bool]:
    """For each image path: True when the image is not an ILSVRC-2012
    training image, so weights trained on ILSVRC-2012 have not seen it.

    Imagenette reuses ImageNet's file names: ``ILSVRC2012_val_*.JPEG``
    came from the ILSVRC-2012 validation set, ``n<synset>_<k>.JPEG``
    from its training set (1,866 of the 2,000 validation images of the
    224 px copy). Scoring pretrained ImageNet weights on the latter
    would test them on images they were trained on.
    """
    return [Path(p).name.startswith("ILSVRC2012_val_") for p in paths]


@torch.no_grad()
def score_on_imagenet_classes(model: nn.Module, dataset,
                              class_indices: list[int],
                              batch_size: int = 64,
                              device: str | torch.device = "cpu"
                              ) -> dict[str, float]:
    """Errors of a 1000-way model on images of a few ILSVRC classes.

    ``dataset`` yields (image, label) with label in range(len(
    class_indices)) and images already through ``owt_transform()``.
    top1/top5_error: ranked over all 1000 classes, as ILSVRC scores;
    top1_error_among: ranked over ``class_indices`` only.
    """
    columns = torch.tensor(class_indices, device=device)
    sums = torch.zeros(4, dtype=torch.float64)  # top1, top5, among, n
    model.eval()
    for x, y in DataLoader(dataset, batch_size=batch_size):
        logits = model(x.to(device)).float()  # (B, 1000)
        y = y.to(device)
        sums[:2] += topk_correct(logits, columns[y]).cpu().double()
        among = logits[:, columns].argmax(1) == y
        sums[2] += among.sum().item()
        sums[3] += len(y)
    n = max(sums[3].item(), 1.0)
    return {"top1_error": 1 - sums[0].item() / n,
            "top5_error": 1 - sums[1].item() / n,
            "top1_error_among": 1 - sums[2].item() / n, "n": int(n)}
