"""torch.distributed helpers, and 2-process DDP against 1 process."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from alexnet_lib import distributed as D
from alexnet_lib.config import ConfigError, TrainConfig, apply_profile
from alexnet_lib.evaluate import evaluate

REPO = Path(__file__).resolve().parents[1]


def test_without_torchrun_everything_is_a_no_op(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = D.init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert info.device == torch.device("cpu") and info.is_main
    assert not D.is_initialized() and D.is_main()
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum(t) is t and t.tolist() == [1.0, 2.0]
    assert D.all_gather_object({"a": 1}) == [{"a": 1}]
    D.barrier()
    D.cleanup()


def test_bad_device_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        D.resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            D.resolve_device("cuda")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_each_torchrun_attempt_sees_only_its_own_store_keys(monkeypatch):
    # torchrun keeps one store across restarts; a key an old attempt's
    # worker left (e.g. Gloo's address of a killed peer) must not reach
    # the next attempt
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = D._attempt_store(0, 1)
    first.set("address/1", "dead peer")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    second = D._attempt_store(0, 1)
    assert first.check(["address/1"])
    assert not second.check(["address/1"])
    second.set("address/1", "live peer")
    assert first.get("address/1") == b"dead peer"


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = D.init_distributed("cpu")
    total = D.all_reduce_sum(torch.tensor([rank + 1.0]))
    names = D.all_gather_object(f"rank{rank}")
    # each rank scores its own half of 8 images; counts are summed
    x = torch.eye(4).repeat(2, 1)[rank * 4:(rank + 1) * 4]  # (4, 4)
    y = torch.tensor([[0, 1, 2, 0], [3, 3, 2, 1]][rank])
    result = evaluate(nn.Identity(), [(x, y)], "cpu")
    queue.put((info.rank, info.world_size, total.item(), names, result))
    D.cleanup()


def test_two_gloo_processes_sum_counts_and_losses():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.spawn(_worker, args=(2, _free_port(), queue), nprocs=2)
    got = sorted(queue.get(timeout=30) for _ in range(2))
    single = evaluate(nn.Identity(), [(torch.eye(4).repeat(2, 1),
                                       torch.tensor([0, 1, 2, 0, 3, 3, 2,
                                                     1]))], "cpu")
    for rank, (r, world, total, names, result) in enumerate(got):
        assert (r, world, total) == (rank, 2, 3.0)
        assert names == ["rank0", "rank1"]
        assert result["n"] == 8 and result["top1_error"] == 0.5
        assert result == pytest.approx(single)


def test_torchrun_two_processes_equal_one_process(cifar_dir, tmp_path):
    """2 gloo processes x 16 images = 1 process x 32 images, per update.

    cifar_4layer has no dropout, and the loader gives rank r the r-th
    half of the same global batch, so only the order of float sums
    differs (DDP averages the two ranks' gradients).
    """
    from alexnet_lib.train import fit  # not in spawned workers: slow
    args = ["train", "--model", "cifar_4layer", "--dataset", "cifar10",
            "--profile", "ci", "--max-steps", "4", "--device", "cpu",
            "--no-resume", "--seed", "3"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    two = tmp_path / "two"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc_per_node=2", "-m", "alexnet_lib", *args, "--out",
         str(two)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "after 4 updates" in proc.stdout
    one = tmp_path / "one"
    cfg = apply_profile(TrainConfig(model="cifar_4layer"), "ci").replace(
        data__dataset="cifar10", max_steps=4, device="cpu", seed=3,
        resume=False, out_dir=str(one))
    fit(cfg)
    a = torch.load(one / "checkpoint.pt", weights_only=True)
    b = torch.load(two / "checkpoint.pt", weights_only=True)
    assert b["global_step"] == a["global_step"] == 4
    assert len(b["rng"]) == 2  # one RNG state per rank
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k],
                                   rtol=1e-5, atol=1e-6)
    moved = sum((a["model"][k] - b0).abs().sum() for k, b0 in
                _initial_weights(cfg).items())
    assert moved > 0  # the weights did change: the test compares updates
    env_two = json.loads((two / "env.json").read_text())
    assert env_two["world_size"] == 2


def _initial_weights(cfg):
    from alexnet_lib.models import create_model
    from alexnet_lib.train import seed_everything
    seed_everything(cfg.seed)  # fit seeds, then builds the model
    return create_model(cfg.model, num_classes=10).state_dict()
