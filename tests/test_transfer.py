"""ZFNet §5.2's transfer protocol (alexnet_lib/transfer.py)."""
import pytest
import torch

from alexnet_lib.models import create_model
from alexnet_lib.transfer import (few_shot_indices, frozen_features,
                                  mean_class_accuracy, predict,
                                  train_from_scratch, train_softmax,
                                  upsample)


def test_few_shot_indices_balanced_and_seeded_by_fold():
    labels = torch.arange(10).repeat(20)  # 20 images of each of 10 classes
    a = few_shot_indices(labels, 15, fold=0)
    assert len(a) == 150
    assert torch.bincount(labels[a]).tolist() == [15] * 10
    assert torch.equal(a, few_shot_indices(labels, 15, fold=0))
    assert not torch.equal(a, few_shot_indices(labels, 15, fold=1))
    assert torch.equal(a, a.sort().values)
    with pytest.raises(ValueError, match="fewer than per_class=30"):
        few_shot_indices(labels, 30, fold=0)


def test_upsample_keeps_scale_and_constant_images():
    img = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    big = upsample(img, 64)
    assert big.shape == (2, 3, 64, 64) and big.dtype == torch.float32
    assert torch.all(big == 200.0)


def test_mean_class_accuracy_weights_classes_equally():
    labels = torch.tensor([0, 0, 0, 0, 1])
    predicted = torch.tensor([0, 0, 0, 0, 0])  # class 1 always wrong
    assert mean_class_accuracy(predicted, labels) == pytest.approx(0.5)


def test_train_softmax_separates_separable_features():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(10)
    features = torch.randn(30, 8, generator=g) * 0.1
    features[torch.arange(30), labels] += 3.0  # class c lights feature c
    layer = train_softmax(features, labels, 3)
    assert layer.weight.shape == (3, 8)
    assert torch.equal(layer(features).argmax(1), labels)
    # convex and started from zeros: the same fit every time
    again = train_softmax(features, labels, 3)
    torch.testing.assert_close(layer.weight, again.weight)


def test_frozen_features_and_scratch_training_shapes():
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=4, input_size=64)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    mean = torch.full((3, 64, 64), 120.0)
    feats = frozen_features(model, images, mean, resize=72, size=64,
                            batch=4)
    assert feats.shape == (6, 4096)
    assert torch.all(feats >= 0)  # after fc7's ReLU
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    net, errors = train_from_scratch(
        lambda: create_model("alexnet", num_classes=4, input_size=64),
        images, labels, mean, resize=72, size=64, epochs=2, batch=4)
    assert len(errors) == 2 and not net.training
    assert all(0.0 <= e <= 1.0 for e in errors)
    # seeded: the same training twice gives the same weights
    net2, errors2 = train_from_scratch(
        lambda: create_model("alexnet", num_classes=4, input_size=64),
        images, labels, mean, resize=72, size=64, epochs=2, batch=4)
    assert errors == errors2
    torch.testing.assert_close(net.fc8.weight, net2.fc8.weight)
    classes = predict(net, images, mean, resize=72, size=64, batch=4)
    assert classes.shape == (6,) and classes.dtype == torch.int64
    assert classes.max() < 4
