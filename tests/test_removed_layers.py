"""§7's depth switch: AlexNet and the proxy without conv3 or conv4."""
import pytest
import torch

from alexnet_lib.models import AlexNet, alexnet_cifar, create_model


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def meta(**options):
    with torch.device("meta"):
        return AlexNet(**options)


def test_parameter_counts_without_middle_layers():
    full = 60_965_224
    # conv3 gone: conv4 reads pool2's 256 maps, 128 per group
    conv4_on_256 = 3 * 3 * 128 * 384 + 384
    assert n_params(meta(removed=("conv3",))) == (
        full - 885_120 - 663_936 + conv4_on_256) == 59_858_920
    # conv4 gone: conv5 reads conv3's 384 maps, as it read conv4's
    assert n_params(meta(removed=("conv4",))) == full - 663_936
    both = meta(removed=("conv4", "conv3"))
    assert both.removed == ("conv3", "conv4")
    assert both.conv5.in_channels == 256


def test_removed_layers_are_identities_and_shapes_hold():
    torch.manual_seed(0)
    net = alexnet_cifar(removed=("conv3",)).eval()
    assert isinstance(net.conv3, torch.nn.Identity)
    assert isinstance(net.relu3, torch.nn.Identity)
    assert net.conv4.in_channels == 64  # the proxy's conv2 width
    assert net(torch.randn(2, 3, 27, 27)).shape == (2, 10)
    assert net.options["removed"] == ("conv3",)
    # the full net keeps its options as before (two-tower conversion)
    assert "removed" not in AlexNet(num_classes=10).options


def test_removed_builds_through_the_registry_and_rejects_others():
    net = create_model("alexnet_cifar", removed=["conv4"])
    assert isinstance(net.conv4, torch.nn.Identity)
    assert "conv4" not in dict(net.named_parameters()).__str__()
    with pytest.raises(ValueError, match=r"removed=\['conv5'\] cannot be "
                                         r"removed: choose from conv3, "
                                         r"conv4"):
        AlexNet(removed=("conv5",))
