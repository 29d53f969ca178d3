"""ZFNet §4.1 in numbers: what a first layer's kernels and stride do.

Zeiler and Fergus looked at AlexNet's first two layers with the
deconvnet and saw (Fig. 5) kernels that were either very smooth or very
sharp, with little in between, some "dead" kernels, and a grid pattern
in layer 2 that they put down to the stride of 4. Their fix: 7x7
kernels with stride 2. This module turns those pictures into numbers:

* ``radial_power``: how a kernel's energy spreads over spatial
  frequency (cycles per input pixel), the "frequency coverage";
* ``aliased_share``: the share of a kernel's energy above the Nyquist
  frequency of its own output grid, ``1 / (2 * stride)`` cycles per
  pixel. A convolution with stride s keeps one output in s per axis;
  whatever the kernel passes above that frequency folds back onto lower
  ones (aliasing). For stride 4 the limit is 1/8, for stride 2 it is 1/4;
* ``spectral_flatness``: 1 for a kernel whose energy is spread evenly
  over all frequencies (white noise, a kernel that learned nothing), near
  0 for a smooth, structured one;
* ``shift_sensitivity``: how much a layer's response changes when the
  input is moved by a few pixels. Aliasing shows as a response that
  changes with a shift smaller than the layer's stride.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

__all__ = ["kernel_power", "radial_power", "aliased_share",
           "spectral_flatness", "rms", "shift_sensitivity"]


def _kernels(weight: torch.Tensor) -> torch.Tensor:
    if weight.dim() != 4 or weight.shape[-1] != weight.shape[-2]:
        raise ValueError(f"expected conv kernels of shape (N, C, k, k), "
                         f"got {tuple(weight.shape)}: pass "
                         f"model.conv1.weight")
    return weight.detach().double().cpu()


def kernel_power(weight: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Power spectrum of each kernel, summed over its input channels:
    |FFT|^2 on a ``size`` x ``size`` grid (the kernel zero-padded),
    (N, size, size), frequency k at index k as ``torch.fft.fftfreq``."""
    w = _kernels(weight)
    if size < w.shape[-1]:
        raise ValueError(f"size={size} must be at least the kernel size "
                         f"{w.shape[-1]}")
    return torch.fft.fft2(w, s=(size, size)).abs().pow(2).sum(1)


def _frequencies(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    f = torch.fft.fftfreq(size, dtype=torch.float64)  # cycles / pixel
    return f[:, None].expand(size, size), f[None, :].expand(size, size)


def radial_power(weight: torch.Tensor, bins: int = 8, size: int = 64
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(edges (bins + 1,), share (N, bins)): each kernel's power in rings
    of radial frequency from 0 to 0.5 cycles per pixel (the corners
    beyond 0.5 go to the last ring); each row sums to 1."""
    power = kernel_power(weight, size)
    fy, fx = _frequencies(size)
    radius = (fy ** 2 + fx ** 2).sqrt()
    edges = torch.linspace(0, 0.5, bins + 1, dtype=torch.float64)
    ring = torch.bucketize(radius, edges[1:-1], right=True)  # 0..bins-1
    share = torch.zeros(power.shape[0], bins, dtype=torch.float64)
    share.index_add_(1, ring.flatten(), power.flatten(1))
    return edges, share / share.sum(1, keepdim=True).clamp_min(1e-300)


def aliased_share(weight: torch.Tensor, stride: int, size: int = 64
                  ) -> torch.Tensor:
    """(N,) share of each kernel's power at frequencies that a stride-s
    output grid cannot hold: |f| > 1 / (2 s) cycles per pixel along
    either axis. 0 for a kernel that is smooth enough for its stride."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    power = kernel_power(weight, size)
    fy, fx = _frequencies(size)
    above = (fy.abs() > 0.5 / stride) | (fx.abs() > 0.5 / stride)
    return (power * above).sum((1, 2)) / power.sum((1, 2)).clamp_min(
        1e-300)


def spectral_flatness(weight: torch.Tensor) -> torch.Tensor:
    """(N,) geometric over arithmetic mean of each kernel's power on its
    own k x k frequency grid (no padding, so the bins are independent):
    1 for a flat spectrum (a single spike, or white noise on average
    somewhat below 1), near 0 when the energy sits in a few
    frequencies."""
    w = _kernels(weight)
    power = torch.fft.fft2(w).abs().pow(2).sum(1).flatten(1) + 1e-30
    return power.log().mean(1).exp() / power.mean(1)


def rms(weight: torch.Tensor) -> torch.Tensor:
    """(N,) root mean square of each kernel (ZFNet's filter size)."""
    return _kernels(weight).pow(2).mean((1, 2, 3)).sqrt()


@torch.no_grad()
def shift_sensitivity(model: nn.Module, images: torch.Tensor, size: int,
                      shifts: Iterable[int] = range(9),
                      layers: Iterable[str] = ("conv1", "conv2"),
                      batch: int = 50) -> dict[str, list[float]]:
    """How much responses change when the input moves right by a shift.

    ``images`` (N, 3, H, W) are network inputs (mean subtracted) wider
    than ``size``; each is cut at columns [o + d, o + d + size) for every
    shift d, with o centring the window. For each layer (its ReLU output,
    ``relu1`` for conv1 and so on) the maps are averaged over space
    (so a shift by a multiple of the layer's stride would change nothing
    but the borders) and the relative change ||v_d - v_0|| / ||v_0|| is
    averaged over images. ``"output"`` is the total-variation distance of
    the class probabilities. Returns {layer: [one value per shift]}.
    """
    from alexnet_lib.deconvnet import LAYERS
    shifts, layers = list(shifts), list(layers)
    if not shifts or shifts[0] != 0:
        raise ValueError(f"shifts must start at 0 (the reference), got "
                         f"{shifts}")
    n, _, h, w = images.shape
    if w < size + max(shifts) or h < size:
        raise ValueError(f"images of {h}x{w} are too small for {size}-pixel "
                         f"windows moved by up to {max(shifts)} pixels")
    top, left = (h - size) // 2, (w - size - max(shifts)) // 2
    model.eval()
    pooled: dict[str, torch.Tensor] = {}
    # conv i's ReLU output, averaged over space, caught on the way through
    hooks = [getattr(model, f"relu{LAYERS.index(name) + 1}")
             .register_forward_hook(
                 lambda m, i, o, name=name: pooled.__setitem__(
                     name, o.float().mean((2, 3)).double()))
             for name in layers]
    change = {name: torch.zeros(len(shifts), dtype=torch.float64)
              for name in [*layers, "output"]}
    try:
        for part in images.split(batch):
            base = None
            for j, d in enumerate(shifts):
                x = part[:, :, top:top + size, left + d:left + d + size]
                probs = model(x.float()).float().softmax(1).double()
                now = {name: pooled[name] for name in layers}
                if base is None:
                    base = now, probs
                for name in layers:
                    diff = (now[name] - base[0][name]).norm(dim=1)
                    change[name][j] += (diff / base[0][name].norm(dim=1)
                                        .clamp_min(1e-12)).sum()
                change["output"][j] += 0.5 * (probs - base[1]).abs().sum()
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (v / n).tolist() for name, v in change.items()}
