"""Fault injection: signals to the whole process group, concurrent runs,
corrupt checkpoints, a full disk and odd inputs, each run for real.

Every case asserts the message the user sees and that no history (the
checkpoints, metrics.jsonl) was lost.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# A CLI run whose training loader has another process send SIGTERM to
# the run's whole process group (as Slurm, `timeout` and torchrun do)
# while it hands out global batch KILL_AT, so the data-loading workers
# get it too, from a process that is not their parent.
DRIVER = textwrap.dedent("""
    import os, signal, subprocess, sys
    from alexnet_lib import cli, train
    KILL_AT = int(os.environ.get("KILL_AT", "0"))
    real = train.build_loaders

    class Hooked:
        def __init__(self, loader):
            self.loader, self.step = loader, 0
        def set_epoch(self, epoch, start_step=0):
            self.loader.set_epoch(epoch, start_step)
            self.step = epoch * len(self.loader) + start_step
        def __len__(self):
            return len(self.loader)
        def __iter__(self):  # iter() now, as the real loaders do
            return self._hooked(iter(self.loader))
        def _hooked(self, batches):
            for batch in batches:
                self.step += 1
                if self.step == KILL_AT:
                    subprocess.run([sys.executable, "-c",
                                    "import os, signal; os.killpg("
                                    f"{os.getpgid(0)}, signal.SIGTERM)"])
                yield batch

    def build_loaders(*args, **kwargs):
        train_loader, val_loader, info = real(*args, **kwargs)
        return Hooked(train_loader), val_loader, info

    train.build_loaders = build_loaders
    sys.exit(cli.main(sys.argv[1:]))
""")


def make_image_folder(root: Path, classes: int = 2, train: int = 24,
                      val: int = 4, size: int = 40) -> Path:
    """A tiny ImageNet-format folder of random JPEGs."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.JPEG")
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("images"))


def image_args(images, out, *extra):
    # 48 images, batch 8 -> 6 updates per epoch
    return ["train", "--model", "cifar_4layer", "--dataset", "imagenet",
            "--data", str(images), "--profile", "ci", "--image-size", "32",
            "--resize", "36", "--batch-size", "8", "--device", "cpu",
            "--out", str(out), *extra]


def run_cli(args, kill_at=0, timeout=300):
    """The CLI in a fresh session (its own process group)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), KILL_AT=str(kill_at),
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    return subprocess.run([sys.executable, "-c", DRIVER, *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          start_new_session=True)


def weights(out):
    ckpt = torch.load(Path(out) / "checkpoint.pt", weights_only=True)
    return ckpt


def assert_same_weights(a, b):
    a, b = weights(a), weights(b)
    assert a["global_step"] == b["global_step"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["optimizer"]["state"]:
        assert torch.equal(a["optimizer"]["state"][k]["velocity"],
                           b["optimizer"]["state"][k]["velocity"])

# ------------------------------------------ 1. preemption with workers


def test_group_sigterm_with_workers_saves_and_resumes_exactly(
        images, tmp_path):
    common = ["--epochs", "2", "--workers", "2", "--checkpoint-every", "4"]
    straight = run_cli(image_args(images, tmp_path / "straight", *common))
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "stopped"
    stopped = run_cli(image_args(images, out, *common), kill_at=3)
    assert stopped.returncode == 143, stopped.stderr
    assert "killed by signal" not in stopped.stderr
    assert (f"stopped by SIGTERM after 3 updates; checkpoint saved to "
            f"{out / 'checkpoint.pt'}: run the same command again to "
            f"resume") in stopped.stderr
    ckpt = weights(out)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (0, 3)
    again = run_cli(image_args(images, out, *common))
    assert again.returncode == 0, again.stderr
    assert_same_weights(tmp_path / "straight", out)
