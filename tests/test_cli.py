"""``python -m alexnet_lib``: help, user errors (exit 2) and a real run."""
import json

import pytest

from alexnet_lib import cli
from alexnet_lib.config import PROFILES


def _train_parser():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices["train"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in _train_parser()._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help and len(action.help.split()) >= 3, action.dest
    for fact in ("paper: 0.01, §5", "paper: 0.9, §5", "paper: 128, §5",
                 "paper: 0.0005, §5", "about 90, §5", "§4.1"):
        assert fact in text


def test_profiles_lists_every_profile(capsys):
    assert cli.main(["profiles"]) == 0
    out = capsys.readouterr().out
    for p in PROFILES.values():
        assert p.name in out and p.description in out and p.hardware in out


@pytest.mark.parametrize("args, message", [
    (["--profile", "huge"], "error: unknown run profile 'huge'; choose one "
                            "of ci, cpu, gpu, imagenet"),
    (["--lr", "-1"], "error: optim.lr must be > 0 (paper §5: 0.01), "
                     "got -1.0"),
    (["--momentum", "1.5"], "error: optim.momentum must be in [0, 1) "
                            "(paper: 0.9), got 1.5"),
    (["--epochs", "0"], "error: epochs must be >= 1, got 0"),
    (["--data", "/no/such/folder"], "error: data folder /no/such/folder "
                                    "does not exist"),
    (["--device", "gpu"], "error: unknown device 'gpu'"),
    (["--patience", "0"], "error: optim.plateau_patience must be >= 1 "
                          "epoch, got 0"),
    (["--max-steps", "0"], "error: max_steps must be >= 1 or None, "
                           "got 0"),
    (["--model", "resnet"], "error: unknown model 'resnet'; choose one "
                            "of alexnet, alexnet_cifar, alexnet_owt"),
    (["--set", "lr=0.1"], "error: unknown setting 'lr': did you mean "
                          "optim.lr?\n"),
    (["--set", "optim.lrr=1"], "error: unknown setting 'optim.lrr': "
                               "`python -m alexnet_lib settings` lists "
                               "them all\n"),
    (["--set", "epochs=ten"], "error: setting epochs takes a whole "
                              "number, got 'ten'\n"),
    (["--set", "data.flip=1"], "error: setting data.flip takes true or "
                               "false, got 1\n"),
    (["--set", "optim.lr=-1"], "error: optim.lr must be > 0 (paper §5: "
                               "0.01), got -1.0"),
    (["--config", "/no/such.json"], "error: cannot read config file "
                                    "/no/such.json: No such file or "
                                    "directory\n"),
])
def test_user_errors_print_one_line_and_exit_2(capsys, tmp_path, args,
                                                message):
    code = cli.main(["train", "--profile", "ci", "--out", str(tmp_path),
                     *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message)
    assert "Traceback" not in err and err.count("\n") == 1


def test_model_option_values_are_json_when_they_parse():
    args = cli.build_parser().parse_args(
        ["train", "--model-option", "dropout=0", "--model-option",
         "lrn=false", "--model-option", "pooling=overlapping",
         "--model-option", "widths=[1,2]", "--profile", "ci"])
    cfg = cli.config_from_args(args)
    assert cfg.model_options == {"dropout": 0, "lrn": False,
                                 "pooling": "overlapping",
                                 "widths": [1, 2]}
    assert cfg.profile == "ci" and cfg.epochs == 1  # the profile applies
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--model-option", "x"])


def test_snapshot_epochs_parse_sorted_and_bad_ones_exit_2(capsys):
    args = cli.build_parser().parse_args(
        ["train", "--snapshot-epochs", "10,1,5,1", "--profile", "ci"])
    assert cli.config_from_args(args).snapshot_epochs == (1, 5, 10)
    for bad in ("0,1", "one", ""):
        with pytest.raises(SystemExit) as e:
            cli.build_parser().parse_args(
                ["train", "--snapshot-epochs", bad])
        assert e.value.code == 2
        assert ("--snapshot-epochs wants epoch numbers >= 1 like 1,2,5,10"
                in capsys.readouterr().err)


def test_explicit_flags_win_over_the_profile():
    args = cli.build_parser().parse_args(
        ["train", "--profile", "ci", "--epochs", "3", "--batch-size", "16",
         "--no-resume", "--update-rule", "torch"])
    cfg = cli.config_from_args(args)
    assert (cfg.epochs, cfg.optim.batch_size, cfg.resume) == (3, 16, False)
    assert cfg.optim.update_rule == "torch"
    assert cfg.data.train_subset == 256  # from the profile


def test_models_lists_every_model_with_its_parameter_count(capsys):
    from alexnet_lib.models import create_model, list_models
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "alexnet                   60,965,224" in out  # §1: "60 million"
    small = sum(p.numel() for p in create_model("cifar_4layer").parameters())
    assert f"cifar_4layer{small:>24,}" in out


def test_ci_profile_run_on_real_cifar(cifar_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["train", "--model", "cifar_4layer", "--dataset",
                     "cifar10", "--profile", "ci", "--device", "cpu",
                     "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("cifar_4layer: val top-1 error 0.")
    assert "after 8 updates (stopped: epochs)" in printed  # 256 images / 32
    assert {p.name for p in out.iterdir()} >= {
        "checkpoint.pt", "config.json", "env.json", "metrics.jsonl"}
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["kind"] == "epoch" and record["step"] == 8
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["profile"] == "ci" and cfg["data"]["train_subset"] == 256
    # a second identical command resumes: nothing left to train
    assert cli.main(["train", "--model", "cifar_4layer", "--dataset",
                     "cifar10", "--profile", "ci", "--device", "cpu",
                     "--out", str(out)]) == 0
    assert "after 8 updates" in capsys.readouterr().out


def test_missing_data_set_is_a_user_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main(["train", "--model", "cifar_4layer", "--dataset",
                     "cifar10", "--profile", "ci", "--data", str(empty),
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"error: {empty} exists but holds no CIFAR-10")
    assert "Traceback" not in err


def test_unusable_checkpoint_is_a_user_error(cifar_dir, tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    code = cli.main(["train", "--model", "cifar_4layer", "--dataset",
                     "cifar10", "--profile", "ci", "--device", "cpu",
                     "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"error: checkpoint {tmp_path / 'checkpoint.pt'} is "
                   f"unreadable (truncated or corrupt): no previous "
                   f"checkpoint was kept beside it; point --resume at "
                   f"another checkpoint, or start again with --no-resume "
                   f"(the old run's files are moved to old-runs/, not "
                   f"deleted)\n")
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"PK\x03\x04 cut short"


def test_bad_model_option_and_divergence_exit_cleanly(cifar_dir, tmp_path,
                                                       capsys):
    args = ["train", "--model", "cifar_4layer", "--dataset", "cifar10",
            "--profile", "ci", "--device", "cpu", "--no-resume"]
    code = cli.main([*args, "--out", str(tmp_path / "a"),
                     "--model-option", "bogus=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(
        "error: cannot build model 'cifar_4layer': model 'cifar_4layer' "
        "got unknown option(s) ['bogus']")
    code = cli.main([*args, "--out", str(tmp_path / "t"),
                     "--set", "model_options.activation=1"])
    err = capsys.readouterr().err
    assert code == 2 and err == (
        "error: cannot build model 'cifar_4layer': model 'cifar_4layer': "
        "option activation takes a text, got 1\n")
    code = cli.main([*args, "--out", str(tmp_path / "b"), "--lr", "1e6"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: training diverged at step ")
    assert "Traceback" not in err


def test_set_reaches_every_section_and_comes_last():
    args = cli.build_parser().parse_args(
        ["train", "--profile", "ci", "--lr", "0.02", "--set",
         "optim.lr=0.001", "--set", "data.pca_lighting=0", "--set",
         "speed.bf16=true", "--set", "epochs=5", "--set",
         "snapshot_epochs=[1, 3]", "--set", 'model_options={"lrn": false}'])
    cfg = cli.config_from_args(args)
    assert (cfg.optim.lr, cfg.data.pca_lighting, cfg.speed.bf16,
            cfg.epochs, cfg.snapshot_epochs) == (0.001, 0.0, True, 5, (1, 3))
    assert cfg.model_options == {"lrn": False}
    assert cfg.data.train_subset == 256  # the profile still applies


def test_config_file_round_trips_and_flags_win_over_it(tmp_path):
    base = cli.config_from_args(cli.build_parser().parse_args(
        ["train", "--profile", "ci", "--dataset", "cifar10", "--model",
         "cifar_4layer", "--set", "optim.lr=0.003", "--seed", "4",
         "--snapshot-epochs", "1,2", "--model-option", "dropout=0"]))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(base.to_dict()))  # as runs write it
    again = cli.config_from_args(cli.build_parser().parse_args(
        ["train", "--config", str(path)]))
    assert again == base
    changed = cli.config_from_args(cli.build_parser().parse_args(
        ["train", "--config", str(path), "--lr", "0.02", "--set",
         "seed=7", "--model-option", "lrn=false"]))
    assert (changed.optim.lr, changed.seed, changed.model) == \
        (0.02, 7, "cifar_4layer")
    assert changed.model_options == {"dropout": 0, "lrn": False}
    part = tmp_path / "part.json"
    part.write_text('{"optim": {"momentum": 0.5}, "epochs": 2}')
    cfg = cli.config_from_args(cli.build_parser().parse_args(
        ["train", "--profile", "ci", "--config", str(part)]))
    assert (cfg.optim.momentum, cfg.epochs, cfg.optim.lr) == (0.5, 2, 0.01)
    bad = tmp_path / "bad.json"
    bad.write_text('{"optim": 3}')
    with pytest.raises(cli.ConfigError, match="setting optim must be an "
                       "object of optim.\\* settings, got 3"):
        cli.config_from_args(cli.build_parser().parse_args(
            ["train", "--config", str(bad)]))


def test_model_options_by_name_reach_the_model_config():
    cfg = cli.config_from_args(cli.build_parser().parse_args(
        ["train", "--profile", "ci", "--model-option", "lrn=false",
         "--set", "model_options.dropout=0", "--set",
         'model_options.removed=["conv3"]']))
    assert cfg.model_options == {"lrn": False, "dropout": 0,
                                 "removed": ["conv3"]}


def test_settings_lists_a_models_typed_options(capsys):
    assert cli.main(["settings", "--model", "alexnet_cifar"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "model_options.dropout   0.5 (float)" in lines
    assert 'model_options.towers    "two" (str)' in lines
    assert cli.main(["settings", "--model", "resnet"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: unknown model 'resnet'; choose one of alexnet, ")


def test_settings_lists_every_setting_with_its_default(capsys):
    from alexnet_lib.config import setting_names
    assert cli.main(["settings"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == setting_names()
    assert "optim.lr                0.01" in lines
    assert "optim.weight_decay      0.0005" in lines
    assert len(lines) == 42


def test_every_flag_is_derived_from_its_setting(tmp_path):
    """Each named flag sets the setting FLAGS names, typed by config.py;
    true/false settings have a --no- form."""
    from alexnet_lib.config import CHOICES, setting_names, setting_type
    samples = {int: ("7", 7), float: ("0.25", 0.25),
               str: (str(tmp_path), str(tmp_path))}  # an existing folder
    assert set(cli.FLAG_OF) <= set(setting_names())
    for flag, (name, _, _) in cli.FLAGS.items():
        kind = setting_type(name)
        if kind is bool:
            argv, want = [flag], True
            off = cli.config_from_args(cli.build_parser().parse_args(
                ["train", "--profile", "ci", f"--no-{flag[2:]}"]))
            assert _setting(off, name) is False, flag
        elif name in CHOICES:
            argv, want = [flag, CHOICES[name][-1]], CHOICES[name][-1]
        elif kind is tuple:
            argv, want = [flag, "2,1"], (1, 2)
        else:
            text, want = samples[kind]
            argv = [flag, text]
        cfg = cli.config_from_args(cli.build_parser().parse_args(
            ["train", "--profile", "ci", "--dataset", "imagenet", *argv]))
        assert _setting(cfg, name) == want, flag


def _setting(cfg, name):
    for part in name.split("."):
        cfg = getattr(cfg, part)
    return cfg


def test_a_flag_of_the_wrong_type_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["train", "--train-subset", "many"])
    assert e.value.code == 2
    assert "--train-subset: invalid int value: 'many'" in \
        capsys.readouterr().err
