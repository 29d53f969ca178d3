"""ZFNet's deconvnet (alexnet_lib/deconvnet.py) on the library's AlexNet.

Two independent checks besides the single-layer gradient: Captum's
``Deconvolution`` (a test-only dependency; its test is skipped with the
reason when Captum is not installed) on a network without LRN, and, for
the network with LRN, a second formulation built the way Captum builds
its own: autograd through the network with the ReLU's backward replaced
by a ReLU of the incoming signal and LRN's backward by the identity.
"""
import pytest
import torch
import torch.nn.functional as F

from alexnet_lib.deconvnet import LAYERS, Deconvnet, receptive_field, unpool
from alexnet_lib.models import create_model


class _DeconvReLU(torch.autograd.Function):
    """ReLU forward; backward rectifies the signal (the deconvnet rule)
    instead of masking it with the forward's sign (backpropagation)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


class _PassLRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lrn):
        return lrn(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def deconv_by_autograd(model, x, layer, signal):
    """The second formulation: d(layer's ReLU output . signal)/dx with
    the deconvnet's ReLU rule and LRN passed through."""
    x = x.clone().requires_grad_()
    h = model.pad1(x)
    for i, name in enumerate(LAYERS, start=1):
        h = _DeconvReLU.apply(getattr(model, name)(h))
        if name == layer:
            return torch.autograd.grad(h, x, signal)[0]
        if i <= 2:
            h = _PassLRN.apply(h, getattr(model, f"lrn{i}"))
            h = getattr(model, f"pool{i}")(h)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("alexnet", num_classes=10, input_size=99,
                        init="torch").eval().double()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return 50 * torch.randn(2, 3, 99, 99, generator=g, dtype=torch.float64)


def test_unpool_puts_values_at_the_switches_and_adds_overlaps():
    x = torch.tensor([[[[1., 2., 0.], [0., 9., 0.], [3., 0., 4.]]]])
    pooled, switches = F.max_pool2d(x, 2, 1, return_indices=True)
    assert pooled.flatten().tolist() == [9., 9., 9., 9.]  # all windows
    back = unpool(torch.ones_like(pooled), switches, x.shape)
    assert back.flatten().tolist() == [0, 0, 0, 0, 4, 0, 0, 0, 0]


def test_layer_one_is_the_transposed_convolution(net, images):
    # one layer, no pooling: the projection is conv1's input gradient
    d = Deconvnet(net)
    rec = d.record(images)
    signal = d.strongest(rec, "conv1", 5)
    assert (signal != 0).sum() == 2  # one activation per image
    x = images.clone().requires_grad_()
    out = net.conv1(net.pad1(x))
    grad, = torch.autograd.grad(out, x, signal)
    torch.testing.assert_close(d.reconstruct(rec, "conv1", signal), grad)


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_equals_the_autograd_formulation(net, images, layer):
    d = Deconvnet(net)  # lrn="skip"
    rec = d.record(images)
    signal = d.strongest(rec, layer, 3)
    ours = d.reconstruct(rec, layer, signal)
    assert ours.shape == images.shape
    torch.testing.assert_close(
        ours, deconv_by_autograd(net, images, layer, signal))
    if layer != "conv1":  # a rectified signal went through every layer
        assert ours.abs().sum() > 0


def test_maps_and_switches_match_the_forward_pass(net, images):
    rec = Deconvnet(net).record(images)
    with torch.no_grad():
        assert torch.equal(net.features(images),
                           net.pool5(rec.maps["conv5"]))
    assert rec.maps["conv1"].shape == (2, 96, 23, 23)
    assert rec.switches["conv1"].shape == (2, 96, 11, 11)


def test_lrn_scale_divides_by_the_forward_factor(net, images):
    skip = Deconvnet(net, lrn="skip")
    scale = Deconvnet(net, lrn="scale")
    rec = skip.record(images)
    s = rec.lrn_scale["conv1"]
    assert (s >= 1).all()  # k = 2 and beta > 0: the factor is >= 2^0.75
    signal = skip.strongest(rec, "conv2", 0)
    a = skip.reconstruct(rec, "conv2", signal)
    b = scale.reconstruct(rec, "conv2", signal)
    assert not torch.allclose(a, b)


def test_bad_input_says_what_to_do(net, images):
    d = Deconvnet(net)
    rec = d.record(images)
    with pytest.raises(ValueError, match="layer must be one of conv1"):
        d.project(images, "fc6", 0)
    with pytest.raises(ValueError, match="conv2 has 256 feature maps; "
                                         "channel 256 does not exist"):
        d.strongest(rec, "conv2", 256)
    with pytest.raises(ValueError, match="lrn must be 'skip' or 'scale'"):
        Deconvnet(net, lrn="invert")
    short = create_model("alexnet", num_classes=10, input_size=99,
                         removed=("conv3",))
    with pytest.raises(ValueError, match="lacks conv3"):
        Deconvnet(short)


def test_with_conv_weights_rebuilds_a_snapshot(net):
    from alexnet_lib.deconvnet import with_conv_weights
    weights = {k: torch.zeros_like(v) for k, v in net.state_dict().items()
               if k.startswith("conv")}
    old = with_conv_weights(net, weights)
    assert old.conv3.weight.abs().sum() == 0
    assert torch.equal(old.fc6.weight, net.fc6.weight)
    assert net.conv3.weight.abs().sum() > 0  # the model is unchanged
    with pytest.raises(ValueError, match="conv1.weight: the snapshot's "
                                         "shape"):
        with_conv_weights(net, {"conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="weights this model lacks: "
                                         "conv9.weight"):
        with_conv_weights(net, {"conv9.weight": torch.zeros(1)})


def test_occlusion_maps_every_position(net, images):
    from alexnet_lib.deconvnet import occlusion
    image = images[0]
    out = occlusion(net, image, label=3, size=33, stride=33, batch=4)
    assert out["probability"].shape == (3, 3)  # corners 0, 33, 66
    assert out["predicted"].shape == (3, 3)
    # one position by hand: the square at (33, 66)
    x = image.clone()
    x[:, 33:66, 66:99] = 0
    with torch.no_grad():
        p = net(x[None]).softmax(1)[0]
        rec = Deconvnet(net).record(x[None])
    assert out["probability"][1, 2].item() == pytest.approx(p[3].item())
    assert out["predicted"][1, 2].item() == p.argmax().item()
    assert out["activity"][1, 2].item() == pytest.approx(
        rec.maps["conv5"][0, out["channel"]].sum().item())
    with pytest.raises(ValueError, match="the occluder must fit"):
        occlusion(net, image, 0, size=100, stride=1)


def test_receptive_fields_of_the_paper_network():
    model = create_model("alexnet", num_classes=10)  # 224: the paper's
    got = {name: receptive_field(model, name) for name in LAYERS}
    # conv1 11 px every 4; pool1 and conv2 widen it to 51 px every 8;
    # conv3..5 see 99, 131 and 163 px, every 16
    assert got == {"conv1": (11, 4, 0), "conv2": (51, 8, 16),
                   "conv3": (99, 16, 32), "conv4": (131, 16, 48),
                   "conv5": (163, 16, 64)}


def test_top_activations_pick_the_strongest_image_per_map(net, images):
    from alexnet_lib.deconvnet import top_activations
    batches = [images[:1], images[1:]]  # image indices run on
    both = top_activations(net, batches, {"conv2": [0, 7], "conv4": [1]},
                           k=2)
    assert set(both) == {"conv2", "conv4"} and set(both["conv4"]) == {1}
    top = both["conv2"]
    rec = Deconvnet(net).record(images)
    for c in (0, 7):
        assert [t[1] for t in top[c]] == sorted(
            range(2), key=lambda b: -rec.maps["conv2"][b, c].max())
        value, b, row, col = top[c][0]
        assert value == rec.maps["conv2"][b, c].max().item()
        assert rec.maps["conv2"][b, c, row, col].item() == value


@pytest.mark.parametrize("layer", LAYERS)
def test_captum_deconvolution_agrees_without_lrn(layer, images):
    # Captum's Deconvolution (an outside implementation) rectifies the
    # signal at every nn.ReLU and takes true gradients elsewhere, so it
    # must equal ours on a network without LRN (with LRN it would use
    # LRN's gradient where ours skips it). Ours carries the activation's
    # value as the signal, Captum a 1: divide ours by it.
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10, input_size=99,
                         init="torch", lrn=False).eval().double()
    d = Deconvnet(model)
    rec = d.record(images)
    signal = d.strongest(rec, layer, 2)
    ours = d.reconstruct(rec, layer, signal)
    value = signal.flatten(1).max(1).values  # (B,)

    class Unit(torch.nn.Module):  # the layer's ReLU maps, flattened
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            h = model.pad1(x)
            for i, name in enumerate(LAYERS, start=1):
                h = getattr(model, f"relu{i}")(getattr(model, name)(h))
                if name == layer:
                    return h.flatten(1)
                if i <= 2:
                    h = getattr(model, f"pool{i}")(h)

    target = signal.flatten(1).argmax(1).tolist()
    theirs = captum.Deconvolution(Unit()).attribute(images.clone(),
                                                    target=target)
    torch.testing.assert_close(ours / value[:, None, None, None], theirs)


def test_receptive_box_is_cut_to_the_image():
    from alexnet_lib.deconvnet import receptive_box
    model = create_model("alexnet", num_classes=10)
    # conv5 unit (0, 0): 163 px from -64, so rows and columns 0..98
    assert receptive_box(model, "conv5", 0, 0, 224) == (0, 0, 99, 99)
    # conv1 unit (54, 54) starts at 216 and would end at 227
    assert receptive_box(model, "conv1", 54, 54, 224) == (216, 216, 224, 224)
    assert receptive_box(model, "conv2", 3, 5, 224) == (8, 24, 59, 75)


def test_for_display_scales_each_image_to_0_1():
    from alexnet_lib.deconvnet import for_display
    x = torch.stack([torch.linspace(-3, 5, 27).view(3, 3, 3),
                     torch.zeros(3, 3, 3)])
    out = for_display(x)
    assert out[0].min() == 0 and out[0].max() == 1
    assert torch.equal(out[1], torch.zeros(3, 3, 3))  # flat: no NaN


def test_feature_evolution_ends_settled_and_counts_changes(net, images):
    from alexnet_lib.deconvnet import feature_evolution
    last = {k: v.clone() for k, v in net.state_dict().items()
            if k.startswith("conv")}
    first = {k: 2 * v for k, v in last.items()}  # twice the final weights
    evo = feature_evolution(net, {1: first, 5: last}, images,
                            {"conv3": [0, 1]}, k=2, batch=1)["conv3"]
    assert evo["epochs"] == [1, 5]
    assert evo["overlap"][5] == 1.0 and evo["weight_change"][5] == 0.0
    assert evo["weight_change"][1] == pytest.approx(1.0)  # |2w - w| / |w|
    assert set(evo["top"][1]) == {0, 1}
    with pytest.raises(ValueError, match="no snapshots"):
        feature_evolution(net, {}, images, {"conv3": [0]})


def test_deconvnet_on_zfnet_follows_its_pool_then_norm_order():
    # ZFNet normalises after pooling: the autograd formulation in that
    # order must agree for every layer
    from alexnet_lib.models import ZFNet
    torch.manual_seed(0)
    model = ZFNet(num_classes=10).eval().double()
    x = 50 * torch.randn(1, 3, 224, 224, dtype=torch.float64)
    d = Deconvnet(model)
    rec = d.record(x)
    assert rec.maps["conv1"].shape == (1, 96, 110, 110)
    assert rec.switches["conv1"].shape == (1, 96, 55, 55)
    for layer in ("conv2", "conv5"):
        signal = d.strongest(rec, layer, 1)
        xx = x.clone().requires_grad_()
        h = model.pad1(xx)
        for i, name in enumerate(LAYERS, start=1):
            h = _DeconvReLU.apply(getattr(model, name)(h))
            if name == layer:
                break
            if i <= 2:
                h = _PassLRN.apply(getattr(model, f"pool{i}")(h),
                                   getattr(model, f"lrn{i}"))
        expected, = torch.autograd.grad(h, xx, signal)
        torch.testing.assert_close(d.reconstruct(rec, layer, signal),
                                   expected)
