"""Model facts: parameter counts, shapes, init, switches, registry."""
import inspect
import math
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_lib.layers import LocallyConnected2d, LocalResponseNorm
from alexnet_lib.models import (AlexNet, CifarNet4Layer,
                                PretrainedWeightsError, alexnet_owt,
                                cifar_11pct, cifar_13pct, create_model,
                                feature_map_shapes, list_models,
                                register_model)
from alexnet_lib.models import owt as owt_module
from alexnet_lib.models import alexnet as alexnet_module
from alexnet_lib.models.alexnet import conv1_padding

PAPER_LAYER_PARAMS = {  # §3.5 and Fig. 2, counted by hand
    "conv1": 34_944, "conv2": 307_456, "conv3": 885_120,
    "conv4": 663_936, "conv5": 442_624, "fc6": 37_752_832,
    "fc7": 16_781_312, "fc8": 4_097_000}

PAPER_SHAPES = {  # per image: Fig. 2 (conv outputs) and the pools
    "conv1": (96, 55, 55), "lrn1": (96, 55, 55), "pool1": (96, 27, 27),
    "conv2": (256, 27, 27), "lrn2": (256, 27, 27), "pool2": (256, 13, 13),
    "conv3": (384, 13, 13), "conv4": (384, 13, 13),
    "conv5": (256, 13, 13), "pool5": (256, 6, 6),
    "fc6": (4096,), "fc7": (4096,), "fc8": (1000,)}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def meta(fn, **options):  # shapes and counts without allocating weights
    with torch.device("meta"):
        return fn(**options)


@pytest.fixture(scope="module")
def paper_net():
    torch.manual_seed(0)
    return AlexNet().eval()


# ------------------------------------------------------------- AlexNet

def test_paper_parameter_counts():
    net = meta(AlexNet)
    assert n_params(net) == 60_965_224
    for name, count in PAPER_LAYER_PARAMS.items():
        assert n_params(getattr(net, name)) == count, name
    assert n_params(meta(AlexNet, groups=1)) == 62_378_344
    # §3.2's one-GPU net: half the kernels except conv5, FC not halved
    half = meta(AlexNet, groups=1, widths=(48, 128, 192, 192, 256))
    assert n_params(half) == 59_798_312


@pytest.mark.parametrize("input_size", [224, 227])
def test_layer_shapes_for_224_and_227(paper_net, input_size):
    net = paper_net if input_size == 224 else AlexNet(input_size=227)
    shapes = feature_map_shapes(net)
    for name, shape in PAPER_SHAPES.items():
        assert shapes[name] == shape, name
    assert net.fc6.in_features == 9216
    # Fig. 2's neuron counts (conv1's printed 253,440 is a slip)
    assert [math.prod(shapes[f"conv{i}"]) for i in range(1, 6)] == [
        290_400, 186_624, 64_896, 64_896, 43_264]


def test_224_reproduces_cuda_convnet_arithmetic(paper_net):
    # cuda-convnet: 1 + ceil((S - 11) / 4) = 55 for both sizes
    assert 1 + math.ceil((224 - 11) / 4) == 55 == 1 + (227 - 11) // 4
    assert conv1_padding(224) == 3 and conv1_padding(227) == 0
    assert paper_net.pad1.padding == (0, 3, 0, 3)  # right, bottom only
    assert isinstance(AlexNet(input_size=227, init="torch").pad1,
                      nn.Identity)
    x = torch.randn(1, 3, 224, 224)
    out = paper_net.conv1(paper_net.pad1(x))
    padded = torch.zeros(1, 3, 227, 227)
    padded[..., :224, :224] = x
    torch.testing.assert_close(out, paper_net.conv1(padded))
    # the top-left windows never see the padding
    w, b = paper_net.conv1.weight, paper_net.conv1.bias
    torch.testing.assert_close(out[..., :54, :54],
                               F.conv2d(x, w, b, stride=4))


def test_features_and_penultimate(paper_net):
    x = torch.randn(2, 3, 224, 224)
    seen = {}
    hook = paper_net.relu7.register_forward_hook(
        lambda m, i, o: seen.setdefault("relu7", o))
    with torch.no_grad():
        logits = paper_net(x)
        feats, pen = paper_net.features(x), paper_net.penultimate(x)
    hook.remove()
    assert feats.shape == (2, 256, 6, 6) and pen.shape == (2, 4096)
    assert logits.shape == (2, 1000) and paper_net.input_size == 224
    torch.testing.assert_close(pen, seen["relu7"])
    assert (pen >= 0).all()
    torch.testing.assert_close(paper_net.fc8(pen), logits)


