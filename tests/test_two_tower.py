"""§3.2's two-tower network computes exactly AlexNet(groups=2)."""
import pytest
import torch
import torch.nn.functional as F

from alexnet_lib.layers import LocalResponseNorm
from alexnet_lib.models import AlexNet, TwoTowerAlexNet
from alexnet_lib.models.two_tower import default_devices


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    grouped = AlexNet(num_classes=10).eval()
    return grouped, TwoTowerAlexNet.from_grouped(grouped).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.randn(2, 3, 224, 224)


def test_parameter_counts_equal():
    with torch.device("meta"):
        tt, grouped = TwoTowerAlexNet(), AlexNet()
    n_tt = sum(p.numel() for p in tt.parameters())
    assert n_tt == sum(p.numel() for p in grouped.parameters())
    assert n_tt == 60_965_224
    # each tower holds half of every conv layer and of fc6 and fc7
    tower = tt.towers[0]
    assert tower.conv1.out_channels == 48 and tower.conv3.in_channels == 256
    assert tower.conv4.in_channels == 192 and tower.fc6.out_features == 2048
    assert tower.fc7.in_features == 4096 and tt.fc8.in_features == 4096


def test_from_grouped_gives_the_same_outputs(pair, images):
    grouped, tt = pair
    with torch.no_grad():
        torch.testing.assert_close(tt(images), grouped(images))
        torch.testing.assert_close(tt.features(images),
                                   grouped.features(images))
        torch.testing.assert_close(tt.penultimate(images),
                                   grouped.penultimate(images))


def test_to_grouped_round_trip_is_exact(pair, images):
    grouped, tt = pair
    back = tt.to_grouped().eval()
    assert back.options == grouped.options
    for (name, a), b in zip(grouped.state_dict().items(),
                            back.state_dict().values()):
        assert torch.equal(a, b), name
    # and the other direction: a fresh two-tower net, converted
    torch.manual_seed(2)
    fresh = TwoTowerAlexNet(num_classes=10, dropout=0.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh.to_grouped()(images), fresh(images))


def test_gradients_equal(pair, images):
    grouped, tt = pair
    y = torch.tensor([3, 7])
    for model in (grouped, tt):
        model.zero_grad()
        F.cross_entropy(model(images), y).backward()
    tt_grads = tt.grouped_state_dict(grad=True)
    for name, p in grouped.named_parameters():
        torch.testing.assert_close(tt_grads[name], p.grad, msg=name)


def test_lrn_is_per_tower_in_both_models(pair):
    grouped, tt = pair
    assert grouped.lrn1.groups == 2 and tt.towers[0].lrn1.groups == 1
    assert tt.towers[1].lrn2.size == 5
    # Caffe-style LRN across all 96 maps has no two-tower equivalent
    caffe = AlexNet(num_classes=10, lrn_options={"groups": 1},
                    init="torch")
    with pytest.raises(ValueError, match="normalises across both halves"):
        TwoTowerAlexNet.from_grouped(caffe)
    with pytest.raises(ValueError, match="groups=2"):
        TwoTowerAlexNet.from_grouped(AlexNet(groups=1, init="torch"))
    assert isinstance(caffe.lrn1, LocalResponseNorm)


def test_cross_tower_bytes():
    with torch.device("meta"):
        tt = TwoTowerAlexNet()
    b = tt.cross_tower_bytes()
    assert b == {"conv3": 2 * 128 * 13 * 13 * 4,   # pool2 maps, each way
                 "fc6": 2 * 128 * 6 * 6 * 4,       # pool5 maps, each way
                 "fc7": 2 * 2048 * 4,              # fc6 halves, each way
                 "fc8": 2048 * 4,                  # tower 1's fc7 half
                 "total": 234_496}
    assert tt.cross_tower_bytes(227) == b


def test_devices_and_options():
    cpu = torch.device("cpu")
    if torch.cuda.device_count() < 2:
        assert default_devices() == (cpu, cpu)
    with pytest.raises(ValueError, match="always has groups=2"):
        TwoTowerAlexNet(groups=1)
    with pytest.raises(TypeError, match="TwoTowerAlexNet got unknown"):
        TwoTowerAlexNet(tower=3)
    with pytest.raises(ValueError, match="two devices"):
        TwoTowerAlexNet(devices=("cpu",), init="torch")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs CUDA")
def test_towers_on_gpus_match_the_cpu_model(pair, images):
    grouped, _ = pair
    n = torch.cuda.device_count()
    devices = ("cuda:0", "cuda:1") if n >= 2 else ("cuda:0", "cuda:0")
    tt = TwoTowerAlexNet.from_grouped(grouped, devices=devices).eval()
    assert tt.towers[1].conv1.weight.device == torch.device(devices[1])
    with torch.no_grad():
        out = tt(images.to(devices[0]))
        torch.testing.assert_close(out.cpu(), grouped(images),
                                   rtol=1e-3, atol=1e-3)
