"""Training from prepare-shards' shards = training from the folder.

Imagenette-224's images (shorter side 224 <= 256) are stored byte for
byte, and ShardFolder puts them back in the folder's order, so the same
seed must give bitwise the same batches, mean image and weights.
"""
import json
import os
import shutil

import pytest
import torch

from alexnet_lib import cli
from alexnet_lib.config import ConfigError, TrainConfig, validate
from alexnet_lib.data import ImageNetFolder, build_loaders
from alexnet_lib.data import shard_folder
from alexnet_lib.data.errors import DataError, DataNotFoundError
from alexnet_lib.data.shard_folder import ShardFolder
from alexnet_lib.data.shards import MANIFEST, prepare_shards


@pytest.fixture(scope="module")
def nette(imagenette_dir, tmp_path_factory):
    """3 classes x 5 train, x 2 val images; shards of train and val."""
    root = tmp_path_factory.mktemp("nette")
    synsets = sorted(p.name for p in (imagenette_dir / "train").iterdir())
    for split, n in (("train", 5), ("val", 2)):
        for synset in synsets[:3]:
            (root / split / synset).mkdir(parents=True)
            for path in sorted((imagenette_dir / split / synset)
                               .iterdir())[:n]:
                shutil.copy(path, root / split / synset / path.name)
    # shards of 4: the 15 images are shuffled across 4 tar files
    prepare_shards(root, root / "train_shards", "train", shard_size=4,
                   progress=False)
    prepare_shards(root, root / "val_shards", "val", shard_size=4,
                   progress=False)
    return root


def _cfg(data, **changes):
    cfg = TrainConfig(profile="ci", progress=False, device="cpu", seed=3)
    return cfg.replace(**{"data__root": str(data),
                          "optim__batch_size": 4, **changes})


def _batches(loader, epoch=None, start_step=0):
    if epoch is not None:
        loader.set_epoch(epoch, start_step)
    return list(loader)


def _assert_same(a, b):
    assert len(a) == len(b) > 0
    for (xa, ya), (xb, yb) in zip(a, b):
        assert ya.dtype == yb.dtype == torch.int64 and xa.dtype == xb.dtype
        assert torch.equal(ya, yb) and torch.equal(xa, xb)  # bitwise


def test_shards_give_the_folders_batches(nette):
    folder = _loaders(_cfg(nette))
    shards = _loaders(_cfg(nette / "train_shards"))  # auto-detected
    assert isinstance(shards[0].dataset, ShardFolder)
    assert isinstance(shards[1].dataset, ImageNetFolder)  # the source's
    assert (shards[2]["n_train"], shards[2]["n_val"]) == (15, 6)
    assert shards[2]["classes"] == folder[2]["classes"]
    assert torch.equal(shards[2]["mean"], folder[2]["mean"])
    assert len(shards[0]) == len(folder[0]) == 4  # 15 images / batch 4
    # the paper's training view: random crops, mirrors, PCA lighting
    _assert_same(_batches(folder[0], 0), _batches(shards[0], 0))
    _assert_same(_batches(folder[0], 1, 2), _batches(shards[0], 1, 2))
    # rank 1 of 2 with 2 workers: the second half of each global batch
    half = _loaders(_cfg(nette / "train_shards",
                              data__num_workers=2), rank=1, world_size=2)
    got = _batches(half[0], 1)
    for (x, y), (xh, yh) in zip(_batches(folder[0], 1), got):
        assert torch.equal(xh, x[2:]) and torch.equal(yh, y[2:])
    # validation from the val split's shards: the folder's val batches
    val = _loaders(_cfg(nette / "train_shards",
                             data__val_root=str(nette / "val_shards")))
    assert isinstance(val[1].dataset, ShardFolder)
    _assert_same(list(folder[1]), list(val[1]))
    # decode="batched" reads the same bytes from the shards
    fast = _loaders(_cfg(nette / "train_shards",
                              data__decode="batched"))
    _assert_same(_batches(folder[0], 1), _batches(fast[0], 1))


