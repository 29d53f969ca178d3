"""Layers the paper uses that PyTorch lacks or defines differently.

``local_response_norm`` / ``LocalResponseNorm``: the response
normalization of §3.3, with the paper's constants and the paper's
(undivided) alpha. ``LocallyConnected2d``: cuda-convnet's ``local``
layer (unshared weights), used by Krizhevsky's CIFAR-10 nets.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["local_response_norm", "LocalResponseNorm", "lrn_max_pool",
           "LocallyConnected2d", "PAPER_LRN"]

# §3.3: "k = 2, n = 5, alpha = 10^-4, and beta = 0.75", the one place
# these constants are written; the defaults below and AlexNet use them.
PAPER_LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)


def _channel_window_sum(sq: torch.Tensor, before: int,
                        after: int) -> torch.Tensor:
    """s[:, i] = sum of sq[:, j] for i - before <= j <= i + after.

    ``sq`` is (B, C, L). Maps outside 0..C-1 count as zero: the paper's
    max(0, .) and min(N-1, .) limits. Built from differentiable ops
    (pad, then add shifted slices): the reference path, used on GPUs,
    under ``torch.compile`` (which fuses it) and for double backward.
    """
    padded = F.pad(sq, (0, 0, before, after))  # (B, C + n - 1, L)
    channels = sq.shape[1]
    return sum(padded.narrow(1, j, channels)
               for j in range(before + after + 1))


def _lrn_reference(x: torch.Tensor, size: int, alpha: float, beta: float,
                   k: float, groups: int) -> torch.Tensor:
    """b = a * (k + alpha * window_sum(a**2)) ** -beta, with autograd."""
    shape = x.shape
    # (B, C, ...) -> (B * groups, C / groups, L): windows stay in a group
    a = x.reshape(shape[0] * groups, shape[1] // groups, -1)
    if a.dtype in (torch.float16, torch.bfloat16):
        a = a.float()
    s = _channel_window_sum(a * a, size // 2, (size - 1) // 2)
    b = a * (k + alpha * s).pow(-beta)  # (B * groups, C / groups, L)
    return b.to(x.dtype).view(shape)


# Elements per block of the CPU kernel: its scratch stays in cache.
LRN_BLOCK = 1 << 18


def _work_view(t: torch.Tensor, groups: int) -> tuple[torch.Tensor, int]:
    """A view of ``t`` with one axis per group's channels, and that axis.

    NCHW-contiguous (B, C, ...) -> (B * groups, C / groups, L), axis 1;
    channels_last (B, C, H, W) -> (B, H * W, groups, C / groups), axis 3.
    Both views share memory with ``t``; blocks are cut along axis 0.
    """
    b, c = t.shape[:2]
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(
            memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(b, -1, groups, c // groups), 3
    return t.view(b * groups, c // groups, -1), 1


def _window_sum_padded(p: torch.Tensor, n: int, dim: int, c: int,
                       out: torch.Tensor, tmp: list) -> torch.Tensor:
    """out[i] = sum of p[i + j], j < n, along ``dim`` (p has c + n - 1).

    Sums of 2, 4, 8 ... neighbours are built by doubling and the ones
    that make up n are added: n = 5 takes 3 passes (2 + 2, then + 1)
    instead of 5. ``tmp``: two buffers shaped like ``p``.
    """
    # The two scratch buffers take turns, so a part of n kept as a view
    # would be overwritten two doublings later (n = 14 = 2 + 4 + 8):
    # a waiting part is written to ``out`` before its buffer is reused.
    w, w_buf, m, offset = p, p, 1, 0
    waiting, waiting_buf, started = None, None, False
    while True:
        if n & m:  # this power of two is part of n
            part = w.narrow(dim, offset, c)
            if started:
                out.add_(part)
            elif waiting is None:
                waiting, waiting_buf = part, w_buf
            else:
                torch.add(waiting, part, out=out)
                waiting, started = None, True
            offset += m
        if 2 * m > n:
            break
        if waiting is not None and waiting_buf is tmp[0]:
            out.copy_(waiting)
            waiting, started = None, True
        length = w.shape[dim] - m
        nxt = tmp[0].narrow(dim, 0, length)
        torch.add(w.narrow(dim, 0, length), w.narrow(dim, m, length),
                  out=nxt)  # sums of 2m neighbours
        w, w_buf, m = nxt, tmp[0], 2 * m
        tmp = tmp[::-1]
    if waiting is not None:
        out.copy_(waiting)
    return out


def _neg_pow(d: torch.Tensor, beta: float, out: torch.Tensor):
    """out = d ** -beta; the paper's 0.75 as rsqrt(d * sqrt(d)), which
    is several times cheaper than pow on a CPU."""
    if beta == 0.75:
        return torch.sqrt(d, out=out).mul_(d).rsqrt_()
    if beta == 0.5:
        return torch.rsqrt(d, out=out)
    return torch.pow(d, -beta, out=out)


class _LRNBlocks:
    """Scratch for one call of the CPU kernel: each block of the input
    is loaded once and every pass over it runs in cache.

    ``denominator(a)`` fills ``self.d`` with k + alpha * (window sum of
    a**2) and ``self.p`` with d ** -beta. The window sum reads a padded
    buffer whose pads hold k / n and whose middle holds
    alpha * a**2 + k / n: every window then has n terms and sums to
    k + alpha * s in one go (the pads are what the max/min limits cut).
    """

    def __init__(self, a, dim, rows, size, alpha, beta, k, extra):
        self.dim, self.size = dim, size
        self.alpha, self.beta, self.k = alpha, beta, k
        self.c = a.shape[dim]
        dtype = a.dtype if a.dtype == torch.float64 else torch.float32
        shape = [min(rows, a.shape[0]), *a.shape[1:]]
        padded = list(shape)
        padded[dim] += size - 1
        self.pad_k = torch.full(padded, k / size, dtype=dtype)
        self.pad_0 = torch.zeros(padded, dtype=dtype)
        self.tmp = [torch.empty(padded, dtype=dtype) for _ in range(2)]
        self.buf = [torch.empty(shape, dtype=dtype)
                    for _ in range(2 + extra)]
        self.k_n = torch.tensor(k / size, dtype=dtype)

    def take(self, n):
        """The scratch for a block of ``n`` rows."""
        self.n = n
        return [b[:n] for b in self.buf[2:]]

    def denominator(self, a):
        n, dim, c = self.n, self.dim, self.c
        self.d, self.p = self.buf[0][:n], self.buf[1][:n]
        mid = self.pad_k[:n].narrow(dim, self.size // 2, c)
        torch.addcmul(self.k_n, a, a, value=self.alpha, out=mid)
        _window_sum_padded(self.pad_k[:n], self.size, dim, c, self.d,
                           [t[:n] for t in self.tmp])
        _neg_pow(self.d, self.beta, self.p)

    def transposed_window_sum(self, fill):
        """Window sum with the sides swapped (the backward of the
        forward's sum); ``fill(middle)`` writes its input; into p."""
        n, dim, c = self.n, self.dim, self.c
        fill(self.pad_0[:n].narrow(dim, (self.size - 1) // 2, c))
        return _window_sum_padded(self.pad_0[:n], self.size, dim, c,
                                  self.p, [t[:n] for t in self.tmp])


class _LocalResponseNormCPU(torch.autograd.Function):
    """LRN forward and a hand-derived backward, block by block.

    b = a * p with p = d ** -beta, d = k + alpha * S(a**2), S the window
    sum over channels. Backward, for the upstream gradient g:
    grad a = g * p - 2 * alpha * beta * a * S^T(g * a * p / d),
    S^T the window sum with its two sides swapped. Only the input is
    saved: d and p are recomputed per block in cache, which costs less
    than writing and rereading them from memory. Half-precision blocks
    are computed in float32.
    """

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, groups):
        out = torch.empty_like(x)
        a, dim = _work_view(x, groups)
        b, _ = _work_view(out, groups)
        rows = max(1, LRN_BLOCK // a[0].numel())
        half = a.dtype in (torch.float16, torch.bfloat16)
        blocks = _LRNBlocks(a, dim, rows, size, alpha, beta, k, 1)
        for a_i, b_i in zip(a.split(rows), b.split(rows)):
            a32, = blocks.take(a_i.shape[0])
            a_i = a32.copy_(a_i) if half else a_i
            blocks.denominator(a_i)
            if half:
                b_i.copy_(blocks.p.mul_(a_i))
            else:
                torch.mul(a_i, blocks.p, out=b_i)
        ctx.save_for_backward(x)
        ctx.options = (size, alpha, beta, k, groups)
        return out

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        size, alpha, beta, k, groups = ctx.options
        if torch.is_grad_enabled():  # create_graph: differentiable path
            with torch.enable_grad():
                y = _lrn_reference(x, size, alpha, beta, k, groups)
            gx, = torch.autograd.grad(y, x, g, create_graph=True)
            return gx, None, None, None, None, None
        g = g.contiguous(memory_format=_memory_format(x))
        gx = torch.empty_like(x)
        a, dim = _work_view(x, groups)
        gv, _ = _work_view(g, groups)
        ov, _ = _work_view(gx, groups)
        rows = max(1, LRN_BLOCK // a[0].numel())
        half = a.dtype in (torch.float16, torch.bfloat16)
        blocks = _LRNBlocks(a, dim, rows, size, alpha, beta, k, 3)
        for a_i, g_i, o_i in zip(a.split(rows), gv.split(rows),
                                 ov.split(rows)):
            t, a32, g32 = blocks.take(a_i.shape[0])
            if half:
                a_i, g_i = a32.copy_(a_i), g32.copy_(g_i)
            blocks.denominator(a_i)
            torch.mul(g_i, blocks.p, out=t)  # g * p
            s = blocks.transposed_window_sum(   # S^T(g * p * a / d)
                lambda mid: torch.mul(t, a_i, out=mid).div_(blocks.d))
            if half:
                o_i.copy_(t.addcmul_(s, a_i, value=-2 * alpha * beta))
            else:
                torch.addcmul(t, s, a_i, value=-2 * alpha * beta, out=o_i)
        return gx, None, None, None, None, None


class _LocalResponseNormC(torch.autograd.Function):
    """LRN through the compiled kernel (``alexnet_lib/kernels/lrn.c``):
    one pass over memory forward and one backward, float32 or bfloat16,
    same formula and backward as ``_LocalResponseNormCPU``; only the
    input is saved."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, groups, kernel):
        out = torch.empty_like(x)
        rows, opts = _kernel_layout(x, size, alpha, beta, k, groups)
        kernel.forward(x, out, rows, opts, torch.get_num_threads())
        ctx.save_for_backward(x)
        ctx.options = (size, alpha, beta, k, groups, kernel)
        return out

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        size, alpha, beta, k, groups, kernel = ctx.options
        if torch.is_grad_enabled():  # create_graph: differentiable path
            with torch.enable_grad():
                y = _lrn_reference(x, size, alpha, beta, k, groups)
            gx, = torch.autograd.grad(y, x, g, create_graph=True)
            return gx, None, None, None, None, None, None
        g = g.to(x.dtype).contiguous(memory_format=_memory_format(x))
        gx = torch.empty_like(x)
        rows, opts = _kernel_layout(x, size, alpha, beta, k, groups)
        kernel.backward(x, g, gx, rows, opts, torch.get_num_threads())
        return gx, None, None, None, None, None, None


class _LRNMaxPoolC(torch.autograd.Function):
    """LRN, then max-pooling, in one pass each way through the compiled
    kernel (``lrn_pool_forward``/``lrn_pool_backward`` in ``lrn.c``).
    The LRN output never goes to memory; only the input and one byte per
    pooled value (where in its window the maximum sat) are saved. Equal
    bit for bit to ``max_pool2d(local_response_norm(x))``, value and
    gradient (tests/test_lrn_kernel.py)."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k, groups, z, s, kernel):
        from alexnet_lib.kernels import pool_opts
        b, c, h, w = x.shape
        _, opts = _kernel_layout(x, size, alpha, beta, k, groups)
        geometry = pool_opts(b, h, w, groups, z, s)
        shape, layout = (b, c, geometry.Ho, geometry.Wo), _memory_format(x)
        out = torch.empty(shape, dtype=x.dtype, memory_format=layout)
        where = torch.empty(shape, dtype=torch.uint8, memory_format=layout)
        kernel.pool_forward(x, out, where, opts, geometry,
                            torch.get_num_threads())
        ctx.save_for_backward(x, where)
        ctx.options = (size, alpha, beta, k, groups, z, s)
        ctx.kernel_args = (opts, geometry, kernel)
        return out

    @staticmethod
    def backward(ctx, g):
        x, where = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: differentiable path
            size, alpha, beta, k, groups, z, s = ctx.options
            with torch.enable_grad():
                y = F.max_pool2d(
                    _lrn_reference(x, size, alpha, beta, k, groups), z, s)
            gx, = torch.autograd.grad(y, x, g, create_graph=True)
            return (gx,) + (None,) * 8
        opts, geometry, kernel = ctx.kernel_args
        g = g.to(x.dtype).contiguous(memory_format=_memory_format(x))
        gx = torch.empty_like(x)
        kernel.pool_backward(x, g, where, gx, opts, geometry,
                             torch.get_num_threads())
        return (gx,) + (None,) * 8


# Fuse LRN with the max-pooling after it on CPUs (``lrn_max_pool``);
# ALEXNET_FUSE_LRN_POOL=0 keeps them apart (same numbers, slower).
FUSE_LRN_POOL = os.environ.get("ALEXNET_FUSE_LRN_POOL", "1") != "0"


def _hooked(module: nn.Module) -> bool:
    from torch.nn.modules import module as m
    own = (module._forward_hooks, module._forward_pre_hooks,
           module._backward_hooks, getattr(module, "_backward_pre_hooks", {}))
    every = (m._global_forward_hooks, m._global_forward_pre_hooks,
             m._global_backward_hooks,
             getattr(m, "_global_backward_pre_hooks", {}))
    return any(own) or any(every)


def _square(v) -> int | None:
    a, b = _pair(v)
    return a if a == b else None


def _fusable_pool(pool: nn.Module) -> tuple[int, int] | None:
    """(z, s) of a max-pooling the fused kernel computes, else None."""
    if type(pool) is not nn.MaxPool2d or pool.ceil_mode or \
            pool.return_indices:
        return None
    z, s = _square(pool.kernel_size), _square(pool.stride)
    if (z is None or s is None or _pair(pool.padding) != (0, 0)
            or _pair(pool.dilation) != (1, 1) or not 1 <= z <= 15):
        return None
    return z, s


def lrn_max_pool(lrn: nn.Module, pool: nn.Module,
                 x: torch.Tensor) -> torch.Tensor:
    """``pool(lrn(x))``: the paper's normalisation and the max-pooling
    after it (§3.3, §3.4).

    On a CPU with the compiled kernel, for float32 or bfloat16 maps and
    a pooling without padding, both run as one operation that never
    writes the LRN output to memory (forward) or its gradient (backward):
    the same numbers, bit for bit, in less time. Anywhere else, or when
    either module has hooks (which must see the LRN output), the two
    modules run one after the other.
    """
    geometry = _fusable_pool(pool)
    if (not FUSE_LRN_POOL or geometry is None
            or not isinstance(lrn, LocalResponseNorm)
            or x.device.type != "cpu" or x.dim() != 4
            or x.dtype not in (torch.float32, torch.bfloat16)
            or _compiling() or x.numel() == 0
            or min(x.shape[2:]) < geometry[0]
            or x.shape[1] % lrn.groups or _hooked(lrn) or _hooked(pool)):
        return pool(lrn(x))
    x = x.contiguous(memory_format=_memory_format(x))
    if x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return pool(lrn(x))  # a layout both ways: leave it to PyTorch
    from alexnet_lib.kernels import lrn_kernel
    kernel = lrn_kernel()
    if kernel is None:
        return pool(lrn(x))
    alpha = lrn.alpha / lrn.size if lrn.scale_by_size else lrn.alpha
    return _LRNMaxPoolC.apply(x, lrn.size, alpha, lrn.beta, lrn.k,
                              lrn.groups, *geometry, kernel)


def _kernel_layout(x, size, alpha, beta, k, groups):
    """(rows, options) of ``x`` for the C kernel: (R, C, L) with
    element (r, c, l) at r*C*L + c*L + l, C the channels of one group."""
    from alexnet_lib.kernels import lrn_opts
    b, c = x.shape[:2]
    if _memory_format(x) == torch.channels_last:
        rows, length = b * x.shape[2] * x.shape[3] * groups, 1
    else:
        rows, length = b * groups, x[0, 0].numel()
    opts = lrn_opts(c // groups, length, size, alpha, beta, k, x.dtype)
    return rows, opts


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


def local_response_norm(x: torch.Tensor, size: int = PAPER_LRN["size"],
                        alpha: float = PAPER_LRN["alpha"],
                        beta: float = PAPER_LRN["beta"],
                        k: float = PAPER_LRN["k"],
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
    normalised in float32 and returned in their own dtype. On a CPU a
    compiled C kernel (``alexnet_lib/kernels``, built on first use) or,
    without a C compiler, a blocked PyTorch kernel runs, both with a
    hand-derived backward (one or a few passes over memory instead of
    ~20); on GPUs and under ``torch.compile`` the plain formula runs
    (the compiler fuses it).
    """
    if x.dim() < 3:
        raise ValueError(f"local_response_norm expects (B, C, ...) input "
                         f"with at least 3 dims, got shape {tuple(x.shape)}")
    if size < 1 or groups < 1:
        raise ValueError(f"size and groups must be >= 1, got size={size}, "
                         f"groups={groups}")
    if x.shape[1] % groups:
        raise ValueError(f"{x.shape[1]} channels cannot be split into "
                         f"{groups} equal groups")
    scale = alpha / size if scale_by_size else alpha
    if x.device.type != "cpu" or _compiling() or x.numel() == 0:
        return _lrn_reference(x, size, scale, beta, k, groups)
    x = x.contiguous(memory_format=_memory_format(x))
    if x.dtype in (torch.float32, torch.bfloat16):
        from alexnet_lib.kernels import lrn_kernel
        kernel = lrn_kernel()
        if kernel is not None:
            return _LocalResponseNormC.apply(x, size, scale, beta, k,
                                             groups, kernel)
    return _LocalResponseNormCPU.apply(x, size, scale, beta, k, groups)


class LocalResponseNorm(nn.Module):
    """Module form of :func:`local_response_norm`. Paper: §3.3.

    ``LocalResponseNorm()`` is the paper's layer (n=5, α=1e-4, β=0.75,
    k=2, α not divided by n). It equals
    ``torch.nn.LocalResponseNorm(size, alpha * size, beta, k)``, and with
    ``scale_by_size=True`` it equals ``torch.nn.LocalResponseNorm(size,
    alpha, beta, k)`` (cuda-convnet / Caffe convention).
    """

    def __init__(self, size: int = PAPER_LRN["size"],
                 alpha: float = PAPER_LRN["alpha"],
                 beta: float = PAPER_LRN["beta"], k: float = PAPER_LRN["k"],
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
