"""Error rates, the training loop, exact resume and divergence."""
import json
import math
import shutil

import pytest
import torch
from torch import nn

from alexnet_lib import runlog, train
from alexnet_lib.checkpoint import ArchitectureMismatchError
from alexnet_lib.config import ConfigError, TrainConfig, apply_profile
from alexnet_lib.evaluate import evaluate, topk_errors
from alexnet_lib.models import create_model
from alexnet_lib.train import TrainingDivergedError, fit

# --------------------------------------------------------------- evaluate


def test_topk_errors_on_hand_made_logits():
    logits = torch.tensor([
        [9., 8, 7, 6, 5, 4],  # label 0: top-1 hit
        [9., 8, 7, 6, 5, 4],  # label 4: top-5 hit, top-1 miss
        [9., 8, 7, 6, 5, 4],  # label 5: 6th best, misses both
        [0., 0, 0, 1, 0, 0],  # label 3: top-1 hit
    ])
    y = torch.tensor([0, 4, 5, 3])
    assert topk_errors(logits, y, ks=(1, 5)) == {1: 0.5, 5: 0.25}
    assert topk_errors(logits, y, ks=(2,)) == {2: 0.5}
    # fewer classes than k: every label is in the "top 10"
    assert topk_errors(logits, y, ks=(10,)) == {10: 0.0}


def test_evaluate_returns_error_rates_loss_and_count():
    logits = torch.tensor([[2., 1, 0], [0., 2, 1], [1., 0, 2], [0., 1, 2]])
    y = torch.tensor([0, 2, 1, 2])
    loader = [(logits[:2], y[:2]), (logits[2:], y[2:])]
    model = nn.Identity()
    model.train()
    out = evaluate(model, loader, "cpu")
    assert out["n"] == 4
    assert out["top1_error"] == pytest.approx(0.5)  # rows 1 and 2 miss
    assert out["top5_error"] == 0.0
    expected = nn.functional.cross_entropy(logits, y).item()
    assert out["loss"] == pytest.approx(expected)
    assert model.training  # the mode it had is given back


def test_ten_crop_averages_the_softmax_not_the_logits():
    # one image, ten patches, three classes: nine patches lean to class 1,
    # one is very sure of class 0. Mean logits pick 0, mean softmax 1.
    patches = torch.tensor([[0., 1, 0]] * 9 + [[10., 0, 0]])  # (10, 3)
    x = patches.view(1, 10, 3, 1, 1)  # (B, 10, C=3, S=1, S=1)
    y = torch.tensor([1])
    model = nn.Flatten()  # (B*10, 3, 1, 1) -> (B*10, 3) logits
    assert patches.mean(0).argmax() == 0
    probs = patches.softmax(1).mean(0)
    assert probs.argmax() == 1
    out = evaluate(model, [(x, y)], "cpu", ten_crop=True)
    assert out["top1_error"] == 0.0 and out["n"] == 1
    assert out["loss"] == pytest.approx(-probs[1].log().item())
    with pytest.raises(ValueError, match=r"\(B, 10, 3, S, S\)"):
        evaluate(model, [(patches, y)], "cpu", ten_crop=True)

# --------------------------------------------------- fit on real CIFAR-10


def _cfg(out, **changes):
    cfg = apply_profile(TrainConfig(model="cifar_4layer"), "ci")
    # ci: 256 training images, batch 32 -> 8 updates per epoch
    changes = {"data__dataset": "cifar10", "epochs": 2, "device": "cpu",
               "out_dir": str(out), **changes}
    return cfg.replace(**changes)


def _weights(out):
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    return ckpt["model"], ckpt["optimizer"]["state"]


@pytest.fixture(scope="module")
def straight(cifar_dir, tmp_path_factory):
    """11 updates in one go: a whole epoch (validated) and 3 more."""
    out = tmp_path_factory.mktemp("straight")
    return out, fit(_cfg(out, max_steps=11))


def test_resume_is_bitwise_exact(straight, tmp_path):
    out, _ = straight
    first = fit(_cfg(tmp_path, max_steps=5))  # stops mid-epoch 0
    assert (first["stopped"], first["global_step"]) == ("max_steps", 5)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (0, 5)
    # resumes at epoch 0, batch 5; saves mid-epoch every 3 updates too
    second = fit(_cfg(tmp_path, max_steps=11, checkpoint_every=3))
    assert second["resumed"] and second["global_step"] == 11
    (a, va), (b, vb) = _weights(out), _weights(tmp_path)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for k in va:
        assert torch.equal(va[k]["velocity"], vb[k]["velocity"])
    ref = [(r["kind"], r["step"], r["val_top1_error"])
           for r in runlog.read_metrics(out) if "val_top1_error" in r]
    got = [(r["kind"], r["step"], r["val_top1_error"])
           for r in runlog.read_metrics(tmp_path)
           if "val_top1_error" in r]
    # run 1 validated its last weights at step 5; then the same
    # validations as the straight run (after epoch 0, at step 11)
    assert got[0][:2] == ("eval", 5) and got[1:] == ref