def test_subsets_pick_the_same_images(nette):
    folder = ImageNetFolder(nette, "train", subset=7)
    shards = ShardFolder(nette / "train_shards", subset=7)
    assert [shards.key(i) for i in range(7)] == [
        f"{p.split('/')[-2]}_{p.split('/')[-1].split('.')[0]}"
        for p in folder.files]
    assert shards.labels.tolist() == folder.labels
    # the index: numpy arrays, not a Python object per image
    assert shards.keys.dtype.kind == "S" and shards.labels.dtype.kind == "i"


def test_open_files_are_bounded(nette, monkeypatch):
    monkeypatch.setattr(shard_folder, "MAX_OPEN", 2)
    shards = ShardFolder(nette / "train_shards")
    folder = ImageNetFolder(nette, "train")
    picks = [0, 5, 10, 14, 1, 0]
    assert len({int(shards._shard[i]) for i in picks}) > 2
    for i in picks:
        assert shards.read(i) == folder.read(i)
        assert len(shards._files[os.getpid()]) <= 2


def test_fit_from_shards_gives_the_folders_weights(nette, tmp_path):
    # the paper's AlexNet at 1/8 width (fast on a CPU), 3 updates of 4
    args = ["train", "--model-option", "widths=[12,32,48,48,32]",
            "--model-option", "fc_width=64", "--batch-size", "4",
            "--max-steps", "3", "--val-subset", "3", "--device", "cpu",
            "--profile", "ci", "--no-progress"]
    assert cli.main(args + ["--data", str(nette),
                            "--out", str(tmp_path / "folder")]) == 0
    assert cli.main(args + ["--data", str(nette / "train_shards"),
                            "--data-format", "shards",
                            "--out", str(tmp_path / "shards")]) == 0
    a, b = (torch.load(tmp_path / run / "checkpoint.pt",
                       weights_only=True) for run in ("folder", "shards"))
    assert a["global_step"] == b["global_step"] == 3
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_unfinished_or_damaged_shards_say_rerun_prepare_shards(
        nette, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(nette / "train_shards", out)
    manifest = json.loads((out / MANIFEST).read_text())
    (out / "train-000002.tar").write_bytes(b"half a shard")  # a bad copy
    with pytest.raises(DataError, match=r"shard .*train-000002.tar is "
                       r"missing or not the \d+ bytes shards.json records: "
                       r"copy it again, or run prepare-shards again"):
        _loaders(_cfg(out))
    del manifest["finished"]  # prepare-shards was stopped
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="unfinished: run prepare-shards "
                       "again to complete them"):
        _loaders(_cfg(out))


def test_wrong_inputs_say_what_to_pass(nette, tmp_path, capsys):
    with pytest.raises(ConfigError, match="data.format must be one of "
                       "auto, folder, shards, got 'tar'"):
        validate(_cfg(nette, data__format="tar"))
    with pytest.raises(DataError, match=r"holds the val split, not train: "
                       r"pass the shards written with prepare-shards "
                       r"--split train"):
        _loaders(_cfg(nette / "val_shards"))
    # shards moved to a machine without the folder they were made from
    moved = tmp_path / "moved"
    shutil.copytree(nette / "train_shards", moved)
    manifest = json.loads((moved / MANIFEST).read_text())
    manifest["source"] = str(tmp_path / "gone")
    (moved / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(DataNotFoundError, match="Pass --val-data"):
        _loaders(_cfg(moved))
    with pytest.raises(SystemExit):  # argparse lists the choices
        cli.main(["train", "--data", str(nette), "--data-format", "tar"])
    assert "invalid choice: 'tar' (choose from" in capsys.readouterr().err


def _loaders(cfg, *args, **kwargs):
    """build_loaders with the settings a run passes it from ``cfg``."""
    return build_loaders(cfg.data, cfg.optim.batch_size, cfg.seed,
                         cfg.profile, *args, **kwargs)
