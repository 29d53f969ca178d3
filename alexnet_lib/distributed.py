"""Data-parallel training with torch.distributed, launched by torchrun.

``torchrun --nproc_per_node=N -m alexnet_lib train ...`` starts N copies
of the same program; each reads its RANK, WORLD_SIZE and LOCAL_RANK from
the environment. Without torchrun every helper here is a no-op, so
``fit`` is the same code on one device and on many.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from alexnet_lib.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int  # this process among all processes
    world_size: int  # number of processes
    local_rank: int  # this process on its machine (picks the GPU)
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> this process's GPU if CUDA is present, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {device!r}: use auto, cpu, "
                          f"cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} asked for but CUDA is not available; "
                f"use --device cpu or --device auto")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU).

    Returns rank 0 of 1 when not launched by torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, store=_attempt_store(
            rank, world), rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, dev)


def _attempt_store(rank: int, world: int) -> dist.Store:
    """The rendezvous store, with keys private to this torchrun attempt.

    After a restart (--max-restarts), torchrun hands the new workers the
    same store as the old ones, and the old workers' keys are still in
    it: Gloo could read a dead peer's address and fail to connect, or
    wait for it. A prefix per attempt keeps every attempt's keys apart.
    """
    store, _, _ = next(dist.rendezvous("env://", rank=rank,
                                       world_size=world))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"alexnet_lib/attempt-{attempt}", store)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (the process that writes files and shows bars)."""
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returns it.

    NCCL reduces only CUDA tensors, so a CPU tensor makes a round trip.
    """
    if not is_initialized():
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        tensor.copy_(on_gpu)
    else:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order ([obj] without torchrun)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside a DistributedDataParallel wrapper."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module
    return model


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if is_initialized():
        dist.destroy_process_group()