def test_resume_restores_the_dropout_rng(cifar_dir, tmp_path,
                                         monkeypatch):
    # cifar_4layer has no dropout; put one on its output so every update
    # draws from torch's global RNG, which a resume must restore.
    def with_dropout(name, **options):
        return nn.Sequential(create_model(name, **options),
                             nn.Dropout(0.5))
    monkeypatch.setattr(train, "create_model", with_dropout)
    fit(_cfg(tmp_path / "a", max_steps=10))
    fit(_cfg(tmp_path / "b", max_steps=3))
    fit(_cfg(tmp_path / "b", max_steps=10))
    (a, _), (b, _) = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_stops_after_three_drops_and_a_plateau(cifar_dir, tmp_path):
    # lr 1e-12 leaves the predictions as they are: the validation error
    # never improves, so every `patience` epochs the rate drops (§5)
    cfg = _cfg(tmp_path, epochs=20, optim__lr=1e-12,
               optim__plateau_patience=1, data__train_subset=64,
               data__val_subset=32)
    result = fit(cfg)
    assert (result["stopped"], result["lr_drops"]) == ("plateau", 3)
    assert result["epochs"] == 5 and result["global_step"] == 10
    lrs = [r["lr"] for r in result["history"] if r["kind"] == "epoch"]
    assert lrs == pytest.approx([1e-12, 1e-12, 1e-13, 1e-14, 1e-15],
                                rel=1e-9)


def test_fit_writes_the_run_folder(straight):
    out, result = straight
    assert TrainConfig.from_dict(json.loads(
        (out / "config.json").read_text())) == _cfg(out, max_steps=11)
    env = json.loads((out / "env.json").read_text())
    for key in ("alexnet_lib", "commit", "torch", "torchvision",
                "device_name", "cpu_threads", "world_size", "seed",
                "profile"):
        assert key in env, key
    assert (env["world_size"], env["seed"], env["profile"]) == (1, 0, "ci")
    lines = runlog.read_metrics(out)
    assert [r["kind"] for r in lines] == ["epoch", "partial_epoch", "eval"]
    assert [r["step"] for r in lines] == [8, 11, 11]
    for key in ("epoch", "step", "lr", "train_loss", "train_error",
                "val_top1_error", "val_top5_error", "images_per_s",
                "wall_time_s"):
        assert key in lines[0], key
    assert lines[0]["lr"] == 0.01
    assert 0 <= lines[0]["val_top5_error"] <= lines[0]["val_top1_error"] <= 1
    assert math.isfinite(lines[0]["train_loss"])
    # stopped mid-epoch: the final weights are validated too
    assert lines[2]["kind"] == "eval" and lines[2]["step"] == 11
    assert result["val_top1_error"] == lines[2]["val_top1_error"]
    assert result["stopped"] == "max_steps" and result["world_size"] == 1


def test_nan_loss_stops_with_a_clear_error(cifar_dir, tmp_path):
    cfg = _cfg(tmp_path, optim__lr=1e6, checkpoint_every=1)
    with pytest.raises(TrainingDivergedError) as e:
        fit(cfg)
    step = e.value.step
    message = str(e.value)
    assert message.startswith(f"training diverged at step {step}: the "
                              f"loss is ")
    for hint in ("learning rate 1e+06 is too high for batch size 32",
                 "try --lr 100000", "not mean-subtracted or wrongly "
                 "scaled", "bias-1 initialisation", "init=torch"):
        assert hint in message
    # the last good state (one update earlier) is what is on disk
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["global_step"] == step - 1
    assert all(torch.isfinite(w).all() for w in ckpt["model"].values())


def test_ten_crop_evaluation_at_the_end(cifar_dir, tmp_path):
    cfg = _cfg(tmp_path, max_steps=2, ten_crop=True, data__image_size=24,
               model_options={"input_size": 24})
    result = fit(cfg)
    ten = result["ten_crop"]
    assert ten["n"] == 128 and 0 <= ten["top1_error"] <= 1
    last = runlog.read_metrics(tmp_path)[-1]
    assert last["kind"] == "ten_crop" and last["n"] == 128