def test_paper_init(paper_net):
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}  # §5
    for name in PAPER_LAYER_PARAMS:
        layer = getattr(paper_net, name)
        want = 1.0 if name in ones else 0.0
        assert torch.all(layer.bias == want), name
        w = layer.weight
        tol = 5 / math.sqrt(w.numel()) * 0.01  # ~5 standard errors
        assert abs(w.std().item() - 0.01) < tol + 1e-5, name
        assert abs(w.mean().item()) < tol + 1e-5, name
    torch_init = AlexNet(init="torch")
    assert torch_init.conv2.bias.std() > 0  # PyTorch's uniform init


def test_ablation_switches():
    tanh = meta(AlexNet, activation="tanh")
    assert all(isinstance(getattr(tanh, f"relu{i}"), nn.Tanh)
               for i in range(1, 8))
    no_lrn = meta(AlexNet, lrn=False)
    assert isinstance(no_lrn.lrn1, nn.Identity)
    assert n_params(no_lrn) == 60_965_224
    net = AlexNet(pooling="non_overlapping", num_classes=10, init="torch")
    assert (net.pool1.kernel_size, net.pool1.stride) == (2, 2)
    shapes = feature_map_shapes(net)
    assert [shapes[p][1] for p in ("conv1", "pool1", "pool2", "pool5")] \
        == [55, 27, 13, 6]   # "output of equivalent dimensions", §3.4
    assert net.fc6.in_features == 9216 and shapes["fc8"] == (10,)
    assert meta(AlexNet).conv2.groups == 2
    assert meta(AlexNet, groups=1).conv4.groups == 1
    no_drop = meta(AlexNet, dropout=0)
    assert isinstance(no_drop.drop6, nn.Identity)
    assert meta(AlexNet).drop7.p == 0.5


def test_each_paper_idea_has_one_builder():
    """The builders AlexNet.__init__ is made of, one per idea."""
    m = alexnet_module
    assert isinstance(m.conv1_pad(0), nn.Identity)
    assert m.conv1_pad(3).padding == (0, 3, 0, 3)
    lrn = m.response_norm(True, {**m.PAPER_LRN, "groups": 2})
    assert isinstance(lrn, LocalResponseNorm) and lrn.groups == 2
    assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)
    assert isinstance(m.response_norm(False, {}), nn.Identity)
    assert (m.max_pool("overlapping").kernel_size,
            m.max_pool("overlapping").stride) == (3, 2)
    assert (m.max_pool("non_overlapping").kernel_size,
            m.max_pool("non_overlapping").stride) == (2, 2)
    assert m.dropout_layer(0.5).p == 0.5
    assert isinstance(m.dropout_layer(0.0), nn.Identity)
    conv = m.two_gpu_conv(96, 256, 5, 2)
    assert (conv.groups, conv.padding, conv.weight.shape) == (
        2, (2, 2), (256, 48, 5, 5))
    widths = (96, 256, 384, 384, 256)
    assert m.middle_inputs(widths, ()) == (256, 384, 384)
    assert m.middle_inputs(widths, ("conv3",)) == (256, 256, 384)
    assert m.middle_inputs(widths, ("conv4",)) == (256, 384, 384)
    assert m.middle_inputs(widths, ("conv3", "conv4")) == (256, 256, 256)
    net = AlexNet(removed=("conv4",), num_classes=10)
    assert isinstance(net.conv4, nn.Identity)
    assert isinstance(net.relu4, nn.Identity)
    assert net.conv5.in_channels == 384
    # the layer order (and so the seeded weights) is the paper's order
    assert [n for n, _ in AlexNet().named_children()] == [
        "pad1", "conv1", "relu1", "lrn1", "pool1", "conv2", "relu2",
        "lrn2", "pool2", "conv3", "relu3", "conv4", "relu4", "conv5",
        "relu5", "pool5", "fc6", "relu6", "drop6", "fc7", "relu7",
        "drop7", "fc8"]


def test_lrn_options_and_per_group_lrn():
    net = meta(AlexNet)
    assert isinstance(net.lrn1, LocalResponseNorm)
    assert (net.lrn1.size, net.lrn1.alpha, net.lrn1.k) == (5, 1e-4, 2.0)
    assert net.lrn1.groups == 2 and meta(AlexNet, groups=1).lrn2.groups == 1
    caffe = meta(AlexNet, lrn_options={"groups": 1, "k": 1.0,
                                       "scale_by_size": True})
    assert caffe.lrn2.groups == 1 and caffe.lrn2.k == 1.0


def test_dropout_active_only_in_training():
    net = AlexNet(num_classes=10, input_size=67, conv1_stride=2,
                  init="torch")  # a small input keeps this test fast
    x = torch.randn(2, 3, 67, 67)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    assert not torch.equal(net.penultimate(x), net.penultimate(x))


