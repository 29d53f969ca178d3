"""SIGTERM/SIGINT end a run cleanly; resuming gives the same weights."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from alexnet_lib import signals, train
from alexnet_lib.config import TrainConfig, apply_profile
from alexnet_lib.train import fit

REPO = Path(__file__).resolve().parents[1]

# A CLI run whose training loader sends the process a real SIGTERM
# while it hands out global batch KILL_AT (counted from 1), so the test
# knows exactly which update the signal lands in.
DRIVER = textwrap.dedent("""
    import os, signal, sys
    from alexnet_lib import cli, train
    KILL_AT = int(os.environ["KILL_AT"])
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
                if self.step == KILL_AT:
                    os.kill(os.getpid(), signal.SIGTERM)
                yield batch

    def build_loaders(*args, **kwargs):
        train_loader, val_loader, info = real(*args, **kwargs)
        return Hooked(train_loader), val_loader, info

    train.build_loaders = build_loaders
    sys.exit(cli.main(sys.argv[1:]))
""")


def _cfg(out, **changes):
    # ci: 256 CIFAR training images, batch 32 -> 8 updates per epoch
    cfg = apply_profile(TrainConfig(model="cifar_4layer"), "ci")
    return cfg.replace(**{"data__dataset": "cifar10", "epochs": 2,
                          "device": "cpu", "out_dir": str(out),
                          **changes})


def _model(out):
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_sigterm_saves_exits_143_and_resume_matches(cifar_dir, tmp_path):
    straight = fit(_cfg(tmp_path / "straight", max_steps=11))
    assert straight["stopped"] == "max_steps" and straight["signal"] is None
    out = tmp_path / "stopped"
    # same thread count as this process: float sums must match bitwise
    env = dict(os.environ, PYTHONPATH=str(REPO), KILL_AT="5",
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, "train", "--model", "cifar_4layer",
         "--dataset", "cifar10", "--profile", "ci", "--epochs", "2",
         "--max-steps", "11", "--checkpoint-every", "3", "--device",
         "cpu", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM == 143, proc.stderr
    assert "received SIGTERM: stopping after this update" in proc.stderr
    assert (f"stopped by SIGTERM after 5 updates; checkpoint saved to "
            f"{out / 'checkpoint.pt'}: run the same command again to "
            f"resume") in proc.stderr
    ckpt = _model(out)  # the update the signal arrived in was finished
    assert (ckpt["epoch"], ckpt["step_in_epoch"],
            ckpt["global_step"]) == (0, 5, 5)
    resumed = fit(_cfg(out, max_steps=11, checkpoint_every=3))
    assert resumed["resumed"] and resumed["global_step"] == 11
    a, b = _model(tmp_path / "straight"), _model(out)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the interrupted epoch reports the loss and error of all its
    # updates, as the straight run does, not only of those after resuming
    from alexnet_lib.runlog import read_metrics
    first = [[(r["train_loss"], r["train_error"]) for r in read_metrics(o)
              if r["kind"] == "epoch"] for o in (tmp_path / "straight", out)]
    assert first[0] and first[0] == first[1]


def test_fit_stops_between_updates_in_process(cifar_dir, tmp_path,
                                              monkeypatch):
    real = train.build_loaders

    class SignalAt:  # raises SIGTERM while batch 3 of epoch 1 is drawn
        def __init__(self, loader):
            self.loader = loader

        def __getattr__(self, name):
            return getattr(self.loader, name)

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for i, batch in enumerate(self.loader):
                if self.loader.epoch == 1 and \
                        self.loader.start_step + i == 2:
                    signal.raise_signal(signal.SIGTERM)
                yield batch

    def hooked(*args, **kwargs):
        tl, vl, info = real(*args, **kwargs)
        return SignalAt(tl), vl, info

    monkeypatch.setattr(train, "build_loaders", hooked)
    before = signal.getsignal(signal.SIGTERM)
    result = fit(_cfg(tmp_path, checkpoint_every=0, ten_crop=True,
                      data__image_size=24,
                      model_options={"input_size": 24}))
    assert signal.getsignal(signal.SIGTERM) is before  # restored
    assert (result["stopped"], result["signal"]) == ("signal", "SIGTERM")
    # epoch 0 (8 updates) and 3 updates of epoch 1; no final evaluation
    assert result["global_step"] == 11 and result["ten_crop"] is None
    # the stopped weights were not validated (that costs time the
    # signal's sender may not give); epoch 0's end was
    assert result["val_top1_error"] is None
    assert result["history"][0]["val_top1_error"] is not None
    ckpt = _model(tmp_path)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 3)
    kinds = [r["kind"] for r in result["history"]]
    assert kinds == ["epoch", "partial_epoch"]


def test_stop_on_restores_handlers_and_second_ctrl_c_aborts():
    before = signal.getsignal(signal.SIGINT)
    with signals.stop_on(signal.SIGINT, signal.SIGTERM) as stop:
        with signals.stop_on(signal.SIGTERM):  # fit inside the CLI
            assert stop.signum is None and not stop.agreed()
            signal.raise_signal(signal.SIGINT)
            assert stop.name == "SIGINT" and stop.agreed()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)  # the outer handler again
        assert stop.signum == signal.SIGINT  # the first signal is kept
    assert signal.getsignal(signal.SIGINT) is before
    with signals.stop_on(signal.SIGTERM) as stop:
        assert stop.signum is None  # a new run starts unsignalled


def test_until_stopped_ends_the_batches_once_signalled():
    flag = signals.StopFlag()
    seen = []
    for batch in signals.until_stopped(range(10), flag):
        seen.append(batch)
        if batch == 3:
            flag.set(signal.SIGTERM)
    assert seen == [0, 1, 2, 3] and flag.stopped
