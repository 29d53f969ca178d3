"""The lineage models: LeNet-5, NiN, VGG, GoogLeNet. Facts only:
parameter counts, tables, shapes, equalities and error messages."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_lib.layers import PAPER_LRN, LocalResponseNorm
from alexnet_lib.models import (GoogLeNet, Inception, LeNet5, NiN, VGG,
                                create_model, feature_map_shapes,
                                model_options)
from alexnet_lib.models.googlenet import (AUX_LOSS_WEIGHT, INCEPTION_TABLE,
                                          TABLE_DEPTH, TABLE_PARAMS_K,
                                          inception_madds,
                                          reduction_saving, stage_sides)
from alexnet_lib.models.lenet import (C3_TABLE, ScaledTanh, SparseConv2d,
                                      Subsampling, rbf_prototypes)
from alexnet_lib.models.vgg import CONFIGS, WEIGHT_LAYERS


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def meta(cls, **options):  # counts and shapes without allocating weights
    with torch.device("meta"):
        return cls(**options)


# --------------------------------------------------------------- LeNet-5

# Trainable parameters per layer, with an 84 -> 10 fc output layer.
LENET_LAYER_PARAMS = {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32,
                      "c5": 48_120, "f6": 10_164, "output": 850}

# Table I of the 1998 paper (rows: S2 maps, columns: C3 maps 0..15).
LENET_TABLE_I = ("X   XXX  XXXX XX",
                 "XX   XXX  XXXX X",
                 "XXX   XXX  X XXX",
                 " XXX  XXXX  X XX",
                 "  XXX  XXXX XX X",
                 "   XXX  XXXX XXX")


def test_lenet5_has_60850_trainable_parameters():
    net = LeNet5()
    assert n_params(net) == 60_850 == sum(LENET_LAYER_PARAMS.values())
    for name, count in LENET_LAYER_PARAMS.items():
        assert n_params(getattr(net, name)) == count, name
    # colour input: C1 has (5*5*3 + 1) * 6 = 456 parameters
    assert n_params(LeNet5(in_channels=3)) == 60_850 - 156 + 456


def test_c3_connection_table_is_table_i():
    mask = SparseConv2d(6, C3_TABLE, 5).mask()          # (16 C3, 6 S2)
    table_i = torch.tensor([[c == "X" for c in row]
                            for row in LENET_TABLE_I])  # (6 S2, 16 C3)
    assert torch.equal(mask, table_i.T)
    sizes = [len(row) for row in C3_TABLE]
    assert sizes == [3] * 6 + [4] * 9 + [6]

    def contiguous(row):  # neighbours on the ring of six maps
        return any(set(row) == {(s + i) % 6 for i in range(len(row))}
                   for s in range(6))
    assert all(contiguous(row) for row in C3_TABLE[:12])
    assert not any(contiguous(row) for row in C3_TABLE[12:15])
    assert C3_TABLE[15] == tuple(range(6))
    assert 6 * (25 * 3 + 1) + 6 * (25 * 4 + 1) + 3 * (25 * 4 + 1) + (
        25 * 6 + 1) == 1_516 == n_params(LeNet5().c3)


def test_c3_maps_read_only_their_inputs():
    torch.manual_seed(0)
    c3 = SparseConv2d(6, C3_TABLE, 5)
    x = torch.randn(1, 6, 14, 14)
    dense = c3.dense_weight()
    assert torch.equal(dense.abs().sum((2, 3)) > 0, c3.mask())
    with torch.no_grad():
        base = c3(x)
        torch.testing.assert_close(base, F.conv2d(x, dense, c3.bias))
        for i in range(6):
            bumped = x.clone()
            bumped[:, i] += 1.0
            changed = (c3(bumped) - base).abs().amax((0, 2, 3)) > 0
            assert torch.equal(changed, c3.mask()[:, i]), i


def test_subsampling_and_squashing():
    s2 = Subsampling(6)
    assert n_params(s2) == 12
    x = torch.randn(2, 6, 4, 4)
    window_sums = x.view(2, 6, 2, 2, 2, 2).sum((3, 5))  # adds the four
    want = (window_sums * s2.weight[:, None, None]
            + s2.bias[:, None, None])
    torch.testing.assert_close(s2(x), want)
    f = ScaledTanh()
    torch.testing.assert_close(f(torch.tensor([1.0, -1.0])),
                               torch.tensor([1.0, -1.0]), atol=2e-4, rtol=0)
    assert isinstance(LeNet5(activation="tanh").act_c3, nn.Tanh)
    assert isinstance(LeNet5().act_c3, ScaledTanh)


def test_lenet5_rbf_output_has_fixed_prototypes():
    net = LeNet5(output="rbf")
    assert n_params(net) == 60_000  # 60,850 minus the 850 of the fc layer
    protos = net.output.prototypes
    assert protos.shape == (10, 84) and not protos.requires_grad
    assert set(protos.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(r) for r in rbf_prototypes(127).tolist()}) == 127
    feats = protos[3:4] + 0.0                       # F6 output = code 3
    logits = net.output(feats)
    assert logits[0, 3] == 0 and logits.argmax() == 3
    torch.testing.assert_close(
        logits, -((feats[:, None] - protos[None]) ** 2).sum(-1))


def test_lenet5_errors_say_what_to_do():
    with pytest.raises(ValueError, match="activation='relu' is not one "
                       "of 'scaled_tanh', 'tanh'"):
        LeNet5(activation="relu")
    with pytest.raises(ValueError, match="input_size=28 leaves C5 no "
                       "output.*pad 28x28 MNIST"):
        LeNet5(input_size=28)
    with pytest.raises(ValueError, match="at most 127 classes"):
        LeNet5(output="rbf", num_classes=200)
    with pytest.raises(ValueError, match=r"expects \(B, 1, 32, 32\)"):
        LeNet5()(torch.zeros(1, 3, 32, 32))


# ------------------------------------------------------------------ NiN

# cuda-convnet NIN/cifar-10_def: (layer, kernel, in, out)
NIN_LAYERS = (("conv1", 5, 3, 192), ("cccp1", 1, 192, 160),
              ("cccp2", 1, 160, 96), ("conv2", 5, 96, 192),
              ("cccp3", 1, 192, 192), ("cccp4", 1, 192, 192),
              ("conv3", 3, 192, 192), ("cccp5", 1, 192, 192),
              ("cccp6", 1, 192, 10))


def test_nin_follows_the_authors_cifar10_definition():
    net = meta(NiN)
    for name, k, c_in, c_out in NIN_LAYERS:
        conv = getattr(net, name)
        assert (conv.kernel_size, conv.in_channels, conv.out_channels,
                conv.padding) == ((k, k), c_in, c_out, (k // 2, k // 2))
    expected = sum((k * k * c_in + 1) * c_out
                   for _, k, c_in, c_out in NIN_LAYERS)
    assert n_params(net) == expected == 966_986
    assert not any(isinstance(m, nn.Linear) for m in net.modules())
    fc = meta(NiN, classifier="fc")
    assert fc.fc.in_features == 10 * 8 * 8
    assert n_params(fc) == 966_986 + 640 * 10 + 10


def test_nin_scores_are_the_means_of_the_class_maps():
    torch.manual_seed(0)
    net = NiN(width=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = net.class_maps(x)
        assert maps.shape == (2, 10, 8, 8) and (maps >= 0).all()
        torch.testing.assert_close(net(x), maps.mean((2, 3)))
    assert net.conv1.out_channels == 48 and net.cccp6.out_channels == 10


def test_nin_errors_say_what_to_do():
    with pytest.raises(ValueError, match="classifier='avg' is not one of "
                       "'gap', 'fc'"):
        NiN(classifier="avg")
    with pytest.raises(ValueError, match="width=0 must be > 0"):
        NiN(width=0)


# ------------------------------------------------------------------ VGG

# Exact counts at 1000 classes and 224 px (Table 2 rounds to millions)
VGG_PARAMS = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848,
              "C": 133_638_952, "D": 138_357_544, "E": 143_667_240}


@pytest.mark.parametrize("config", sorted(VGG_PARAMS))
def test_vgg_parameter_and_layer_counts(config):
    net = meta(VGG, config=config)
    assert n_params(net) == VGG_PARAMS[config]
    weight_layers = [m for m in net.modules()
                     if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weight_layers) == WEIGHT_LAYERS[config]
    assert [n_params(net.fc6), n_params(net.fc7)] == [
        7 * 7 * 512 * 4096 + 4096, 4096 * 4096 + 4096]
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5
    # Table 2's rounded millions
    table2 = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138,
              "E": 144}
    assert round(VGG_PARAMS[config] / 1e6) == table2[config]


def test_vgg_table_1_details():
    assert WEIGHT_LAYERS == {"A": 11, "A-LRN": 11, "B": 13, "C": 16,
                             "D": 16, "E": 19}
    c = meta(VGG, config="C")
    one_by_one = [n for n, m in c.named_modules()
                  if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert one_by_one == ["conv3_3", "conv4_3", "conv5_3"]  # last of block
    for name in one_by_one:
        block = name[4]
        assert not hasattr(c, f"conv{block}_4")
    lrn = meta(VGG, config="A-LRN")
    assert isinstance(lrn.lrn1, LocalResponseNorm)
    assert (lrn.lrn1.size, lrn.lrn1.alpha, lrn.lrn1.beta, lrn.lrn1.k) == (
        PAPER_LRN["size"], PAPER_LRN["alpha"], PAPER_LRN["beta"],
        PAPER_LRN["k"])
    order = lrn.feature_layers
    assert order[:4] == ("conv1_1", "relu1_1", "lrn1", "pool1")
    assert not any(isinstance(m, LocalResponseNorm)
                   for m in meta(VGG, config="A").modules())
    assert all(len(CONFIGS[k]) == 5 for k in CONFIGS)


def test_vgg_reduced_size_and_paper_init():
    torch.manual_seed(0)
    net = VGG(config="D", width=0.25, input_size=32, fc_width=512,
              num_classes=10)
    assert net.fc6.in_features == 512 // 4 == 128  # 32 px -> 1x1 pool5
    assert net.conv1_1.out_channels == 16 and net.conv5_3.out_channels == 128
    assert n_params(net) == 1_254_618
    w = net.conv4_1.weight
    assert abs(w.std().item() - 0.01) < 5e-4 and abs(w.mean().item()) < 5e-4
    assert all(m.bias.abs().sum() == 0 for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert meta(VGG).fc6.in_features == 25_088      # 7 * 7 * 512 at 224
    assert meta(VGG, input_size=256).fc6.in_features == 8 * 8 * 512


def test_vgg_errors_say_what_to_do():
    with pytest.raises(ValueError, match="config='F' is not one of 'A', "
                       "'A-LRN', 'B', 'C', 'D', 'E'"):
        VGG(config="F")
    with pytest.raises(ValueError, match="init='xavier' is not one of "
                       "'paper', 'glorot', 'torch'"):
        VGG(init="xavier")
    with pytest.raises(ValueError, match="input_size=16 is too small"):
        VGG(input_size=16)


# ------------------------------------------------------------ GoogLeNet

# Inception output depths, Table 1's "output size" column
TABLE_DEPTHS = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512,
                "4d": 528, "4e": 832, "5a": 832, "5b": 1024}
# Exact weights (no biases) of Table 1's layers, counted from its
# filter columns; Table 1's params column printed vs these / 1024:
# within 1 K for conv2, 3a, 3b, 4b, fc; not for the others.
GOOGLENET_WEIGHTS = {"conv1": 9_408, "conv2": 114_688,
                     "inception3a": 163_328, "inception3b": 388_096,
                     "inception4a": 375_552, "inception4b": 448_512,
                     "inception4c": 509_440, "inception4d": 604_672,
                     "inception4e": 867_328, "inception5a": 1_042_432,
                     "inception5b": 1_442_816, "fc": 1_024_000}
TABLE_DISAGREES = {"conv1", "inception4a", "inception4c", "inception4d",
                   "inception4e", "inception5a", "inception5b"}


def _weights(module):
    return sum(p.numel() for n, p in module.named_parameters()
               if n.endswith("weight"))


def test_googlenet_parameters_against_table_1():
    net = meta(GoogLeNet)
    layers = {"conv1": [net.conv1], "conv2": [net.conv2_reduce, net.conv2],
              "fc": [net.fc]}
    layers.update({f"inception{k}": [getattr(net, f"inception{k}")]
                   for k in INCEPTION_TABLE})
    weights = {k: sum(_weights(m) for m in ms) for k, ms in layers.items()}
    assert weights == GOOGLENET_WEIGHTS
    off = {k for k, w in weights.items()
           if abs(w / 1024 - TABLE_PARAMS_K[k]) > 1}
    assert off == TABLE_DISAGREES
    assert weights["conv2"] / 1024 == 112 and weights["fc"] / 1024 == 1000
    assert math.isclose(sum(TABLE_PARAMS_K.values()), 6_797.7)  # ~6.8 M
    assert sum(weights.values()) == 6_990_272
    assert n_params(net) == 6_998_552                # biases included
    assert sum(TABLE_DEPTH.values()) == 22           # "22 layers deep"
    for key, depth in TABLE_DEPTHS.items():
        assert getattr(net, f"inception{key}").out_channels == depth


def test_googlenet_aux_classifiers_are_off_and_outside_the_count():
    main = meta(GoogLeNet)
    assert not hasattr(main, "aux1")
    full = meta(GoogLeNet, aux_classifiers=True)
    aux = n_params(full.aux1) + n_params(full.aux2)
    # §5: 1x1 conv 128, fc 1024 on 4x4x128, linear 1000; on 4a and 4d
    per_head = 128 + 1024 * (4 * 4 * 128 + 1) + (1024 + 1) * 1000
    assert aux == per_head * 2 + 128 * (512 + 528)
    assert n_params(full) - aux == n_params(main) == 6_998_552
    assert AUX_LOSS_WEIGHT == 0.3
    with pytest.raises(ValueError, match="no auxiliary classifiers: build "
                       "it with aux_classifiers=True"):
        main.forward_with_aux(torch.zeros(1, 3, 224, 224))


def test_googlenet_stage_sizes():
    assert stage_sides(224) == {"conv1": 112, "pool1": 56, "pool2": 28,
                                "pool3": 14, "pool4": 7}
    torch.manual_seed(0)
    net = GoogLeNet(width=0.125, num_classes=10)
    shapes = feature_map_shapes(net)
    assert [shapes[n][1:] for n in ("conv1", "pool1", "pool2", "pool3",
                                    "pool4")] == [(112, 112), (56, 56),
                                                  (28, 28), (14, 14),
                                                  (7, 7)]
    assert shapes["avgpool"] == (128, 1, 1) and shapes["fc"] == (10,)
    assert stage_sides(32) == {"conv1": 16, "pool1": 8, "pool2": 4,
                               "pool3": 2, "pool4": 1}


def test_inception_module_concatenates_four_branches():
    torch.manual_seed(0)
    block = Inception(192, *INCEPTION_TABLE["3a"])
    x = torch.randn(1, 192, 28, 28)
    with torch.no_grad():
        y = block(x)
        assert y.shape == (1, 256, 28, 28) and (y >= 0).all()
        first = block.relu_conv1x1(block.conv1x1(x))
        last = block.relu_pool_proj(block.pool_proj(block.pool(x)))
        torch.testing.assert_close(y[:, :64], first)
        torch.testing.assert_close(y[:, -32:], last)


def test_1x1_reductions_save_multiply_adds():
    spec = INCEPTION_TABLE["3a"]
    saving = reduction_saving(192, spec, 28)
    assert saving["reduced"] == 28 * 28 * 163_328 == 128_049_152  # "128M"
    assert saving["naive"] == 28 * 28 * (192 * 64 + 9 * 192 * 128
                                         + 25 * 192 * 32) == 303_464_448
    assert round(saving["ratio"], 2) == 2.37
    # Table 1's ops column is weights x output pixels: conv2 "360M"
    assert round(56 * 56 * GOOGLENET_WEIGHTS["conv2"] / 1e6) == 360
    assert inception_madds(192, spec, 28) == saving["reduced"]


def test_googlenet_errors_say_what_to_do():
    with pytest.raises(ValueError, match="input_size=16 is too small"):
        GoogLeNet(input_size=16)
    with pytest.raises(ValueError, match="auxiliary classifiers pool 5x5 "
                       "windows but the map is 2x2"):
        GoogLeNet(input_size=32, aux_classifiers=True)
    with pytest.raises(ValueError, match="width=0 and num_classes=1000 "
                       "must be positive"):
        GoogLeNet(width=0)


# ------------------------------------------------ every model, registry

SMALL = {  # registry name, options, input shape
    "lenet5": ({}, (1, 32, 32)),
    "lenet5_rbf": ({"output": "rbf", "activation": "tanh"}, (1, 32, 32)),
    "nin": ({"width": 0.125}, (3, 32, 32)),
    "nin_fc": ({"width": 0.125, "classifier": "fc"}, (3, 32, 32)),
    "vgg": ({"config": "D", "width": 0.125, "input_size": 32,
             "fc_width": 64}, (3, 32, 32)),
    "vgg_lrn": ({"config": "A-LRN", "width": 0.125, "input_size": 32,
                 "fc_width": 64}, (3, 32, 32)),
    "googlenet": ({"width": 0.125, "input_size": 32}, (3, 32, 32)),
}


@pytest.mark.parametrize("case", sorted(SMALL))
def test_forward_and_backward_by_registry_name(case):
    torch.manual_seed(0)
    options, shape = SMALL[case]
    model = create_model(case.split("_")[0], num_classes=10, **options)
    assert model.input_size == shape[-1]
    x = torch.randn(2, *shape)
    logits = model(x)
    assert logits.shape == (2, 10)
    loss = F.cross_entropy(logits, torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_googlenet_aux_heads_train():
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=10, width=0.125,
                         input_size=96, aux_classifiers=True, lrn=False)
    logits, aux1, aux2 = model.forward_with_aux(torch.randn(2, 3, 96, 96))
    y = torch.tensor([1, 2])
    loss = F.cross_entropy(logits, y) + AUX_LOSS_WEIGHT * (
        F.cross_entropy(aux1, y) + F.cross_entropy(aux2, y))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("name", ["lenet5", "nin", "vgg", "googlenet"])
def test_registry_options_are_typed(name):
    options = model_options(name)
    assert all(kind.split("|")[0] in {"int", "float", "str", "bool"}
               for kind, _ in options.values()), options
    assert options["num_classes"][0] == "int"


def test_registry_rejects_wrong_options():
    with pytest.raises(ValueError, match="config='F' is not one of"):
        create_model("vgg", config="F")
    with pytest.raises(TypeError, match="model 'nin': option width takes "
                       "a number, got 'half'"):
        create_model("nin", width="half")
    with pytest.raises(TypeError, match="model 'googlenet': option "
                       "aux_classifiers takes true or false"):
        create_model("googlenet", aux_classifiers="yes")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['widht'\]"):
        create_model("lenet5", widht=2)


def test_naive_and_reduced_inception_multiply_adds_match_the_formula():
    from alexnet_lib.models.googlenet import (INCEPTION_TABLE,
                                              NaiveInception,
                                              inception_madds)
    from alexnet_lib.speed import count_flops
    spec = INCEPTION_TABLE["3a"]
    naive, reduced = NaiveInception(192, *spec), Inception(192, *spec)
    assert naive.out_channels == 64 + 128 + 32 + 192
    x = torch.randn(2, 192, 28, 28)
    assert naive(x).shape == (2, 416, 28, 28)
    assert reduced(x).shape == (2, 256, 28, 28)
    for module, flag in ((naive, False), (reduced, True)):
        macs = count_flops(module, input_size=28)["forward"] // 2
        assert macs == inception_madds(192, spec, 28, reductions=flag)
    assert inception_madds(192, spec, 28, reductions=False) == 303_464_448
