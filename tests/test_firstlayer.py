"""ZFNet §4.1's measures (alexnet_lib/firstlayer.py) on kernels whose
spectra are known by construction, and ZFNet's filter renormalisation
in the training loop."""
import math

import pytest
import torch
from torch import nn

from alexnet_lib.firstlayer import (aliased_share, kernel_power,
                                    radial_power, rms, shift_sensitivity,
                                    spectral_flatness)
from alexnet_lib.models import create_model
from alexnet_lib.train import train_one_epoch


def cosine_kernel(cycles_per_pixel: float, k: int = 16) -> torch.Tensor:
    """(1, 3, k, k): a horizontal cosine, the same in every colour."""
    x = torch.arange(k, dtype=torch.float64)
    wave = torch.cos(2 * math.pi * cycles_per_pixel * x)
    return wave.expand(k, k)[None, None].expand(1, 3, k, k).clone()


def test_kernel_power_is_parseval():
    w = torch.randn(5, 3, 7, 7, dtype=torch.float64)
    power = kernel_power(w, size=32)
    assert power.shape == (5, 32, 32)
    # Parseval: sum |FFT|^2 = size^2 * sum w^2 (zero padding adds none)
    torch.testing.assert_close(power.sum((1, 2)),
                               32 * 32 * w.pow(2).sum((1, 2, 3)))


def test_aliased_share_of_waves_below_and_above_nyquist():
    # stride 4 keeps up to 1/8 cycles per pixel, stride 2 up to 1/4
    slow, fast = cosine_kernel(1 / 16), cosine_kernel(3 / 16)
    w = torch.cat([slow, fast])
    assert aliased_share(w, 2, size=16).tolist() == pytest.approx(
        [0.0, 0.0], abs=1e-12)
    four = aliased_share(w, 4, size=16)
    assert four[0] == pytest.approx(0.0, abs=1e-12)
    assert four[1] == pytest.approx(1.0)
    assert aliased_share(w, 1, size=16).tolist() == pytest.approx(
        [0.0, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        aliased_share(w, 0)


def test_radial_power_rings():
    edges, share = radial_power(cosine_kernel(4 / 16), bins=4, size=16)
    assert edges.tolist() == [0.0, 0.125, 0.25, 0.375, 0.5]
    torch.testing.assert_close(share.sum(1),
                               torch.ones(1, dtype=torch.float64))
    # all of a 0.25-cycle wave's power sits in the ring [0.25, 0.375)
    assert share[0, 2] == pytest.approx(1.0)


def test_spectral_flatness_spike_and_constant():
    spike = torch.zeros(1, 3, 7, 7)
    spike[..., 3, 3] = 1.0  # flat spectrum
    flat = torch.ones(1, 3, 7, 7)  # all power at frequency 0
    values = spectral_flatness(torch.cat([spike, flat]))
    assert values[0] == pytest.approx(1.0)
    assert values[1] < 1e-10


def test_rms_and_shape_errors():
    w = torch.full((2, 3, 5, 5), 0.2)
    assert rms(w).tolist() == pytest.approx([0.2, 0.2])
    with pytest.raises(ValueError, match="pass model.conv1.weight"):
        rms(torch.zeros(3, 5, 5))


def test_shift_sensitivity_is_zero_for_shifts_of_the_stride():
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=4, input_size=64)
    images = torch.randn(2, 3, 64, 64 + 8)
    out = shift_sensitivity(model, images, 64, shifts=range(9),
                            layers=["conv1"])
    assert set(out) == {"conv1", "output"}
    assert out["conv1"][0] == 0.0 and out["output"][0] == 0.0
    # conv1's stride is 4: a shift of 1 px changes the pooled response
    # more than the shift by 4 that moves every map by one position
    assert out["conv1"][1] > 0.0
    with pytest.raises(ValueError, match="shifts must start at 0"):
        shift_sensitivity(model, images, 64, shifts=[1, 2])
    with pytest.raises(ValueError, match="too small"):
        shift_sensitivity(model, images, 64, shifts=range(20))


class _Renormalising(nn.Module):
    """A tiny model with ZFNet's hook: counts the calls."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        return self.fc(x)

    def renormalise_(self):
        self.calls += 1
        return 0


def test_training_loop_renormalises_after_every_update():
    model = _Renormalising()
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))
               for _ in range(3)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    part = train_one_epoch(model, batches, opt, "cpu")
    assert part["steps"] == 3 and model.calls == 3


def test_zfnet_renormalise_caps_filter_rms():
    torch.manual_seed(0)
    model = create_model("zfnet", num_classes=10)
    with torch.no_grad():
        model.conv1.weight[:5] *= 50  # RMS 0.5: over the radius
    assert model.renormalise_() == 5
    assert rms(model.conv1.weight).max().item() == pytest.approx(0.1)
    assert model.renormalise_() == 0
