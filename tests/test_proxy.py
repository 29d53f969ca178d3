"""The CIFAR-10 proxy of AlexNet and the seeded ablation runner."""
import math

import pytest
import torch

from alexnet_lib.data.cifar import CifarTensors
from alexnet_lib.experiments import (ProxyPlan, mean_std,
                                     paired_differences, proxy_run)
from alexnet_lib.models import AlexNet, create_model, feature_map_shapes
from alexnet_lib.models.proxy import (PROXY_ONE_TOWER_WIDTHS,
                                      PROXY_WIDTHS)


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_proxy_widths_are_a_quarter_of_the_paper():
    assert PROXY_WIDTHS == tuple(w // 4 for w in (96, 256, 384, 384, 256))
    # footnote 2: the one-GPU net halves conv1..conv4, keeps conv5
    assert PROXY_ONE_TOWER_WIDTHS == (12, 32, 48, 48, 64)


@pytest.mark.parametrize("towers, params", [
    ("two", 545_130), ("one_half", 472_282), ("one_full", 633_450)])
def test_proxy_parameter_counts(towers, params):
    model = create_model("alexnet_cifar", towers=towers)
    assert isinstance(model, AlexNet)
    assert count(model) == params
    assert model.groups == (2 if towers == "two" else 1)


@pytest.mark.parametrize("pooling", ["overlapping", "non_overlapping"])
def test_proxy_pool_sizes_equal_for_both_poolings(pooling):
    shapes = feature_map_shapes(create_model("alexnet_cifar",
                                             pooling=pooling))
    assert shapes["conv1"] == (24, 23, 23)
    assert shapes["pool1"] == (24, 11, 11)
    assert shapes["pool2"] == (64, 5, 5)
    assert shapes["pool5"] == (64, 2, 2)
    assert shapes["fc8"] == (10,)


def test_proxy_rejects_unknown_towers():
    with pytest.raises(ValueError, match="towers='three' is not one of"):
        create_model("alexnet_cifar", towers="three")


def test_mean_std_and_paired_differences():
    mean, std = mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == 1.0
    assert math.isnan(mean_std([5.0])[1])
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])
    a = [{"seed": 0, "test_error": 0.3}, {"seed": 1, "test_error": 0.4}]
    b = [{"seed": 1, "test_error": 0.5}, {"seed": 0, "test_error": 0.2}]
    assert paired_differences(a, b) == pytest.approx([-0.1, 0.1])
    with pytest.raises(ValueError, match="share no seed"):
        paired_differences(a, [{"seed": 7, "test_error": 0.1}])


def test_proxy_plan_checks_its_schedule():
    with pytest.raises(ValueError, match="low_lr_epochs <= epochs"):
        ProxyPlan(epochs=2, low_lr_epochs=3)


def _tiny_split(n, seed):
    g = torch.Generator().manual_seed(seed)
    return CifarTensors(torch.randint(0, 256, (n, 3, 32, 32), generator=g,
                                      dtype=torch.uint8),
                        torch.randint(0, 10, (n,), generator=g),
                        [str(i) for i in range(10)])


def test_proxy_run_is_reproducible_and_reports_its_numbers():
    train, test = _tiny_split(64, 0), _tiny_split(32, 1)
    mean = train.images.float().mean(0)
    plan = ProxyPlan(epochs=2, low_lr_epochs=1, batch_size=32,
                     train_eval_images=48)
    runs = [proxy_run(lambda: create_model("alexnet_cifar"), train, test,
                      plan, seed=3, mean=mean, log=None) for _ in range(2)]
    a, b = runs
    assert [c["lr"] for c in a["curve"]] == pytest.approx([0.01, 0.001])
    assert [c["epoch"] for c in a["curve"]] == [1, 2]
    assert a["test_error"] == b["test_error"]
    assert a["train_error"] == b["train_error"]
    assert [c["running_error"] for c in a["curve"]] == \
        [c["running_error"] for c in b["curve"]]
    assert a["gap"] == pytest.approx(a["test_error"] - a["train_error"],
                                     abs=1e-4)
    assert a["parameters"] == 545_130
    # errors are fractions of 32 test / 48 training images
    assert round(a["test_error"] * 32, 3) % 1 == 0
    assert round(a["train_error"] * 48, 3) % 1 == 0


def test_train_eval_indices_cover_every_class_of_a_sorted_set():
    from alexnet_lib.experiments import train_eval_indices
    labels = torch.arange(10).repeat_interleave(5000)  # sorted, like CIFAR
    idx = train_eval_indices(len(labels), 10_000)
    assert len(idx) == 10_000 and len(set(idx.tolist())) == 10_000
    assert torch.bincount(labels[idx], minlength=10).tolist() == [1000] * 10
    assert train_eval_indices(48, 10_000).tolist() == list(range(48))
