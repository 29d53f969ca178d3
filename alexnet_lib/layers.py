"""Layers the paper uses that PyTorch lacks or defines differently.

``local_response_norm`` / ``LocalResponseNorm``: the response
normalization of §3.3, with the paper's constants and the paper's
(undivided) alpha. ``LocallyConnected2d``: cuda-convnet's ``local``
layer (unshared weights), used by Krizhevsky's CIFAR-10 nets.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["local_response_norm", "LocalResponseNorm",
           "LocallyConnected2d"]


def _channel_window_sum(sq: torch.Tensor, before: int,
                        after: int) -> torch.Tensor:
    """s[:, i] = sum of sq[:, j] for i - before <= j <= i + after.

    ``sq`` is (B, C, L). Maps outside 0..C-1 count as zero: the paper's
    max(0, .) and min(N-1, .) limits. Shifted in-place adds are exact
    and several times cheaper than the 3-D average pooling that
    ``torch.nn.functional.local_response_norm`` uses.
    """
    s = sq.clone()
    for d in range(1, min(before, sq.shape[1] - 1) + 1):
        s[:, d:] += sq[:, :-d]
    for d in range(1, min(after, sq.shape[1] - 1) + 1):
        s[:, :-d] += sq[:, d:]
    return s


class _ChannelWindowSum(torch.autograd.Function):
    """Autograd wrapper: the window sum is linear, so its backward is the
    window sum with the two sides swapped (and is differentiable again).
    """

    @staticmethod
    def forward(ctx, sq, before, after):
        ctx.before, ctx.after = before, after
        return _channel_window_sum(sq, before, after)

    @staticmethod
    def backward(ctx, grad):
        return _ChannelWindowSum.apply(grad, ctx.after, ctx.before), None, None


def local_response_norm(x: torch.Tensor, size: int = 5, alpha: float = 1e-4,
                        beta: float = 0.75, k: float = 2.0,
                        scale_by_size: bool = False,
                        groups: int = 1) -> torch.Tensor:
    """Local response normalization across channels. Paper: §3.3.

    ``b[i] = a[i] / (k + alpha * sum_j a[j]**2) ** beta`` where j runs
    over the ``size`` channels (the paper's n) centred on channel i at
    the same position, clipped at the first and last channel. Paper
    symbols: size = n, alpha = α, beta = β, k = k; defaults are §3.3's.

    scale_by_size: divide alpha by ``size`` (cuda-convnet, Caffe and
        ``torch.nn.LocalResponseNorm``). False, the default, is the
        paper's formula, equal to ``torch.nn.LocalResponseNorm(size,
        alpha * size, beta, k)``.
    groups: normalise each of ``groups`` contiguous channel blocks on
        its own (one block per GPU in the two-GPU network, §3.2).

    Even sizes take size // 2 channels before i and (size - 1) // 2
    after it, as PyTorch and cuda-convnet do. Half-precision inputs are
    normalised in float32 and returned in their own dtype.
    """
    if x.dim() < 3:
        raise ValueError(f"local_response_norm expects (B, C, ...) input "
                         f"with at least 3 dims, got shape {tuple(x.shape)}")
    if size < 1 or groups < 1:
        raise ValueError(f"size and groups must be >= 1, got size={size}, "
                         f"groups={groups}")
    shape, channels = x.shape, x.shape[1]
    if channels % groups:
        raise ValueError(f"{channels} channels cannot be split into "
                         f"{groups} equal groups")
    # (B, C, ...) -> (B * groups, C / groups, L): windows stay in a group
    a = x.reshape(shape[0] * groups, channels // groups, -1)
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    a_sq = _ChannelWindowSum.apply(a * a, size // 2, (size - 1) // 2)
    scale = alpha / size if scale_by_size else alpha
    b = a * (k + scale * a_sq).pow(-beta)  # (B * groups, C / groups, L)
    return b.to(x.dtype).view(shape)


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm`. Paper: §3.3.

    ``LocalResponseNorm()`` is the paper's layer (n=5, α=1e-4, β=0.75,
    k=2, α not divided by n). It equals
    ``torch.nn.LocalResponseNorm(size, alpha * size, beta, k)``, and with
    ``scale_by_size=True`` it equals ``torch.nn.LocalResponseNorm(size,
    alpha, beta, k)`` (cuda-convnet / Caffe convention).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4,
                 beta: float = 0.75, k: float = 2.0,
                 scale_by_size: bool = False, groups: int = 1):
        super().__init__()
        if size < 1 or groups < 1:
            raise ValueError(f"size and groups must be >= 1, got "
                             f"size={size}, groups={groups}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.scale_by_size, self.groups = scale_by_size, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta,
                                   self.k, self.scale_by_size, self.groups)

    def extra_repr(self) -> str:
        s = (f"size={self.size}, alpha={self.alpha}, beta={self.beta}, "
             f"k={self.k}")
        if self.scale_by_size:
            s += ", scale_by_size=True"
        return s + (f", groups={self.groups}" if self.groups > 1 else "")


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class LocallyConnected2d(nn.Module):
    """A convolution without weight sharing: cuda-convnet's ``local``.

    Every output position (y, x) has its own filter bank and its own
    bias, as in Krizhevsky's CIFAR-10 nets (layers-conv-local-*.cfg).
    Built on ``Tensor.unfold``: patches (L, B, C*kh*kw) times per-position
    weights (L, C*kh*kw, out). Output size uses PyTorch's floor rule
    (cuda-convnet rounds up; equal for stride 1).

    weight: (L, out_channels, in_channels * kh * kw), L = out_h * out_w
    bias: (out_channels, out_h, out_w)
    """

    def __init__(self, in_channels: int, out_channels: int, input_size,
                 kernel_size, stride=1, padding=0, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.input_size = _pair(input_size)
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding = _pair(stride), _pair(padding)
        self.output_size = tuple(
            (n + 2 * p - k) // s + 1 for n, k, s, p in zip(
                self.input_size, self.kernel_size, self.stride,
                self.padding))
        if min(self.output_size) < 1:
            raise ValueError(f"LocallyConnected2d: a {self.kernel_size} "
                             f"kernel does not fit a {self.input_size} "
                             f"input with padding {self.padding}")
        n_pos = self.output_size[0] * self.output_size[1]
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(n_pos, out_channels, fan_in))
        self.bias = (nn.Parameter(torch.empty(out_channels,
                                              *self.output_size))
                     if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1 / math.sqrt(self.weight.shape[-1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.in_channels,
                                                  *self.input_size):
            raise ValueError(
                f"LocallyConnected2d expects (B, {self.in_channels}, "
                f"{self.input_size[0]}, {self.input_size[1]}) input, got "
                f"{tuple(x.shape)}: its weights are tied to positions")
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (oh, ow) = self.padding, self.output_size
        # Tensor.unfold and a position-major copy: about 3x faster on CPU
        # than F.unfold's (B, K, L) layout permuted into the bmm.
        x = F.pad(x, (pw, pw, ph, ph)) if ph or pw else x
        cols = x.unfold(2, kh, sh).unfold(3, kw, sw)  # (B,C,oh,ow,kh,kw)
        cols = cols[:, :, :oh, :ow].permute(2, 3, 0, 1, 4, 5).reshape(
            oh * ow, x.shape[0], -1)                    # (L, B, K)
        out = torch.bmm(cols, self.weight.transpose(1, 2))  # (L, B, out)
        out = out.permute(1, 2, 0).reshape(              # (B, out, oh, ow)
            x.shape[0], self.out_channels, oh, ow)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, "
                f"input_size={self.input_size}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")
