"""Shared trained runs: plans, the train command line, loading."""
import json
import os

import pytest
import torch

from alexnet_lib.cli import build_parser, config_from_args, main
from alexnet_lib.config import ConfigError
from alexnet_lib.runs import (FULL_SIZE, IMAGENETTE_PLANS, ImagenettePlan,
                              centre_crops, estimate_minutes,
                              full_size_name, input_mean, is_finished,
                              load_run, load_snapshots, plan_config,
                              plan_differences, predictions,
                              run_folder, run_name, run_summary,
                              run_train_command, train_command,
                              wall_time_s, ensure_run)


def test_plans_shrink_only_the_amount_of_work():
    gpu, cpu, ci = (IMAGENETTE_PLANS[k] for k in ("gpu", "cpu", "ci"))
    assert (gpu.image_size, gpu.resize, gpu.batch_size) == (224, 256, 128)
    assert gpu.epochs == 90 and gpu.workers == 8
    assert cpu is FULL_SIZE  # the cpu profile is the full-size run
    assert ci.image_size == 112 and ci.epochs == 1
    for plan in (gpu, cpu, ci):  # the same recipe and start everywhere
        assert (plan.init, plan.bias) == ("paper", 0.1)
    with pytest.raises(ValueError, match="resize=100 must be >= "
                                         "image_size=112"):
        ImagenettePlan(image_size=112, resize=100)


def test_run_folder_is_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    assert run_folder("a") == tmp_path / "runs" / "a"
    with pytest.raises(ValueError, match="plain folder name"):
        run_folder("../x")


def test_train_command_parses_to_the_plan(tmp_path):
    plan = IMAGENETTE_PLANS["ci"]
    args = train_command(plan, tmp_path / "r", "ci", seed=3, groups=1)
    cfg = config_from_args(build_parser().parse_args(args))
    d = cfg.data
    assert (d.image_size, d.resize) == (112, 128)
    assert (d.train_subset, d.val_subset) == (160, 50)
    assert (cfg.epochs, cfg.seed, cfg.profile) == (1, 3, "ci")
    assert cfg.ten_crop and not cfg.progress
    assert cfg.model_options == {"input_size": 112, "init": "paper",
                                 "bias": 0.1, "groups": 1}
    assert cfg.optim.plateau_patience == 1 and cfg.optim.lr == 0.01


@pytest.mark.parametrize("profile", ["ci", "cpu", "gpu"])
@pytest.mark.parametrize("model, groups", [("alexnet", 2), ("alexnet", 1),
                                           ("zfnet", 1)])
def test_plan_config_is_the_train_command_without_the_round_trip(
        tmp_path, profile, model, groups):
    plan = IMAGENETTE_PLANS[profile]
    args = train_command(plan, tmp_path / "r", profile, seed=2,
                         groups=groups, model=model)
    assert plan_config(plan, tmp_path / "r", profile, seed=2,
                       groups=groups, model=model) == \
        config_from_args(build_parser().parse_args(args))


def test_plan_differences_names_what_a_cached_run_did_otherwise(tmp_path):
    import json
    plan = IMAGENETTE_PLANS["ci"]
    old = plan_config(plan, tmp_path, "ci", seed=0)
    (tmp_path / "config.json").write_text(json.dumps(old.to_dict()))
    assert plan_differences(tmp_path, old) == []
    now = plan_config(ImagenettePlan(**{**plan.__dict__, "epochs": 3}),
                      tmp_path, "ci", seed=0)
    assert plan_differences(tmp_path, now) == ["epochs: 1 -> 3"]


def test_run_names_of_the_chapters():
    # under cpu, §6 and §6.1 load the run tools/train_full_size.py trains
    assert run_name("cpu", 1) == full_size_name(1) == (
        "imagenette-alexnet-groups2-seed1-full224")
    assert run_name("cpu", 0, groups=1, epochs=10) == (
        "imagenette-alexnet-groups1-seed0-full224-10ep")
    assert run_name("ci", 0) == "imagenette-alexnet-groups2-seed0-ci"
    # §8.1's comparison: ZFNet by name, and a ci run at 224 pixels kept
    # apart from §6.1's 112-pixel one of the same seed and epochs
    assert run_name("cpu", 1, groups=1, epochs=6, model="zfnet") == (
        "imagenette-zfnet-seed1-full224-6ep")
    assert run_name("ci", 0, groups=1, epochs=1, size=224) == (
        "imagenette-alexnet-groups1-seed0-ci224-1ep")
    assert run_name("ci", 0, groups=1, epochs=1) != run_name(
        "ci", 0, groups=1, epochs=1, size=224)
    with pytest.raises(ValueError, match="model must be"):
        run_name("cpu", 0, model="vgg")
    with pytest.raises(ValueError, match="224-pixel"):
        run_name("cpu", 0, size=112)


