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
for CUDA, off on the CPU" (bf16 is slow on most CPUs; compiling costs
minutes there and gains little).
:func:`check_option` compares one option with float32 eager execution
on a fixed batch, within :data:`TOLERANCES`.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_lib.config import SpeedConfig

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
