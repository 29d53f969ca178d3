"""torchrun --max-restarts: a killed worker costs time, not results.

Also: a checkpoint written by 1 process resumes under 2, and one written
by 2 resumes under 1, with the same global batch (the sampler hands
rank r the r-th part of the same global batches, see data/sampler.py).
"""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from alexnet_lib.config import TrainConfig, apply_profile
from alexnet_lib.train import fit

REPO = Path(__file__).resolve().parents[1]

# Rank 1 kills itself (SIGKILL: no clean-up at all) while it draws
# global batch KILL_AT, on torchrun's first attempt only; torchrun sets
# TORCHELASTIC_RESTART_COUNT to 0, 1, ... on each attempt.
DRIVER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from alexnet_lib import cli, train
    KILL_AT = int(os.environ.get("KILL_AT", "0"))
    attempt = os.environ["TORCHELASTIC_RESTART_COUNT"]
    rank = os.environ["RANK"]
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"attempt{attempt}-rank{rank}").touch()
    real = train.build_loaders

    class Hooked:
        def __init__(self, loader):
            self.loader, self.step = loader, 0
        def set_epoch(self, epoch, start_step=0):
            self.loader.set_epoch(epoch, start_step)
            self.step = epoch * len(self.loader) + start_step
        def __len__(self):
            return len(self.loader)
        def __iter__(self):
            for batch in self.loader:
                self.step += 1
                if (self.step == KILL_AT and rank == "1"
                        and attempt == "0"):
                    (out / f"killed-at-{self.step}").touch()
                    os.kill(os.getpid(), signal.SIGKILL)
                yield batch

    def build_loaders(*args, **kwargs):
        train_loader, val_loader, info = real(*args, **kwargs)
        return Hooked(train_loader), val_loader, info

    train.build_loaders = build_loaders
    sys.exit(cli.main(sys.argv[1:]))
""")


def _cfg(out, **changes):
    # ci: 256 CIFAR training images, batch 32 -> 8 updates per epoch;
    # cifar_4layer has no dropout, so 1 and 2 processes differ only in
    # the order of float sums
    cfg = apply_profile(TrainConfig(model="cifar_4layer"), "ci")
    return cfg.replace(**{"data__dataset": "cifar10", "device": "cpu",
                          "out_dir": str(out), "seed": 5, **changes})


def _torchrun(tmp_path, out, kill_at, start):
    """torchrun 2 workers from the checkpoint ``start`` into ``out``."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
               KILL_AT=str(kill_at))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node=2", "--max-restarts=1",
           str(script), "train", "--model", "cifar_4layer", "--dataset",
           "cifar10", "--profile", "ci", "--device", "cpu", "--seed", "5",
           "--max-steps", "6", "--checkpoint-every", "2", "--out", str(out)]
    out.mkdir()
    shutil.copy(start, out / "checkpoint.pt")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        _, stderr = proc.communicate()
        pytest.fail("torchrun hung (a restart that cannot rendezvous: "
                    "see distributed._attempt_store):\n" + stderr[-3000:])
    assert proc.returncode == 0, stderr[-3000:]


def _weights(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def _close(a, b):
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_killed_worker_restarts_and_ends_with_the_same_weights(
        cifar_dir, tmp_path):
    # 1 process trains 2 updates; both torchrun runs resume from that
    one = tmp_path / "one"
    fit(_cfg(one, max_steps=2))
    start = tmp_path / "start.pt"
    shutil.copy(one / "checkpoint.pt", start)
    _torchrun(tmp_path, tmp_path / "plain", kill_at=0, start=start)
    _torchrun(tmp_path, tmp_path / "killed", kill_at=5, start=start)
    killed = tmp_path / "killed"
    # rank 1 died at update 5 on the first attempt; torchrun restarted
    # both workers, which resumed from the checkpoint of update 4
    assert (killed / "killed-at-5").exists()
    assert {p.name for p in killed.glob("attempt*")} == {
        "attempt0-rank0", "attempt0-rank1", "attempt1-rank0",
        "attempt1-rank1"}
    assert not list((tmp_path / "plain").glob("attempt1-*"))
    plain, again = _weights(tmp_path / "plain"), _weights(killed)
    assert again["global_step"] == plain["global_step"] == 6
    assert len(again["rng"]) == 2  # written by 2 processes
    for k in plain["model"]:  # same processes, same sums: bitwise
        assert torch.equal(again["model"][k], plain["model"][k]), k
    # 1 -> 2 processes: equal to 1 process throughout, up to float sums
    fit(_cfg(one, max_steps=6))
    _close(_weights(one), plain)
    # 2 -> 1 process: the killed run's checkpoint resumes in 1 process
    fit(_cfg(killed, max_steps=8))
    fit(_cfg(one, max_steps=8))
    b = _weights(killed)
    assert (b["global_step"], b["epoch"], b["step_in_epoch"]) == (8, 1, 0)
    _close(_weights(one), b)