def test_model_and_data_sizes_must_agree(cifar_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"model 'cifar_4layer' expects "
                       r"32x32 inputs but the data gives 24x24: set "
                       r"--image-size 32"):
        fit(_cfg(tmp_path, data__image_size=24))


def test_resuming_another_architecture_is_refused(straight, tmp_path):
    out, _ = straight
    shutil.copy(out / "checkpoint.pt", tmp_path / "checkpoint.pt")
    cfg = _cfg(tmp_path, model_options={"variant": "80sec"})
    with pytest.raises(ArchitectureMismatchError,
                       match=r"holds a 'cifar_4layer' model but this run "
                             r"builds 'cifar_4layer' with options "
                             r"\{'variant': '80sec'\}"):
        fit(cfg)


def test_snapshots_keep_the_conv_weights_of_chosen_epochs(cifar_dir,
                                                          tmp_path):
    # epochs 1 and 3 asked for; 3 is also the last: one file each, the
    # conv weights only, equal to the final model's for the last epoch
    out = tmp_path / "run"
    fit(_cfg(out, epochs=3, snapshot_epochs=(1, 3), data__train_subset=64,
             data__val_subset=32))
    snaps = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snaps == ["epoch-001.pt", "epoch-003.pt"]
    last = torch.load(out / "snapshots" / "epoch-003.pt")
    assert last["epoch"] == 3
    assert set(last["conv_weights"]) == {f"conv{i}.{k}" for i in (1, 2, 3)
                                         for k in ("weight", "bias")}
    model, _ = _weights(out)
    for key, value in last["conv_weights"].items():
        assert torch.equal(value, model[key].float())
    first = torch.load(out / "snapshots" / "epoch-001.pt")
    assert not torch.equal(first["conv_weights"]["conv1.weight"],
                           last["conv_weights"]["conv1.weight"])


def test_a_run_at_chance_says_so():
    from alexnet_lib.train import at_chance, chance_warning
    assert at_chance(0.900, 10, 2000) and at_chance(0.95, 10, 2000)
    assert not at_chance(0.85, 10, 2000)
    # two standard errors of the guessing rate on 2,000 images: 0.0134
    assert at_chance(0.887, 10, 2000) and not at_chance(0.886, 10, 2000)
    line = chance_warning(0.9, 10, 23.1, 2)
    assert line.startswith("at chance for 2 epoch(s): val top-1 error "
                           "0.900 is what guessing gives with 10 classes")
    assert "--model-option bias=0.1" in line and "\n" not in line


def test_predict_confusion_and_most_confused():
    from alexnet_lib.evaluate import confusion_matrix, most_confused, predict
    # a "model" that returns fixed logits: class = argmax of the input
    net = nn.Flatten()
    x = torch.tensor([[5., 0, 0], [0, 5, 0], [0, 5, 0], [0, 0, 5],
                      [5, 0, 0], [0, 5, 0]])
    y = torch.tensor([0, 1, 0, 2, 2, 0])
    probs, labels = predict(net, [(x[:4], y[:4]), (x[4:], y[4:])], "cpu")
    assert probs.shape == (6, 3) and torch.equal(labels, y)
    torch.testing.assert_close(probs.sum(1), torch.ones(6))
    cm = confusion_matrix(probs.argmax(1), labels, 3)
    assert cm.tolist() == [[1, 2, 0], [0, 1, 0], [1, 0, 1]]
    assert cm.sum() == 6 and cm.trace() == 3
    # the errors: true 0 seen as 1 twice, true 2 seen as 0 once
    assert most_confused(cm, 5) == [(0, 1, 2), (2, 0, 1)]
    # ten patches: the softmax of the ten is averaged, as evaluate does
    ten = x[:, None].expand(6, 10, 3).clone()
    ten[:, 5:] = 0  # half the patches say nothing
    p10, _ = predict(nn.Flatten(2), [(ten.view(6, 10, 3, 1, 1), y)], "cpu",
                     ten_crop=True)
    torch.testing.assert_close(p10, (probs + 1 / 3) / 2)
    out = evaluate(nn.Flatten(2), [(ten.view(6, 10, 3, 1, 1), y)], "cpu",
                   ten_crop=True)
    assert out["top1_error"] == pytest.approx(
        (p10.argmax(1) != y).float().mean().item())
    with pytest.raises(ValueError, match="5 predictions for 6 labels"):
        confusion_matrix(torch.zeros(5), y, 3)
