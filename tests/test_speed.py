"""Speed options: defaults, and each one against float32 eager."""
import os
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


def test_off_by_default_and_on_for_cuda_in_the_imagenet_profile(
        monkeypatch):
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(speed, "cpu_prefers_channels_last", lambda: False)
    off, on = SpeedConfig(*[False] * 5), SpeedConfig(*[True] * 5)
    assert SpeedConfig() == off and SpeedConfig().resolve("cuda") == off
    auto = apply_profile(TrainConfig(), "imagenet").speed
    assert auto.resolve("cuda") == on and auto.resolve("cpu") == off
    assert auto.resolve("mps") == off
    mixed = SpeedConfig(None, None, False, None, None).resolve("cuda")
    assert speed.enabled(mixed) == ["bf16", "channels_last",
                                    "cudnn_benchmark", "tf32"]


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
@pytest.mark.parametrize("native", [True, False])
def test_cpu_profile_uses_bf16_only_where_the_cpu_has_it(monkeypatch,
                                                         native, machine):
    monkeypatch.setattr(speed, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(speed.platform, "machine", lambda: machine)
    # channels_last: on x86-64 (faster there in float32 too), and with bf16
    cl = native or machine == "x86_64"
    assert speed.cpu_prefers_channels_last() == cl
    opts = apply_profile(TrainConfig(), "cpu").speed
    assert (opts.bf16, opts.channels_last) == (None, None)
    assert opts.resolve("cpu") == SpeedConfig(bf16=native, channels_last=cl)
    assert opts.resolve("cuda") == SpeedConfig(bf16=True,
                                               channels_last=True)
    # the ci profile, whose outputs the notebooks compare, stays fp32
    assert apply_profile(TrainConfig(), "ci").speed.resolve("cpu") == \
        SpeedConfig()
    # an explicit setting wins over the hardware
    assert SpeedConfig(bf16=False, channels_last=None).resolve("cpu") == \
        SpeedConfig(channels_last=cl)
    assert SpeedConfig(bf16=None, channels_last=False).resolve("cpu") == \
        SpeedConfig(bf16=native)
    model = speed.apply_speed(create_model("alexnet_cifar"), opts, "cpu")
    assert model.conv1.weight.is_contiguous(
        memory_format=torch.channels_last) == cl
    # bf16: the instance's forward is wrapped in autocast
    assert hasattr(model.forward, "__wrapped__") == native


def test_cpu_bf16_keeps_the_proxy_within_tolerance():
    # the check behind the cpu profile's bf16 + channels_last
    for option in ("bf16", "channels_last"):
        result = speed.check_option(lambda: create_model("alexnet_cifar"),
                                    *_batch(27, 8, 10), option)
        assert result["ok"], result


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f "
                   "avx512_bf16 amx_tile\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve\n")
    assert speed.cpu_flags(x86) == {"fpu", "sse2", "avx512f",
                                    "avx512_bf16", "amx_tile"}
    assert speed.cpu_flags(arm) == {"fp", "asimd", "sve"}
    assert speed.cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"avx2", "fma"})
    assert not speed.cpu_has_native_bf16()
    monkeypatch.setattr(speed, "cpu_flags", lambda: {"asimd", "bf16"})
    assert speed.cpu_has_native_bf16()


def test_count_flops_on_known_layers():
    from torch import nn
    paper = speed.count_flops(create_model("alexnet"))
    # conv1: 55 x 55 outputs x 96 maps, each 11 x 11 x 3 multiply-adds
    assert paper["layers"]["conv1"] == 2 * 55 * 55 * 96 * 11 * 11 * 3
    # conv2 sees only its own GPU's 48 maps (groups=2)
    assert paper["layers"]["conv2"] == 2 * 27 * 27 * 256 * 48 * 5 * 5
    assert paper["layers"]["fc6"] == 2 * 9216 * 4096
    assert paper["forward"] == 2 * 724_406_816
    assert paper["train"] == 3 * paper["forward"]
    # torchvision's alexnet: 714.2M multiply-adds (the published count)
    import torchvision
    tv = speed.count_flops(torchvision.models.alexnet(), input_size=224)
    assert tv["forward"] == 2 * 714_188_480
    local = speed.count_flops(create_model("cifar_11pct"))
    assert local["layers"]["local3"] == 2 * 6 * 6 * 64 * 64 * 3 * 3
    with pytest.raises(ValueError, match="has no input_size: pass "
                       r"count_flops\(model, input_size=...\)"):
        speed.count_flops(nn.Sequential(nn.Conv2d(3, 4, 3)))


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


def test_keep_freed_memory_changes_where_memory_comes_from_not_results(
        tmp_path):
    import platform
    if platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc":
        pytest.skip("mallopt is glibc's")
    assert speed.keep_freed_memory() is True
    assert speed.keep_freed_memory() is True  # once per process
    from alexnet_lib.sysinfo import environment
    assert environment()["keep_freed_memory"] is True
    # a seeded CPU run gives the same weights, bit for bit, either way
    code = (
        "import hashlib, sys, torch\n"
        "from alexnet_lib.config import TrainConfig, apply_profile\n"
        "from alexnet_lib.train import fit\n"
        "from alexnet_lib.speed import _MALLOC_STATE\n"
        "cfg = apply_profile(TrainConfig(model='cifar_4layer'), 'ci')\n"
        "cfg = cfg.replace(data__dataset='cifar10', device='cpu',\n"
        "    max_steps=4, out_dir=sys.argv[1])\n"
        "fit(cfg)\n"
        "state = torch.load(sys.argv[1] + '/checkpoint.pt')['model']\n"
        "h = hashlib.sha256()\n"
        "for k in sorted(state): h.update(state[k].numpy().tobytes())\n"
        "print(_MALLOC_STATE['applied'], h.hexdigest())\n")
    outs = []
    for malloc in ("default", "keep"):
        env = {**os.environ, "ALEXNET_MALLOC": malloc,
               "ALEXNET_PROFILE": "ci"}
        done = subprocess.run([sys.executable, "-c", code,
                               str(tmp_path / malloc)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        outs.append(done.stdout.split()[-2:])
    assert outs[0][0] == "False" and outs[1][0] == "True"
    assert outs[0][1] == outs[1][1]
