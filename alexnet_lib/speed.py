"""Speed options for today's GPUs, and a check that each keeps results.

None of these is in the paper (a GTX 580 had none of them); each
changes how floats are computed, never the method:

* ``bf16``: autocast convolutions and matmuls to bfloat16 (8-bit
  mantissa); the logits come back as float32 for the loss.
* ``channels_last``: NHWC weights and activations, the layout tensor
  cores want; the same arithmetic.
* ``compile``: ``torch.compile`` fuses the elementwise work (ReLU, LRN,
  dropout) into fewer kernels.
* ``cudnn_benchmark``: cuDNN times its algorithms once per shape.
* ``tf32``: float32 matmuls and convolutions on tensor cores with a
  10-bit mantissa.

``SpeedConfig`` (config.py) holds them: off by default, so runs compute
as they always did; the ``imagenet`` profile sets them to ``None``, "on
for CUDA", and the ``cpu`` profile sets bf16 and channels_last to
``None``: on a CPU bf16 is on only where the CPU has bfloat16
instructions (:func:`cpu_has_native_bf16`; elsewhere bf16 is emulated
and slower than float32), and channels_last on x86-64 CPUs and where
bf16 is (:func:`cpu_prefers_channels_last`). Compiling costs minutes on
a CPU and gains little, so it stays off there.
:func:`keep_freed_memory` stops the C library from handing large freed
blocks back to the operating system, which on a CPU otherwise makes
every training step fault in its activations afresh.
:func:`check_option` compares one option with float32 eager execution
on a fixed batch, within :data:`TOLERANCES`. :func:`count_flops` counts
a model's multiply-adds, for throughput as a share of peak FLOP/s.
"""
from __future__ import annotations

import functools
import math
import os
import platform
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_lib.config import SpeedConfig

# /proc/cpuinfo flags of bfloat16 dot-product instructions: x86
# AVX512-BF16 and AMX-BF16, Arm's BF16 extension
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")

OPTIONS = ("bf16", "channels_last", "compile", "cudnn_benchmark", "tf32")
CUDA_ONLY = ("cudnn_benchmark", "tf32")  # no effect on a CPU
# Relative error ||ours - fp32|| / ||fp32|| of the logits, and of the
# loss, that each option may cause: its mantissa's rounding (bf16 2^-8,
# tf32 2^-11) grown over ~8 layers; the others only reorder sums.
TOLERANCES = {"bf16": 4e-2, "tf32": 5e-3, "channels_last": 1e-4,
              "compile": 1e-4, "cudnn_benchmark": 1e-4}


def enabled(opts: SpeedConfig) -> list[str]:
    """Names of the options that are on, e.g. for env.json."""
    return [k for k in OPTIONS if getattr(opts, k)]


def set_backend_flags(opts: SpeedConfig) -> None:
    """cuDNN autotuning and TF32: process-wide switches of torch."""
    torch.backends.cudnn.benchmark = bool(opts.cudnn_benchmark)
    torch.backends.cuda.matmul.allow_tf32 = bool(opts.tf32)
    torch.backends.cudnn.allow_tf32 = bool(opts.tf32)


def _bf16_forward(forward: Callable, device_type: str) -> Callable:
    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return out.float()  # the loss and softmax in float32
    return run


def apply_speed(model: nn.Module, opts: SpeedConfig,
                device: torch.device | str) -> nn.Module:
    """``model`` (changed in place) with ``opts`` (resolved) applied.

    The state dict keeps its keys, so checkpoints do not depend on the
    options: a run may resume with other ones. An option that is off
    leaves torch's own setting alone (torch lets cuDNN convolutions use
    TF32 unless told otherwise).
    """
    device = torch.device(device)
    opts = opts.resolve(device.type)
    if opts.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    if opts.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if opts.channels_last:
        model.to(memory_format=torch.channels_last)
    if opts.bf16:  # the instance's forward: DDP and compile call it
        model.forward = _bf16_forward(model.forward, device.type)
    if opts.compile:
        model.compile()  # in place: parameter names stay as they are
    return model


_MALLOC_STATE: dict = {}


def keep_freed_memory() -> bool:
    """Keep freed memory in the process for the next step (glibc only).

    glibc serves every block above a threshold (at most 32 MiB) with its
    own ``mmap`` and unmaps it when freed, so each training step on a
    CPU faults its large activations in afresh, a page at a time, and
    the kernel zeroes every page: measured here, about a third of a
    paper-AlexNet step in float32. ``mallopt(M_MMAP_MAX, 0)`` serves
    large blocks from the heap and ``M_TRIM_THRESHOLD`` of 1 GiB keeps
    freed ones there, so later steps reuse memory already mapped. It
    changes no number, only where memory comes from; the process keeps
    its peak memory until it exits. Returns True when applied (once per
    process); False elsewhere (macOS, Windows, musl) or when
    ``ALEXNET_MALLOC=default``.
    """
    if "applied" in _MALLOC_STATE:
        return _MALLOC_STATE["applied"]
    applied = False
    if os.environ.get("ALEXNET_MALLOC", "").lower() != "default":
        try:
            import ctypes
            libc = ctypes.CDLL(None)
            mallopt = getattr(libc, "mallopt", None)
            gnu = getattr(libc, "gnu_get_libc_version", None)
            if mallopt is not None and gnu is not None:
                m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
                applied = bool(mallopt(m_mmap_max, 0)) and bool(
                    mallopt(m_trim_threshold, 1 << 30))
        except OSError:
            applied = False
    _MALLOC_STATE["applied"] = applied
    return applied


