"""Shared trained runs: plans, the train command line, loading."""
import os

import pytest
import torch

from alexnet_lib.cli import build_parser, config_from_args, main
from alexnet_lib.config import ConfigError
from alexnet_lib.runs import (IMAGENETTE_PLANS, ImagenettePlan,
                              centre_crops, input_mean, is_finished,
                              load_run, run_folder, run_train_command,
                              train_command)


def test_plans_shrink_only_the_amount_of_work():
    gpu = IMAGENETTE_PLANS["gpu"]
    assert (gpu.image_size, gpu.resize, gpu.batch_size) == (224, 256, 128)
    assert gpu.train_subset is None and gpu.epochs == 90
    for name in ("ci", "cpu"):
        assert IMAGENETTE_PLANS[name].image_size == 112
    with pytest.raises(ValueError, match="resize=100 must be >= "
                                         "image_size=112"):
        ImagenettePlan(image_size=112, resize=100)


def test_run_folder_is_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    assert run_folder("a") == tmp_path / "runs" / "a"
    with pytest.raises(ValueError, match="plain folder name"):
        run_folder("../x")


def test_train_command_parses_to_the_plan(tmp_path):
    plan = IMAGENETTE_PLANS["cpu"]
    args = train_command(plan, tmp_path / "r", "cpu", seed=3, groups=1)
    cfg = config_from_args(build_parser().parse_args(args))
    d = cfg.data
    assert (d.image_size, d.resize) == (112, 128)
    assert (d.train_subset, d.val_subset) == (9469, 2000)
    assert (cfg.epochs, cfg.seed, cfg.profile) == (6, 3, "cpu")
    assert cfg.ten_crop and not cfg.progress
    assert cfg.model_options == {"input_size": 112, "init": "torch",
                                 "groups": 1}
    assert cfg.optim.plateau_patience == 1 and cfg.optim.lr == 0.01


def test_resize_smaller_than_the_patch_is_a_config_error(capsys):
    code = main(["train", "--profile", "ci", "--image-size", "112",
                 "--resize", "100"])
    assert code == 2
    assert ("data.resize (100) must be >= data.image_size (112)"
            in capsys.readouterr().err)
    with pytest.raises(ConfigError, match="--resize"):
        config_from_args(build_parser().parse_args(
            ["train", "--image-size", "300"]))


def test_load_run_without_checkpoint_says_what_to_do(tmp_path):
    assert not is_finished(tmp_path)
    with pytest.raises(FileNotFoundError, match="train the run first"):
        load_run(tmp_path)


def test_a_tiny_run_trains_loads_and_matches_its_loader(
        imagenette_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    plan = ImagenettePlan(image_size=64, resize=73, train_subset=20,
                          val_subset=10, epochs=1, batch_size=10)
    out = run_folder("tiny")
    text = run_train_command(train_command(plan, out, "ci", groups=1))
    assert "val top-1 error" in text
    assert is_finished(out)
    model, cfg, records = load_run(out)
    assert [r["kind"] for r in records] == ["epoch", "ten_crop"]
    assert model.groups == 1 and model.input_size == 64
    images, labels, classes = centre_crops(cfg, "val", 10)
    assert images.shape == (10, 3, 64, 64) and images.dtype == torch.uint8
    assert labels.tolist() == list(range(10)) and len(classes) == 10
    assert input_mean(cfg).shape == (3, 64, 64)
    x = images.float() - input_mean(cfg)
    with torch.no_grad():
        errors = (model(x).argmax(1) != labels).double().mean().item()
    assert errors == pytest.approx(records[0]["val_top1_error"])
    with pytest.raises(RuntimeError, match="exited with status 2"):
        run_train_command(["train", "--profile", "nope"])


def test_full_size_plan_is_the_paper_network_at_224(tmp_path, monkeypatch,
                                                    capsys):
    # the §6 run: 224 of 256, every image, the cpu profile (bf16 where
    # the CPU has it), biases 0.1, snapshots; the tool prints its command
    import subprocess
    import sys
    from pathlib import Path
    from alexnet_lib.runs import FULL_SIZE, full_size_name
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    args = train_command(FULL_SIZE, run_folder(full_size_name(1)), "cpu",
                         seed=1)
    cfg = config_from_args(build_parser().parse_args(
        args + ["--data", str(tmp_path)]))
    d = cfg.data
    assert (d.image_size, d.resize) == (224, 256)
    assert (d.train_subset, d.val_subset) == (9469, 3925)
    assert cfg.model_options == {"input_size": 224, "init": "paper",
                                 "bias": 0.1}
    assert cfg.snapshot_epochs == (1, 2, 3, 5, 10, 20, 30)
    assert cfg.profile == "cpu" and cfg.ten_crop and cfg.seed == 1
    assert cfg.out_dir.endswith("imagenette-alexnet-groups2-seed1-full224")
    tool = Path(__file__).resolve().parents[1] / "tools" / \
        "train_full_size.py"
    done = subprocess.run([sys.executable, str(tool), "--data",
                           str(tmp_path), "--seed", "1", "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["-m", "alexnet_lib", *args, "--data",
                                   str(tmp_path)]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
    # --record of a run that has not finished: one line, exit 2
    done = subprocess.run([sys.executable, str(tool), "--data",
                           str(tmp_path), "--seed", "1", "--record"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ALEXNET_CACHE": str(tmp_path),
                               "ALEXNET_RESULTS": str(tmp_path / "r")})
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: the run in ")
    assert "has not finished; run this command without --record" in \
        done.stderr
    assert not (tmp_path / "r").exists()