def test_alexnet_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="activation='sigmoid'.*'relu'"):
        AlexNet(activation="sigmoid")
    with pytest.raises(ValueError, match="pooling='max'.*'overlapping'"):
        AlexNet(pooling="max")
    with pytest.raises(ValueError, match="groups=3"):
        AlexNet(groups=3)
    with pytest.raises(ValueError, match=r"dropout=1.0 must be in \[0, 1\)"):
        AlexNet(dropout=1.0)
    with pytest.raises(ValueError, match="must all be even"):
        AlexNet(widths=(95, 256, 384, 384, 256))
    with pytest.raises(TypeError, match="lrn_options: unknown key"):
        AlexNet(lrn_options={"n": 5})
    with pytest.raises(ValueError, match="too small"):
        AlexNet(input_size=40)
    net = meta(AlexNet)
    with pytest.raises(ValueError, match=r"input_size=224.*input_size=227"):
        net(torch.zeros(1, 3, 227, 227, device="meta"))


# ------------------------------------------------------------- registry

def test_registry_lists_the_contract_names():
    assert {"alexnet", "alexnet_two_tower", "alexnet_owt", "cifar_4layer",
            "cifar_11pct", "cifar_13pct"} <= set(list_models())
    assert list_models() == sorted(list_models())


def test_create_model_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown model 'alexnet2'.*"
                       "known models: alexnet, alexnet_cifar, alexnet_owt"):
        create_model("alexnet2")
    with pytest.raises(TypeError, match="model 'alexnet' got unknown "
                       r"option\(s\) \['lnr'\].*lrn"):
        create_model("alexnet", lnr=False)
    with pytest.raises(TypeError, match="TwoTowerAlexNet got unknown"):
        create_model("alexnet_two_tower", widht=3)
    with pytest.raises(TypeError, match="'cifar_13pct' got unknown"):
        create_model("cifar_13pct", lrn=True)
    with pytest.raises(TypeError, match="model 'alexnet_cifar': option "
                       "dropout takes a number, got 'half'"):
        create_model("alexnet_cifar", dropout="half")
    with pytest.raises(TypeError, match="option lrn takes true or false, "
                       "got 1"):
        create_model("alexnet", lrn=1)


def test_model_options_are_the_typed_constructor_options():
    from alexnet_lib.models import model_options
    typed = model_options("alexnet")
    assert typed["dropout"] == ("float", 0.5)
    assert typed["lrn"] == ("bool", True)
    assert typed["bias"] == ("float|None", None)
    assert typed["widths"] == ("tuple", (96, 256, 384, 384, 256))
    assert list(typed) == list(inspect.signature(AlexNet).parameters)
    net = create_model("alexnet_cifar", removed=["conv3"])  # JSON list
    assert net.removed == ("conv3",) and net.options["removed"] == (
        "conv3",)


def test_register_model():
    from alexnet_lib import models

    @register_model("tiny_test_net")
    def tiny(num_classes=10):
        return nn.Linear(4, num_classes)
    try:
        assert "tiny_test_net" in list_models()
        assert create_model("tiny_test_net", num_classes=3).out_features == 3
        with pytest.raises(ValueError, match="already registered"):
            register_model("tiny_test_net")(lambda: None)
    finally:
        models._MODELS.pop("tiny_test_net")


SMALL_INPUTS = {"alexnet": 224, "alexnet_two_tower": 224,
                "alexnet_owt": 224, "cifar_4layer": 32, "cifar_11pct": 24,
                "cifar_13pct": 24}


@pytest.mark.parametrize("name", sorted(SMALL_INPUTS))
def test_every_registered_model_runs_forward_and_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10)
    size = SMALL_INPUTS[name]
    assert getattr(model, "input_size", size) == size
    x = torch.randn(2, 3, size, size)
    loss = F.cross_entropy(model(x), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


# ------------------------------------------------------------------ OWT

@pytest.fixture(scope="module")
def torchvision_alexnet():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).eval()


def test_owt_matches_torchvision(torchvision_alexnet):
    ref = torchvision_alexnet
    ours = alexnet_owt().eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert n_params(ours) == 61_100_840
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
        assert ours.features(x).shape == (2, 256, 6, 6)
        assert ours.penultimate(x).shape == (2, 4096)


def test_owt_pretrained_offline_error(monkeypatch):
    def offline():
        raise urllib.error.URLError("[Errno -3] name resolution failed")
    monkeypatch.setattr(owt_module, "_download_state_dict", offline)
    with pytest.raises(PretrainedWeightsError,
                       match="(?s)could not download.*URLError.*Connect.*"
                       "weights_path="):
        alexnet_owt(pretrained=True)