def check_option(make_model: Callable[[], nn.Module], x: torch.Tensor,
                 y: torch.Tensor, option: str,
                 device: torch.device | str = "cpu") -> dict:
    """fp32 eager vs ``option`` alone, same weights, same batch.

    Returns the relative errors of the logits and the loss, the
    tolerance, and ``ok``. Evaluation mode: dropout would draw other
    masks once compiled. Raises ValueError for an unknown option, or
    one that needs CUDA on another device.
    """
    device = torch.device(device)
    if option not in OPTIONS:
        raise ValueError(f"unknown speed option {option!r}; choose one "
                         f"of {', '.join(OPTIONS)}")
    if option in CUDA_ONLY and device.type != "cuda":
        raise ValueError(f"{option} only changes CUDA kernels: check it "
                         f"on a CUDA device, not {device}")
    base = make_model().to(device).eval()
    fast = make_model().to(device).eval()
    fast.load_state_dict(base.state_dict())
    x, y = x.to(device), y.to(device)
    b = torch.backends
    saved = (b.cudnn.benchmark, b.cuda.matmul.allow_tf32,
             b.cudnn.allow_tf32)
    set_backend_flags(SpeedConfig())  # plain fp32 for the reference
    try:
        with torch.no_grad():
            ref = base(x).float()
            apply_speed(fast, SpeedConfig(**{option: True}), device)
            out = fast(x).float()
    finally:  # as they were: this is a check, not a setting
        (b.cudnn.benchmark, b.cuda.matmul.allow_tf32,
         b.cudnn.allow_tf32) = saved
    loss_ref, loss = F.cross_entropy(ref, y), F.cross_entropy(out, y)
    logits_err = ((out - ref).norm() / ref.norm().clamp_min(1e-12)).item()
    loss_err = ((loss - loss_ref).abs() / loss_ref.abs()).item()
    tol = TOLERANCES[option]
    return {"option": option, "device": str(device), "tolerance": tol,
            "logits_rel_err": logits_err, "loss_rel_err": loss_err,
            "ok": logits_err <= tol and loss_err <= tol}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty
    where /proc/cpuinfo does not exist (macOS, Windows)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_prefers_channels_last() -> bool:
    """True where channels_last trains faster than NCHW on this CPU.

    SpeedConfig.resolve asks this for the ``None`` setting of
    channels_last on a CPU. Measured on x86-64 in float32, with oneDNN's
    AVX-512 kernels and limited to AVX2 (benchmarks/
    bench_channels_last.py): every network of the book trained faster,
    1.02-1.7x; with bf16 channels_last is oneDNN's fast path. Not
    measured on other CPUs (Arm), so off there unless bf16 is on.
    """
    x86 = platform.machine().lower() in ("x86_64", "amd64", "x64")
    return x86 or cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware.

    SpeedConfig.resolve asks this for the ``None`` ("where it helps")
    setting of bf16 and channels_last on a CPU. Without these
    instructions oneDNN emulates bf16, slower than float32.
    """
    return bool(cpu_flags() & set(BF16_FLAGS))


def count_flops(model: nn.Module, input_size: int | None = None,
                ) -> dict:
    """FLOPs per image of the conv, locally connected and linear layers.

    One multiply-add is 2 FLOPs; a conv layer does (output elements) x
    (in_channels / groups) x kh x kw of them. Counted from one zero
    image through forward hooks, in evaluation mode. ``train`` is 3x
    ``forward``: the forward pass, the input gradient and the weight
    gradient each cost one forward's multiply-adds (conv1's input
    gradient, which training skips, included: the usual rule).
    LeNet-5's sparse C3 counts only its real connections.
    Elementwise work (ReLU, LRN, pooling, dropout) is not counted.
    Returns ``{"layers": {name: FLOPs}, "forward": ..., "train": ...}``.
    """
    from alexnet_lib.layers import LocallyConnected2d
    from alexnet_lib.models.lenet import SparseConv2d
    size = input_size or getattr(model, "input_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__} has no input_size: "
                         f"pass count_flops(model, input_size=...)")
    layers, hooks = {}, []

    def counter(name):
        def hook(m, inputs, out):
            per_image = out[0].numel()  # output elements of one image
            if isinstance(m, nn.modules.conv._ConvNd):
                fan_in = (m.in_channels // m.groups
                          * math.prod(m.kernel_size))
            elif isinstance(m, nn.Linear):
                fan_in = m.in_features
            elif isinstance(m, SparseConv2d):  # LeNet-5's C3: per map
                side2 = out[0].numel() // m.out_channels
                layers[name] = 2 * side2 * m.weight.numel()
                return
            else:  # LocallyConnected2d: (L, out, C * kh * kw) weights
                fan_in = m.weight.shape[-1]
            layers[name] = 2 * per_image * fan_in
        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear,
                          LocallyConnected2d, SparseConv2d)):
            hooks.append(m.register_forward_hook(counter(name)))
    param = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            channels = getattr(model, "in_channels", 3)  # LeNet5: 1
            model(torch.zeros(1, channels, size, size, device=param.device,
                              dtype=param.dtype))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    forward = sum(layers.values())
    return {"layers": layers, "forward": forward, "train": 3 * forward}