def test_train_command_for_zfnet_keeps_its_own_init():
    plan = ImagenettePlan(image_size=224, resize=256, bias=0.1,
                          snapshot_epochs=(1,))
    zf = train_command(plan, "/runs/x", "ci", seed=0, groups=1,
                       model="zfnet")
    assert zf[zf.index("--model") + 1] == "zfnet"
    assert not any(a.startswith(("init=", "bias=", "groups="))
                   for a in zf)
    alex = train_command(plan, "/runs/x", "ci", seed=0, groups=1)
    assert "init=paper" in alex and "bias=0.1" in alex
    assert "groups=1" in alex


def test_estimate_minutes_scales_a_timed_step_to_the_plan():
    plan = ImagenettePlan(image_size=64, resize=73, train_subset=300,
                          val_subset=30)
    est = estimate_minutes(plan, epochs=2, profile="ci", batch=4, steps=1)
    assert est["device"] == "cpu" and est["images_per_s"] > 0
    images = 2 * (300 + 30 / 3)
    assert est["minutes"] == pytest.approx(
        images / est["images_per_s"] / 60)


def test_resize_smaller_than_the_patch_is_a_config_error(capsys):
    code = main(["train", "--profile", "ci", "--image-size", "112",
                 "--resize", "100"])
    assert code == 2
    assert ("data.resize (100) must be >= data.image_size (112)"
            in capsys.readouterr().err)
    from alexnet_lib.preflight import check_config  # what fit runs first
    with pytest.raises(ConfigError, match="--resize"):
        check_config(config_from_args(build_parser().parse_args(
            ["train", "--image-size", "300"])))


def test_load_run_without_checkpoint_says_what_to_do(tmp_path):
    assert not is_finished(tmp_path)
    with pytest.raises(FileNotFoundError, match="train the run first"):
        load_run(tmp_path)


