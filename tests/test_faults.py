"""Fault injection: signals to the whole process group, concurrent runs,
corrupt checkpoints, a full disk and odd inputs, each run for real.

Every case asserts the message the user sees and that no history (the
checkpoints, metrics.jsonl) was lost.
"""
import json
import os
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

# ------------------------------ in-process runs on the CIFAR-10 sample

from alexnet_lib import checkpoint as ck  # noqa: E402
from alexnet_lib import cli, runlog, train  # noqa: E402
from alexnet_lib.config import TrainConfig, apply_profile  # noqa: E402
from alexnet_lib.train import fit  # noqa: E402

CIFAR = ["train", "--model", "cifar_4layer", "--dataset", "cifar10",
         "--profile", "ci", "--device", "cpu", "--epochs", "2"]


def _cfg(out, **changes):
    # ci: 256 training images, batch 32 -> 8 updates per epoch
    cfg = apply_profile(TrainConfig(model="cifar_4layer"), "ci")
    return cfg.replace(**{"data__dataset": "cifar10", "epochs": 2,
                          "device": "cpu", "out_dir": str(out),
                          **changes})


@pytest.fixture(scope="module")
def straight(cifar_dir, tmp_path_factory):
    """11 updates in one go, the reference every resumed run must equal."""
    out = tmp_path_factory.mktemp("straight")
    fit(_cfg(out, max_steps=11))
    return out


def _error(capsys, args):
    code = cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return code, err


def _rows(out):
    return runlog.read_metrics(out)

# --------------------------- 2. one run per folder; resume checks things


