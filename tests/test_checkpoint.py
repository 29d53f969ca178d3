"""Checkpoints: atomic writes, weights_only loading, clear errors."""
import argparse
import random

import numpy as np
import pytest
import torch
from torch import nn

from alexnet_lib import checkpoint as ck
from alexnet_lib.checkpoint import (ArchitectureMismatchError,
                                    CheckpointNotFoundError,
                                    CorruptCheckpointError,
                                    NotACheckpointError, load_checkpoint,
                                    save_checkpoint)
from alexnet_lib.optim import PaperSGD, PlateauSchedule


def _trained(seed=0, width=4):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, width), nn.ReLU(),
                          nn.Linear(width, 2))
    opt = PaperSGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(torch.randn(5, 3)),
                                torch.tensor([0, 1, 0, 1, 1])).backward()
    opt.step()
    return model, opt, PlateauSchedule(opt, patience=2)


def _save(path, model, opt, sched, **extra):
    state = dict(model=model, optimizer=opt, schedule=sched, epoch=3,
                 step_in_epoch=7, global_step=31, config={"seed": 0},
                 model_name="mlp", model_options={"width": 4})
    state.update(extra)
    return save_checkpoint(path, **state)


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _trained()
    sched.step(0.4)
    path = _save(tmp_path / "checkpoint.pt", model, opt, sched)
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "alexnet_lib.checkpoint"
    assert (raw["epoch"], raw["step_in_epoch"], raw["global_step"]) == \
        (3, 7, 31)
    model2, opt2, sched2 = _trained(seed=1)
    ckpt = load_checkpoint(path, model2, opt2, sched2, model_name="mlp",
                           model_options={"width": 4})
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    v = [opt.state[p]["velocity"] for p in model.parameters()]
    v2 = [opt2.state[p]["velocity"] for p in model2.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(v, v2))
    assert sched2.best == 0.4 and ckpt["config"] == {"seed": 0}


def test_rng_states_come_back(tmp_path):
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    model, opt, sched = _trained()
    path = _save(tmp_path / "c.pt", model, opt, sched)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    load_checkpoint(path, restore_rng=True)
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(got[0], expected[0])
    assert got[1:] == expected[1:]


def test_crash_during_save_keeps_the_last_good_checkpoint(tmp_path,
                                                          monkeypatch):
    model, opt, sched = _trained()
    path = _save(tmp_path / "checkpoint.pt", model, opt, sched)
    good = path.read_bytes()

    def half_written(obj, f, *a, **k):
        f.write(b"PK\x03\x04 only half of it")
        raise OSError("No space left on device")
    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="No space left"):
        _save(path, model, opt, sched, epoch=4)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]

    def no_rename(*a, **k):
        raise OSError("killed before rename")
    monkeypatch.setattr(ck.os, "replace", no_rename)
    with pytest.raises(OSError, match="killed before rename"):
        _save(path, model, opt, sched, epoch=4)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert load_checkpoint(path)["epoch"] == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_truncated_checkpoint_names_the_previous_good_one(tmp_path):
    model, opt, sched = _trained()
    path = tmp_path / "checkpoint.pt"
    _save(path, model, opt, sched, epoch=1)
    _save(path, model, opt, sched, epoch=2)  # epoch 1 -> .prev.pt
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpointError) as e:
        load_checkpoint(path)
    prev = tmp_path / "checkpoint.prev.pt"
    # the advice never loses data: no "delete it"
    assert str(e.value) == (
        f"checkpoint {path} is unreadable (truncated or corrupt): resume "
        f"from the previous one with --resume {prev} (a run in that "
        f"folder does so by itself)")
    assert load_checkpoint(prev)["epoch"] == 1
    path.write_bytes(b"")  # a crash that left an empty file
    with pytest.raises(CorruptCheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_checkpoint_of_another_architecture(tmp_path):
    model, opt, sched = _trained()
    path = _save(tmp_path / "checkpoint.pt", model, opt, sched)
    with pytest.raises(ArchitectureMismatchError) as e:
        load_checkpoint(path, model_name="alexnet", model_options={})
    assert str(e.value) == (
        f"checkpoint {path} holds a 'mlp' with options {{'width': 4}} "
        f"model but this run builds 'alexnet': use another --out folder,"
        f" --no-resume, or the same --model and --model-option values")
    wider, _, _ = _trained(width=8)
    with pytest.raises(ArchitectureMismatchError,
                       match=r"do not fit this run's 'Sequential' "
                             r"\(first differences: 0.bias, 0.weight"):
        load_checkpoint(path, wider)
    assert not torch.equal(wider[0].weight[:4], model[0].weight)


def test_files_that_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(NotACheckpointError,
                       match="not a file written by torch.save"):
        load_checkpoint(text)
    bare = tmp_path / "weights.pt"
    torch.save(nn.Linear(2, 2).state_dict(), bare)
    with pytest.raises(NotACheckpointError,
                       match="holds a bare state dict"):
        load_checkpoint(bare)
    unsafe = tmp_path / "pickled.pt"
    torch.save({"format": "alexnet_lib.checkpoint",
                "x": argparse.Namespace(a=1)},
               unsafe)
    with pytest.raises(NotACheckpointError,
                       match="weights_only loading refuses"):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointNotFoundError,
                       match="does not exist: check the path"):
        load_checkpoint(tmp_path / "missing.pt")