def test_a_tiny_run_trains_loads_and_matches_its_loader(
        imagenette_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    plan = ImagenettePlan(image_size=64, resize=73, train_subset=20,
                          val_subset=10, epochs=1, batch_size=10,
                          snapshot_epochs=(1,))
    out = run_folder("tiny")
    text = run_train_command(train_command(plan, out, "ci", groups=1))
    assert "val top-1 error" in text
    assert is_finished(out)
    model, cfg, records = load_run(out)
    assert [r["kind"] for r in records] == ["epoch", "ten_crop"]
    assert model.groups == 1 and model.input_size == 64
    kept = load_snapshots(out)  # after epoch 1, the last: the model's
    assert list(kept) == [1] and len(kept[1]) == 10  # 5 convs, w and b
    assert torch.equal(kept[1]["conv1.weight"], model.conv1.weight)
    assert load_snapshots(tmp_path) == {}
    # the stored predictions give the run's own recorded error rates
    pred = predictions(out)
    assert pred["ten"].shape == pred["centre"].shape == (10, 10)
    assert len(pred["files"]) == 10 and len(pred["classes"]) == 10
    for key, record in (("centre", records[0]["val_top1_error"]),
                        ("ten", records[1]["top1_error"])):
        wrong = (pred[key].argmax(1) != pred["labels"]).double().mean()
        assert wrong.item() == pytest.approx(record)
    assert (out / "predictions.pt").is_file()
    again = predictions(out)  # read back from the run folder
    assert torch.equal(again["ten"], pred["ten"])
    assert again["files"] == pred["files"]
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
    # a finished run resumed once: its wall time is both segments'
    import json
    out = run_folder(full_size_name(1))
    out.mkdir(parents=True)
    (out / "checkpoint.pt").write_bytes(b"")
    (out / "env.json").write_text(json.dumps({"hardware": "test"}))
    epoch = dict(kind="epoch", step=74, lr=0.01, train_loss=1.0,
                 train_error=0.5, val_top1_error=0.4, val_top5_error=0.1,
                 images_per_s=100.0, lr_drops=0)
    rows = [dict(epoch, epoch=0, segment=1, wall_time_s=80.0),
            dict(epoch, epoch=1, segment=2, wall_time_s=90.0),
            dict(kind="ten_crop", epoch=2, step=148, top1_error=0.3,
                 top5_error=0.05, n=2000, segment=2, wall_time_s=120.0)]
    (out / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run([sys.executable, str(tool), "--data",
                           str(tmp_path), "--seed", "1", "--record"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ALEXNET_CACHE": str(tmp_path),
                               "ALEXNET_RESULTS": str(tmp_path / "r")})
    assert done.returncode == 0, done.stderr
    record = json.loads(
        (tmp_path / "r" / "full_size_imagenette_seed1.json").read_text())
    assert record["wall_time_s"] == 200.0  # 80 + 120
    assert record["details"]["segments"] == [1, 2]
    assert record["details"]["epochs"] == 2


def test_run_summary_reads_a_finished_run(tmp_path):
    import json
    epoch = dict(kind="epoch", step=74, lr=0.01, train_loss=1.0,
                 train_error=0.5, val_top5_error=0.1, lr_drops=0)
    rows = [dict(epoch, epoch=0, segment=1, wall_time_s=60.0,
                 val_top1_error=0.6, images_per_s=50.0),
            dict(epoch, epoch=1, segment=2, wall_time_s=30.0,
                 val_top1_error=0.4, images_per_s=70.0),
            dict(epoch, epoch=2, segment=2, wall_time_s=70.0,
                 val_top1_error=0.35, images_per_s=90.0)]
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="has not finished"):
        run_summary(tmp_path)
    ten = dict(kind="ten_crop", epoch=3, step=222, top1_error=0.3,
               top5_error=0.05, n=2000, segment=2, wall_time_s=100.0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps(ten) + "\n")
    s = run_summary(tmp_path)
    assert s["val"] == [0.6, 0.4, 0.35] and s["epochs"] == 3
    assert (s["top1"], s["ten1"], s["ten5"]) == (0.35, 0.3, 0.05)
    assert s["rate"] == 70.0  # the median epoch
    assert s["minutes"] == pytest.approx((60 + 100) / 60)  # two segments
    assert wall_time_s(rows + [ten]) == 160.0


def test_ensure_run_trains_once_then_loads(imagenette_dir, tmp_path,
                                           monkeypatch, capsys):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    plan = ImagenettePlan(image_size=64, resize=73, train_subset=10,
                          val_subset=10, epochs=1, batch_size=10)
    out = run_folder("once")
    command, seconds = ensure_run(plan, out, "ci", seed=2, groups=1)
    text = capsys.readouterr().out
    assert command.startswith("python -m alexnet_lib train --model alexnet")
    assert "$ALEXNET_CACHE/runs/once" in command and str(tmp_path) not in \
        command
    assert "not in the cache: training it now, about" in text
    assert seconds > 0 and is_finished(out)
    # trained from plan_config's settings, which the command means too
    stored = json.loads((out / "config.json").read_text())
    assert stored == json.loads(json.dumps(plan_config(
        plan, out, "ci", seed=2, groups=1).to_dict()))
    again = ensure_run(plan, out, "ci", seed=2, groups=1)
    assert again == (command, 0.0)
    text = capsys.readouterr().out
    assert "finished before: loading once" in text
    assert "another plan" not in text
    # the plan changed since: the cached run is used, and the note says
    # what differs and what to do
    longer = ImagenettePlan(image_size=64, resize=73, train_subset=10,
                            val_subset=10, epochs=2, batch_size=10)
    assert ensure_run(longer, out, "ci", seed=2, groups=1)[1] == 0.0
    text = capsys.readouterr().out
    assert "it was trained with another plan (epochs: 1 -> 2)" in text
    assert "delete the folder to train the current one" in text