def test_a_second_run_on_a_live_folder_exits_2_then_takes_over(
        cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from alexnet_lib.runlog import RunLock\n"
         f"RunLock({str(out)!r}).acquire()\n"
         "print('held', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert holder.stdout.readline() == "held\n"
        code, err = _error(capsys, [*CIFAR, "--out", str(out)])
        assert code == 2
        assert err == (f"error: run folder {out} is in use by another run "
                       f"(pid {holder.pid} on {os.uname().nodename}): wait "
                       f"for it to finish, or pass another --out\n")
        assert not (out / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock went with it
    assert cli.main([*CIFAR, "--out", str(out), "--max-steps", "2"]) == 0


@pytest.mark.parametrize("flags, listed, allow", [
    (["--batch-size", "16"], "batch-size 16 (checkpoint: 32)", "mid"),
    (["--lr", "0.1"], "lr 0.1 (checkpoint: 0.01)", "lr"),
    (["--seed", "3"], "seed 3 (checkpoint: 0)", None),
    (["--train-subset", "128"], "train-subset 128 (checkpoint: 256)",
     None),
    (["--lr", "0.1", "--momentum", "0.5"],
     "lr 0.1 (checkpoint: 0.01), momentum 0.5 (checkpoint: 0.9)",
     "lr,momentum"),
])
def test_resume_with_other_settings_is_refused(straight, tmp_path, capsys,
                                               flags, listed, allow):
    out = tmp_path / "run"
    assert cli.main([*CIFAR, "--out", str(out), "--max-steps", "5"]) == 0
    capsys.readouterr()
    rows = _rows(out)
    code, err = _error(capsys, [*CIFAR, "--out", str(out), *flags])
    assert code == 2
    fix = ("use the checkpoint's values, or start a new run with "
           "--no-resume (the old run is moved to old-runs/) or another "
           "--out")
    if allow == "mid":  # the run stopped at step 5 of 8
        fix += "; the batch size can change only at an epoch's end"
    elif allow:
        fix += f"; to change them on purpose add --allow-change {allow}"
    assert err == (f"error: cannot resume from {out / 'checkpoint.pt'}: "
                   f"this run differs from it in {listed}: {fix}\n")
    assert _rows(out) == rows  # nothing written, nothing trained


def test_batch_size_change_only_at_an_epoch_end(cifar_dir, tmp_path,
                                                capsys):
    out = tmp_path / "run"
    assert cli.main([*CIFAR, "--out", str(out), "--max-steps", "5"]) == 0
    code, err = _error(capsys, [*CIFAR, "--out", str(out), "--batch-size",
                                "16", "--allow-change", "batch-size"])
    assert code == 2 and err.endswith(
        "another --out; the batch size can change only at an epoch's "
        "end\n")
    code, err = _error(capsys, [*CIFAR, "--out", str(out),
                                "--allow-change", "seed"])
    assert code == 2 and err == (
        "error: --allow-change takes lr, momentum, weight-decay, "
        "patience, data, val-data, batch-size, got seed\n")


def test_allowed_lr_change_takes_effect_and_segments_are_logged(
        cifar_dir, tmp_path):
    out = tmp_path / "run"
    first = fit(_cfg(out, max_steps=5))
    second = fit(_cfg(out, max_steps=11, optim__lr=0.001),
                 allow_changes=("lr",))
    assert second["resumed"] and second["lr"] == 0.001
    assert second["run_id"] == first["run_id"]
    assert (first["segment"], second["segment"]) == (1, 2)
    rows = _rows(out)
    assert {r["run_id"] for r in rows} == {first["run_id"]}
    assert [(r["kind"], r["segment"]) for r in rows] == [
        ("partial_epoch", 1), ("eval", 1), ("epoch", 2),
        ("partial_epoch", 2), ("eval", 2)]
    assert [r["lr"] for r in rows if "lr" in r] == [0.01, 0.001, 0.001]
    assert all(r["skipped_images"] == 0 for r in rows)

# ---------------------------------------------- 3. history is never lost


def _stop_at_5_then_11(out):
    fit(_cfg(out, max_steps=5, checkpoint_every=2))  # saves at 2, 4, 5
    return _rows(out)


def test_corrupt_checkpoint_falls_back_to_the_previous_one(
        straight, tmp_path, capsys):
    out = tmp_path / "run"
    rows = _stop_at_5_then_11(out)
    path = out / "checkpoint.pt"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    result = fit(_cfg(out, max_steps=11, checkpoint_every=2))
    err = capsys.readouterr().err
    assert "resuming from checkpoint.prev.pt at step 4" in err
    assert result["resumed"] and result["global_step"] == 11
    kept = list(out.glob("checkpoint.corrupt-*.pt"))
    assert len(kept) == 1 and kept[0].read_bytes() == data[:len(data) // 2]
    assert _rows(out)[:len(rows)] == rows  # history kept
    assert_same_weights(straight, out)


def test_deleting_the_checkpoint_resumes_from_the_previous_one(
        straight, tmp_path, capsys):
    out = tmp_path / "run"
    rows = _stop_at_5_then_11(out)
    prev = (out / "checkpoint.prev.pt").read_bytes()
    (out / "checkpoint.pt").unlink()
    result = fit(_cfg(out, max_steps=11, checkpoint_every=2))
    assert "checkpoint.pt is missing; resuming from checkpoint.prev.pt " \
           "at step 4" in capsys.readouterr().err
    assert result["resumed"] and _rows(out)[:len(rows)] == rows
    assert_same_weights(straight, out)
    assert prev != (out / "checkpoint.prev.pt").read_bytes()  # rotated on


def test_no_resume_moves_the_old_run_aside(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rows = _stop_at_5_then_11(out)
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()
             and p.name in runlog.RUN_FILES}
    assert cli.main([*CIFAR, "--out", str(out), "--no-resume",
                     "--max-steps", "1"]) == 0
    err = capsys.readouterr().err
    (old,) = (out / "old-runs").iterdir()
    assert f"the previous run's files were moved to {old}" in err
    assert {p.name: p.read_bytes() for p in old.iterdir()} == files
    assert runlog.read_metrics(old) == rows
    assert [r["step"] for r in _rows(out)] == [1, 1]  # the new run only


def test_disk_full_while_appending_metrics_keeps_the_row(
        cifar_dir, tmp_path, monkeypatch, capsys):
    real, calls = os.write, []

    def full_once(fd, data):  # the first metrics write hits ENOSPC
        if data.startswith(b"{") and not calls:
            calls.append(data)
            real(fd, data[:7])  # a torn half row, as a full disk leaves
            raise OSError(28, "No space left on device")
        return real(fd, data)
    monkeypatch.setattr(runlog.os, "write", full_once)
    out = tmp_path / "run"
    result = fit(_cfg(out, max_steps=11))
    assert calls  # the fault was injected
    assert (f"warning: cannot append to {out / 'metrics.jsonl'} (No space "
            f"left on device): 1 metrics row(s) kept") in \
        capsys.readouterr().err
    rows = _rows(out)  # every line parses: no torn row
    assert [r["kind"] for r in rows] == ["epoch", "partial_epoch", "eval"]
    assert rows == [json.loads(json.dumps(r)) for r in
                    [runlog._json_safe(h) for h in result["history"]]]

# ----------------------------------------- 5. leftovers, full disk, time


def test_stale_temporaries_are_removed_at_start(cifar_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".checkpoint.pt.abc123.tmp", out / "checkpoint.prev.pt.tmp",
             out / "config.json.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 100)
    keep = out / "notes.tmp"
    keep.write_text("mine")
    fit(_cfg(out, max_steps=1))
    assert not any(p.exists() for p in stale) and keep.exists()


def test_disk_full_at_checkpoint_says_so_and_keeps_the_last_good_one(
        cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert cli.main([*CIFAR, "--out", str(out), "--max-steps", "2"]) == 0
    good = (out / "checkpoint.pt").read_bytes()
    real = torch.save

    def full(obj, f, *a, **k):  # what torch.save does on ENOSPC
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] "
                               ". unexpected pos 704 vs 598")
    monkeypatch.setattr(ck.torch, "save", full)
    code, err = _error(capsys, [*CIFAR, "--out", str(out), "--max-steps",
                                "4", "--checkpoint-every", "1"])
    monkeypatch.setattr(ck.torch, "save", real)
    assert code == 2 and err == (
        f"error: no space left on the device holding {out} while writing "
        f"checkpoint checkpoint.pt: free some space (or pass another "
        f"--out) and run the same command again; the last good "
        f"checkpoint was kept\n")
    assert (out / "checkpoint.pt").read_bytes() == good
    assert not list(out.glob("*.tmp"))


def test_timed_checkpoints_land_mid_epoch_and_change_nothing(
        straight, tmp_path, monkeypatch):
    saves = []
    real = train._save
    monkeypatch.setattr(train, "CHECKPOINT_MINUTES", 0.0)  # every update
    monkeypatch.setattr(train, "_save", lambda *a: saves.append(a[5:7])
                        or real(*a))
    fit(_cfg(tmp_path, max_steps=11))
    assert saves == [(0, s) for s in range(1, 8)] + [(1, 0)] + [
        (1, s) for s in (1, 2, 3)]
    assert_same_weights(straight, tmp_path)

# ------------------------ 6. bad values: one line, exit 2, before any data


def _no_data(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("data were loaded")
    monkeypatch.setattr(train, "build_loaders", boom)


@pytest.mark.parametrize("flags, message", [
    (["--workers", "-1"], "data.num_workers must be >= 0 (0 loads in the "
     "main process), got -1 (--workers)"),
    (["--train-subset", "0"], "data.train_subset must be >= 1 image, got 0 "
     "(--train-subset; leave it out for the whole set)"),
    (["--val-subset", "-5"], "data.val_subset must be >= 1 image, got -5 "
     "(--val-subset; leave it out for the whole set)"),
    (["--image-size", "0"], "data.image_size must be >= 1 pixel (paper: "
     "224), got 0 (--image-size)"),
    (["--dataset", "imagenet", "--resize", "-3", "--image-size", "-4"],
     "data.image_size must be >= 1 pixel (paper: 224), got -4 "
     "(--image-size)"),
    (["--seed", "-1"], "seed must be in 0..4294967295, got -1 (--seed)"),
    (["--seed", "4294967296"], "seed must be in 0..4294967295, got "
     "4294967296 (--seed)"),
    (["--lr", "inf"], "optim.lr must be a finite number (paper §5: 0.01), "
     "got inf (--lr)"),
    (["--weight-decay", "inf"], "optim.weight_decay must be a finite "
     "number (paper: 5e-4), got inf (--weight-decay)"),
    (["--ten-crop"], "ten-crop testing needs patches smaller than the "
     "32x32 CIFAR images: add --image-size 24 (cuda-convnet's CIFAR "
     "nets) or drop --ten-crop"),
    (["--resize", "40"], "--resize only apply to --dataset imagenet, not "
     "cifar10: leave them out"),
    (["--decode", "batched", "--data-format", "folder"],
     "--decode, --data-format only apply to --dataset imagenet, not "
     "cifar10: leave them out"),
])
def test_bad_values_exit_2_before_any_data(monkeypatch, capsys, tmp_path,
                                           flags, message):
    _no_data(monkeypatch)
    code, err = _error(capsys, [*CIFAR, "--out", str(tmp_path / "r"),
                                *flags])
    assert code == 2 and err == f"error: {message}\n"


def test_unusable_run_and_cache_folders_exit_2_before_any_data(
        monkeypatch, capsys, tmp_path):
    _no_data(monkeypatch)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, err = _error(capsys, [*CIFAR, "--out", str(a_file)])
    assert code == 2 and err == (f"error: --out {a_file} is a file, not a "
                                 f"folder: pass --out with a folder for "
                                 f"the run\n")
    under = a_file / "run"
    code, err = _error(capsys, [*CIFAR, "--out", str(under)])
    assert code == 2 and err == (f"error: cannot write to the run folder "
                                 f"{under} (a file is in the way): pass "
                                 f"--out with a writable folder\n")
    real_open = os.open

    def read_only(path, flags, *a):  # a read-only mount (we run as root)
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(30, "Read-only file system")
        return real_open(path, flags, *a)
    monkeypatch.setattr(os, "open", read_only)
    (tmp_path / "ro").mkdir()
    code, err = _error(capsys, [*CIFAR, "--out", str(tmp_path / "ro")])
    assert code == 2 and err == (f"error: cannot write to the run folder "
                                 f"{tmp_path / 'ro'} (Read-only file "
                                 f"system): pass --out with a writable "
                                 f"folder\n")
    monkeypatch.setenv("ALEXNET_CACHE", str(a_file / "cache"))
    code, err = _error(capsys, [*CIFAR, "--out", str(tmp_path / "ok")])
    assert code == 2 and err == (f"error: cannot write to the cache folder "
                                 f"{a_file / 'cache'} (a file is in the "
                                 f"way): set ALEXNET_CACHE to a writable "
                                 f"folder\n")

# ------------------------------------------- 4. one odd file, any decoder


def _odd_folder(images, tmp_path):
    import shutil
    root = tmp_path / "odd"
    shutil.copytree(images, root)
    return root


def _bomb(path: Path) -> None:
    """A real 8x8 JPEG whose frame header claims 20000 x 20000 pixels."""
    Image.new("RGB", (8, 8), (90, 20, 200)).save(path, "JPEG")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (20000).to_bytes(2, "big") * 2  # height, width
    path.write_bytes(bytes(data))


def _stop_message(path, reason):
    return (f"error: corrupt or unreadable image {path}: {reason}. Replace "
            f"the file (re-download or re-extract it), or pass "
            f"--on-corrupt skip (data.on_corrupt='skip') to skip it and "
            f"count it.\n")


BOMB = ("its header declares 20000 x 20000 pixels, over the limit of "
        "178,956,970 (a decompression bomb?)")


@pytest.mark.parametrize("decode", ["pil", "batched"])
def test_zero_byte_image_is_skipped_by_the_batched_decoder(
        images, tmp_path, capsys, decode):
    root = _odd_folder(images, tmp_path)
    bad = root / "train" / "n00000000" / "0.JPEG"
    bad.write_bytes(b"")
    with pytest.warns(UserWarning) as caught:
        code = cli.main(image_args(root, tmp_path / "run", "--decode",
                                   decode))
    assert code == 0
    assert "1 unreadable images skipped" in capsys.readouterr().out
    skips = [str(w.message) for w in caught if "skipping" in str(w.message)]
    assert skips == [f"skipping corrupt image {bad} (the file is empty); "
                     f"using the next image instead"]
    code, err = _error(capsys, image_args(
        root, tmp_path / "stop", "--decode", decode, "--on-corrupt",
        "stop"))
    assert code == 2 and err == _stop_message(bad, "the file is empty")


def test_non_utf8_file_name_is_read(images, tmp_path, capsys):
    root = _odd_folder(images, tmp_path)
    folder = bytes(root / "train" / "n00000000")
    os.rename(folder + b"/1.JPEG", folder + b"/\xff\xfe.JPEG")
    assert cli.main(image_args(root, tmp_path / "run")) == 0
    assert cli.main(image_args(root, tmp_path / "batched", "--decode",
                               "batched")) == 0
    assert "0 unreadable images skipped" in capsys.readouterr().out


@pytest.mark.parametrize("decode", ["pil", "batched"])
def test_garbage_and_bombs_are_named_and_skipped(images, tmp_path,
                                                 capsys, decode):
    root = _odd_folder(images, tmp_path)
    garbage = root / "train" / "n00000000" / "2.JPEG"
    garbage.write_bytes(b"not an image at all" * 50)
    bomb = root / "train" / "n00000001" / "3.JPEG"
    _bomb(bomb)
    with pytest.warns(UserWarning) as caught:
        code = cli.main(image_args(root, tmp_path / "run", "--decode",
                                   decode))
    assert code == 0
    assert "2 unreadable images skipped" in capsys.readouterr().out
    skips = sorted(str(w.message) for w in caught
                   if "skipping" in str(w.message))
    assert skips == [
        f"skipping corrupt image {garbage} (not an image format that "
        f"torchvision or PIL can read); using the next image instead",
        f"skipping corrupt image {bomb} ({BOMB}); using the next image "
        f"instead"]
    garbage.unlink()
    code, err = _error(capsys, image_args(
        root, tmp_path / "stop", "--decode", decode, "--on-corrupt",
        "stop"))
    assert code == 2 and err == _stop_message(bomb, BOMB)


def test_skips_in_data_loading_workers_reach_the_summary(images, tmp_path,
                                                          capsys):
    root = _odd_folder(images, tmp_path)
    bad = root / "train" / "n00000001" / "5.JPEG"
    bad.write_bytes(b"")
    out = tmp_path / "run"
    assert cli.main(image_args(root, out, "--workers", "2")) == 0
    assert "1 unreadable images skipped" in capsys.readouterr().out
    assert [r["skipped_images"] for r in _rows(out)] == [1]
    # stop: the worker's error reaches the user as the same one line
    code, err = _error(capsys, image_args(
        root, tmp_path / "stop", "--workers", "2", "--on-corrupt", "stop"))
    assert code == 2 and err == _stop_message(bad, "the file is empty")
