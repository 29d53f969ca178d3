"""Paper values, profiles, validation messages and result records."""
import json

import pytest

from alexnet_lib import config
from alexnet_lib.config import (ConfigError, DataConfig, OptimConfig,
                                TrainConfig, apply_profile, validate)
from alexnet_lib.results import load_results, record_result


def test_defaults_are_the_papers_values():
    o, d, t = OptimConfig(), DataConfig(), TrainConfig()
    assert (o.lr, o.momentum, o.weight_decay, o.batch_size) == \
        (0.01, 0.9, 5e-4, 128)
    assert (o.lr_drop, o.max_lr_drops) == (0.1, 3)
    assert (d.image_size, d.resize, d.pca_lighting) == (224, 256, 0.1)
    assert d.random_crop and d.flip and d.mean == "pixel"
    assert t.epochs == 90 and t.model == "alexnet"


def test_profiles_exist_and_change_only_the_amount_of_work():
    assert list(config.PROFILES) == ["ci", "cpu", "gpu", "imagenet"]
    base = TrainConfig()
    ci = apply_profile(base, "ci")
    assert ci.profile == "ci" and ci.epochs == 1
    assert ci.data.train_subset == 256
    assert ci.optim.lr == base.optim.lr  # the method stays the paper's
    assert ci.optim.momentum == base.optim.momentum


def test_unknown_profile_says_which_exist():
    with pytest.raises(ConfigError, match=r"unknown run profile 'huge'; "
                       r"choose one of ci, cpu, gpu, imagenet"):
        config.get_profile("huge")


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("ALEXNET_PROFILE", "gpu")
    assert config.current_profile() == "gpu"
    monkeypatch.setenv("ALEXNET_PROFILE", "laptop")
    with pytest.raises(ConfigError, match="set ALEXNET_PROFILE"):
        config.current_profile()


@pytest.mark.parametrize("change, message", [
    ({"optim__lr": -0.1}, r"optim.lr must be > 0 \(paper §5: 0.01\)"),
    ({"optim__momentum": 1.5}, r"optim.momentum must be in \[0, 1\)"),
    ({"optim__batch_size": 0}, r"optim.batch_size must be >= 1"),
    ({"optim__update_rule": "adam"}, r"'paper' or 'torch', got 'adam'"),
    ({"data__dataset": "mnist"}, r"'cifar10' or 'imagenet', got 'mnist'"),
    ({"data__on_corrupt": "ignore"}, r"'skip' or 'stop', got 'ignore'"),
    ({"epochs": 0}, r"epochs must be >= 1, got 0"),
])
def test_invalid_hyper_parameters_are_rejected(change, message):
    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig().replace(**change))


def test_config_round_trips_through_a_dict():
    cfg = apply_profile(TrainConfig(model_options={"lrn": False}), "cpu")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_data_and_cache_roots_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXNET_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "c"))
    assert config.data_root() == tmp_path / "d"
    assert config.cache_root() == tmp_path / "c"


def test_a_smaller_profile_never_replaces_a_larger_result(tmp_path):
    common = dict(chapter="3.1", claim="ReLU trains faster", paper=6.0,
                  data="CIFAR-10", folder=tmp_path)
    path = record_result("fig1", ours=4.5, profile="cpu", wall_time_s=900,
                         **common)
    record_result("fig1", ours=1.2, profile="ci", wall_time_s=30, **common)
    record = json.loads(path.read_text())
    assert (record["ours"], record["profile"]) == (4.5, "cpu")
    for key in ("hardware", "commit", "date", "wall_time_s", "data"):
        assert key in record
    record_result("fig1", ours=5.8, profile="gpu", wall_time_s=60, **common)
    assert [r["ours"] for r in load_results(tmp_path)] == [5.8]


def test_result_names_must_be_file_names(tmp_path):
    with pytest.raises(ValueError, match="becomes the file name"):
        record_result("a/b", chapter="x", claim="", paper=0, ours=0,
                      profile="ci", data="", wall_time_s=0, folder=tmp_path)


@pytest.mark.parametrize("change, message", [
    ({"max_steps": 0}, r"max_steps must be >= 1 or None, got 0"),
    ({"checkpoint_every": -1}, r"checkpoint_every must be >= 0"),
    ({"optim__plateau_patience": 0}, r"plateau_patience must be >= 1"),
])
def test_loop_settings_are_validated_in_one_place(change, message):
    with pytest.raises(ConfigError, match=message):
        validate(TrainConfig().replace(**change))


def test_ten_crop_on_full_size_cifar_says_what_to_set(cifar_dir):
    cfg = TrainConfig(data=DataConfig(dataset="cifar10", root=str(cifar_dir),
                                      image_size=32, val_subset=10),
                      ten_crop=True)
    with pytest.raises(ConfigError, match=r"set data.image_size < 32"):
        _ten_loader(cfg)


def _ten_loader(cfg):
    from alexnet_lib.data import build_ten_crop_loader
    return build_ten_crop_loader(cfg.data, cfg.optim.batch_size,
                                 cfg.profile)