def test_owt_weights_path(tmp_path, torchvision_alexnet):
    ref = torchvision_alexnet
    path = tmp_path / "alexnet-owt.pth"
    torch.save(ref.state_dict(), path)
    model = alexnet_owt(weights_path=path)
    assert torch.equal(model.features[0].weight, ref.features[0].weight)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        alexnet_owt(weights_path=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="1000 classes"):
        alexnet_owt(num_classes=10, pretrained=True)


# ---------------------------------------------------------------- CIFAR

def test_cifar_parameter_counts_from_the_configs():
    assert n_params(CifarNet4Layer()) == 89_578          # layers-18pct
    assert n_params(CifarNet4Layer(variant="80sec")) == 145_578
    assert n_params(cifar_11pct()) == 2_112_970
    assert n_params(cifar_13pct()) == 1_116_490
    net = cifar_11pct()
    assert isinstance(net.local3, LocallyConnected2d)
    assert net.local3.out_channels == 64
    assert cifar_13pct().local3.out_channels == 32


def test_cifar_shapes_use_cuda_convnet_ceil_pooling():
    def shapes(model):
        return feature_map_shapes(model)
    s = shapes(cifar_11pct())
    assert s["pool1"] == (64, 12, 12) and s["pool2"] == (64, 6, 6)
    assert s["local3"] == (64, 6, 6) and s["local4"] == (32, 6, 6)
    assert s["fc10"] == (10,)
    s = shapes(CifarNet4Layer())
    assert [s[p][1] for p in ("pool1", "pool2", "pool3")] == [16, 8, 4]


def test_cifar_average_pool_divides_by_the_full_window():
    pool = CifarNet4Layer().pool2  # cuda-convnet: sum / 9 at the edges
    out = pool(torch.ones(1, 1, 16, 16))
    assert out.shape == (1, 1, 8, 8)
    assert out[0, 0, 0, 0] == 1 and out[0, 0, 7, 0] == pytest.approx(6 / 9)
    assert out[0, 0, 7, 7] == pytest.approx(4 / 9)


def test_cifar_lrn_is_cuda_convnet_cmrnorm():
    lrn = cifar_11pct().lrn1
    x = torch.relu(torch.randn(2, 64, 12, 12)) * 10
    torch.testing.assert_close(
        lrn(x), torch.nn.LocalResponseNorm(9, 1e-3, 0.75, 1.0)(x))
    assert isinstance(cifar_13pct().lrn1, nn.Identity)


def test_cifar_init_from_the_configs():
    torch.manual_seed(0)
    net = cifar_11pct()
    for layer, std in (("conv1", 1e-4), ("conv2", 0.01), ("local3", 0.04),
                       ("local4", 0.04), ("fc10", 0.01)):
        w = getattr(net, layer).weight
        assert w.std().item() == pytest.approx(std, rel=0.05), layer
        assert torch.all(getattr(net, layer).bias == 0), layer
    assert isinstance(CifarNet4Layer("tanh").relu1, nn.Tanh)


def test_cifar_bad_options():
    with pytest.raises(ValueError, match="variant='19pct'"):
        CifarNet4Layer(variant="19pct")
    with pytest.raises(ValueError, match="activation='elu'"):
        cifar_11pct(activation="elu")
    with pytest.raises(ValueError, match=r"expects \(B, 3, 24, 24\)"):
        cifar_13pct()(torch.zeros(1, 3, 32, 32))


def test_zfnet_has_the_papers_sizes_and_parameter_count():
    # ZFNet Fig. 3 with the layer table of its overview: 62,357,608
    from alexnet_lib.models import ZFNet, create_model
    net = create_model("zfnet").eval()
    assert sum(p.numel() for p in net.parameters()) == 62_357_608
    assert net.conv1.kernel_size == (7, 7) and net.conv1.stride == (2, 2)
    assert net.conv2.stride == (2, 2) and net.conv2.groups == 1
    x = torch.zeros(1, 3, 224, 224)
    h = net.conv1(net.pad1(x))
    assert h.shape[-1] == 110
    h = net.lrn1(net.pool1(net.relu1(h)))
    assert h.shape[-1] == 55
    h = net.pool2(net.relu2(net.conv2(h)))
    assert h.shape[-1] == 13
    assert net.features(x).shape == (1, 256, 6, 6)
    assert net(x).shape == (1, 1000)
    with pytest.raises(ValueError, match="224x224"):
        ZFNet(input_size=227)


def test_zfnet_renormalises_filters_above_rms_0_1():
    from alexnet_lib.models import ZFNet
    net = ZFNet(num_classes=10)
    with torch.no_grad():
        net.conv1.weight[3] *= 100  # RMS 1.0, far above 0.1
    assert net.renormalise_() == 1
    rms = net.conv1.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert rms[3].item() == pytest.approx(0.1)
    assert (rms <= 0.1 + 1e-6).all()
    assert net.renormalise_() == 0  # nothing left to scale
