"""Pretrained torchvision weights in alexnet_owt, and the offline path."""
import socket
import urllib.error

import pytest
import torch

from alexnet_lib.models import AlexNetOWT
from alexnet_lib.models import owt as owt_module
from alexnet_lib.pretrained import (imagenet_class_indices,
                                    load_pretrained_owt, owt_transform,
                                    score_on_imagenet_classes)

IMAGENETTE_SYNSETS = ["n01440764", "n02102040", "n02979186", "n03000684",
                      "n03028079", "n03394916", "n03417042", "n03425413",
                      "n03445777", "n03888257"]


def test_offline_gives_no_model_and_a_message(monkeypatch):
    def offline():
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(owt_module, "_download_state_dict", offline)
    before = socket.getdefaulttimeout()
    result = load_pretrained_owt()
    assert not result.available and result.model is None
    assert result.message.startswith("No pretrained weights, so this part "
                                     "is skipped: could not download")
    assert "weights_path=" in result.message
    assert socket.getdefaulttimeout() == before  # timeout restored


def test_missing_local_file_is_a_message_too(tmp_path):
    result = load_pretrained_owt(tmp_path / "missing.pth")
    assert not result.available
    assert "does not exist" in result.message


def test_local_file_loads_into_alexnet_owt(tmp_path):
    torch.manual_seed(0)
    ref = AlexNetOWT()
    path = tmp_path / "alexnet-owt.pth"
    torch.save(ref.state_dict(), path)
    result = load_pretrained_owt(path)
    assert result.available and not result.model.training
    assert torch.equal(result.model.classifier[6].weight,
                       ref.classifier[6].weight)
    assert "one-weird-trick variant, not the 2012" in result.message


def test_imagenette_synsets_in_the_ilsvrc_order(data_dir):
    indices = imagenet_class_indices(IMAGENETTE_SYNSETS,
                                     data_dir / "imagenet_class_index.json")
    assert indices == [0, 217, 482, 491, 497, 566, 569, 571, 574, 701]
    with pytest.raises(ValueError, match="not among the 1000"):
        imagenet_class_indices(["n00000000"],
                               data_dir / "imagenet_class_index.json")


def test_missing_class_index_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagenet_class_index"):
        imagenet_class_indices(["n01440764"],
                               tmp_path / "imagenet_class_index.json")


def test_scoring_ranks_over_1000_and_among_the_subset():
    class Fixed(torch.nn.Module):  # scores: class 5 best, then 3, 7, ...
        def forward(self, x):
            scores = torch.zeros(len(x), 1000)
            scores[:, 5], scores[:, 3], scores[:, 7] = 3.0, 2.0, 1.0
            return scores

    # labels index [7, 3]: image 0 is class 7, image 1 class 3
    data = [(torch.zeros(3, 8, 8), 0), (torch.zeros(3, 8, 8), 1)]
    out = score_on_imagenet_classes(Fixed(), data, [7, 3], batch_size=2)
    assert out["n"] == 2
    assert out["top1_error"] == 1.0  # class 5 wins over all 1000
    assert out["top5_error"] == 0.0
    assert out["top1_error_among"] == 0.5  # among {7, 3}: 3 wins
    # §6 scores only the images the weights were not trained on: a
    # Subset of the data set counts those alone
    unseen = score_on_imagenet_classes(
        Fixed(), torch.utils.data.Subset(data, [1]), [7, 3])
    assert unseen["n"] == 1 and unseen["top1_error_among"] == 0.0


def test_owt_transform_is_torchvisions_224_crop():
    t = owt_transform()
    x = t(torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8))
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32


def test_outside_ilsvrc_train_reads_imagenets_file_names():
    from alexnet_lib.pretrained import outside_ilsvrc_train
    names = ["val/n01440764/ILSVRC2012_val_00009111.JPEG",
             "val/n01440764/n01440764_10042.JPEG",
             "ILSVRC2012_val_00000001.JPEG", "x/n03000684_1.JPEG"]
    assert outside_ilsvrc_train(names) == [True, False, True, False]
