"""Speed options: defaults, and each one against float32 eager."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from alexnet_lib import cli, speed
from alexnet_lib.config import SpeedConfig, TrainConfig, apply_profile
from alexnet_lib.models import create_model
from alexnet_lib.train import fit

REPO = Path(__file__).resolve().parents[1]


def _batch(size=224, n=2, classes=1000):
    g = torch.Generator().manual_seed(0)
    # mean-subtracted 0..255 pixels: what the network sees (§2)
    x = torch.randn(n, 3, size, size, generator=g) * 60
    return x, torch.randint(0, classes, (n,), generator=g)


def test_off_by_default_and_on_for_cuda_in_the_imagenet_profile():
    off, on = SpeedConfig(*[False] * 5), SpeedConfig(*[True] * 5)
    assert SpeedConfig() == off and SpeedConfig().resolve("cuda") == off
    auto = apply_profile(TrainConfig(), "imagenet").speed
    assert auto.resolve("cuda") == on and auto.resolve("cpu") == off
    mixed = SpeedConfig(None, None, False, None, None).resolve("cuda")
    assert speed.enabled(mixed) == ["bf16", "channels_last",
                                    "cudnn_benchmark", "tf32"]


def test_cli_flags_set_the_options():
    args = cli.build_parser().parse_args(
        ["train", "--profile", "imagenet", "--no-compile", "--bf16",
         "--decode", "batched"])
    cfg = cli.config_from_args(args)
    assert cfg.speed == SpeedConfig(True, None, False, None, None)
    assert cfg.data.decode == "batched"


@pytest.mark.parametrize("option", ["channels_last", "bf16"])
def test_option_matches_fp32_eager_on_the_paper_net(option):
    b = torch.backends
    flags = (b.cudnn.benchmark, b.cuda.matmul.allow_tf32,
             b.cudnn.allow_tf32)
    result = speed.check_option(lambda: create_model("alexnet"),
                                *_batch(), option)
    assert flags == (b.cudnn.benchmark, b.cuda.matmul.allow_tf32,
                     b.cudnn.allow_tf32)  # a check changes no setting
    tol = speed.TOLERANCES[option]
    assert result["ok"], result
    assert result["logits_rel_err"] <= tol and result["loss_rel_err"] <= tol
    if option == "bf16":  # it did compute in bfloat16: not bitwise
        assert result["logits_rel_err"] > 1e-4


def test_cuda_only_options_say_so_on_the_cpu():
    for option in speed.CUDA_ONLY:
        with pytest.raises(ValueError, match=f"{option} only changes CUDA "
                           f"kernels: check it on a CUDA device, not cpu"):
            speed.check_option(lambda: create_model("cifar_4layer"),
                               *_batch(32, 2, 10), option)
    with pytest.raises(ValueError, match="unknown speed option 'fp16'"):
        speed.check_option(lambda: create_model("cifar_4layer"),
                           *_batch(32, 2, 10), "fp16")


def test_apply_speed_keeps_the_parameter_names():
    model = create_model("cifar_4layer")
    names = list(model.state_dict())
    speed.apply_speed(model, SpeedConfig(bf16=True, channels_last=True),
                      "cpu")
    assert list(model.state_dict()) == names
    assert model.conv1.weight.is_contiguous(
        memory_format=torch.channels_last)
    out = model(_batch(32, 2, 10)[0])
    assert out.dtype == torch.float32  # logits back in float32


def test_fit_with_cpu_speed_options(cifar_dir, tmp_path):
    cfg = apply_profile(TrainConfig(model="cifar_4layer"), "ci").replace(
        data__dataset="cifar10", device="cpu", max_steps=2,
        out_dir=str(tmp_path), speed__bf16=True,
        speed__channels_last=True)
    result = fit(cfg)
    assert result["global_step"] == 2
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["speed"]["bf16"] is True
    assert all(torch.isfinite(w).all() for w in ckpt["model"].values())


COMPILE_CHECK = textwrap.dedent("""
    import torch, json
    from alexnet_lib import speed
    from alexnet_lib.models import create_model
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 32, 32, generator=g) * 60
    y = torch.randint(0, 10, (4,), generator=g)
    print(json.dumps(speed.check_option(
        lambda: create_model("cifar_4layer"), x, y, "compile")))
""")


def test_compile_matches_fp32_eager_where_it_builds_in_time(tmp_path):
    # torch.compile on a CPU needs a C++ compiler and can take minutes on
    # a busy 2-core machine; give it 60 s in its own process
    try:
        proc = subprocess.run([sys.executable, "-c", COMPILE_CHECK],
                              capture_output=True, text=True, timeout=60,
                              cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.skip("torch.compile took over 60 s on this CPU: the check "
                    "runs where compiling is faster (a GPU machine)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"], result


@pytest.mark.gpu
@pytest.mark.parametrize("option", speed.OPTIONS)
def test_every_option_on_cuda(option):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: these options change GPU "
                    "kernels")
    result = speed.check_option(lambda: create_model("alexnet"),
                                *_batch(n=8), option, "cuda")
    assert result["ok"], result
