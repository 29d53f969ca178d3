"""Benchmark scripts in their quick modes: the records they write."""
import json
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_roofline  # noqa: E402


def quick_record(bench, tmp_path, *extra) -> dict:
    """``bench.main`` in its quick mode on one thread; its JSON record.
    The test process keeps its own thread count."""
    threads = torch.get_num_threads()
    out = tmp_path / f"{bench.__name__}.json"
    try:
        bench.main(["--quick", "--threads", "1", *extra,
                    "--json", str(out)])
    finally:
        torch.set_num_threads(threads)
    return json.loads(out.read_text())


def test_quick_roofline_record(tmp_path):
    r = quick_record(bench_roofline, tmp_path, "--bf16")
    assert r["threads"] == 1 and r["quick"] is True
    assert set(r["peak_flop_per_s"]) == {"torch.float32", "torch.bfloat16"}
    assert all(v > 0 for v in r["peak_flop_per_s"].values())
    assert {row["op"].split()[0] for row in r["peak"]} == {"matmul",
                                                           "conv2", "conv3"}
    paper = [m for m in r["models"] if m["model"] == "alexnet"]
    assert len(paper) == 2  # float32 and bf16
    for m in r["models"]:
        peak = r["peak_flop_per_s"][m["dtype"]]
        assert math.isclose(m["share_of_peak"],
                            m["images_per_s"] * m["train_flop_per_image"]
                            / peak)
    assert paper[0]["train_flop_per_image"] == 3 * 2 * 724_406_816
    shares = {(s["model"], s["dtype"]) for s in r["lrn_share"]}
    assert shares == {(m, d) for m in ("alexnet", "alexnet_cifar",
                                       "cifar_11pct")
                      for d in ("torch.float32", "torch.bfloat16")}
    impls = {row["impl"] for row in r["lrn"]}
    assert {"alexnet_lib (compiled C kernel)",
            "alexnet_lib (blocked PyTorch kernel)"} <= impls
    inside = r["lrn_time_in_step"]
    assert [(row["dtype"], row["lrn"]) for row in inside] == [
        (d, how) for d in ("torch.float32", "torch.bfloat16")
        for how in ("fused", "apart")]
    for row in inside:  # a share of a real step, below one
        assert row["lrn_share_of_step"] < 1 and len(row["shares"]) == 2
        if row["lrn"] == "apart":  # timed directly: positive
            assert row["lrn_share_of_step"] > 0
        else:  # LRN + pooling, less the pooling alone
            assert row["lrn_and_pool_s_per_step"] > 0
            assert row["pool_alone_s_per_step"] > 0
    assert r["lrn_kernel"].startswith("LRN on CPU: ")
    assert r["environment"]["torch"] == torch.__version__


def test_quick_bf16_proxy_record(tmp_path):
    import bench_bf16_proxy
    r = quick_record(bench_bf16_proxy, tmp_path)
    a, b = r["runs"]["float32"], r["runs"]["bf16 + channels_last"]
    assert a["seed"] == b["seed"] == 0
    assert a["parameters"] == b["parameters"]  # the same network
    assert r["bf16_minus_float32"]["test_error"] == round(
        b["test_error"] - a["test_error"], 4)
    assert (r["train_images"], r["test_images"]) == (2000, 1017)


def test_quick_proxy_profile_record(tmp_path):
    import bench_proxy_profile
    r = quick_record(bench_proxy_profile, tmp_path)
    assert r["benchmark"] == "proxy_profile" and r["model"] == "alexnet_cifar"
    assert "float32" in r["runs"]
    assert ("bf16 + channels_last" in r["runs"]) == r["cpu_bf16_instructions"]
    for run in r["runs"].values():
        assert (run["steps"], run["repeats"], run["batch"]) == (2, 1, 16)
        ms = run["ms_per_step"]
        # every layer kind of the proxy found, forward and backward
        for kind in bench_proxy_profile.KINDS:
            assert ms[f"forward: {kind}"] > 0, kind
        for kind in ("convolution", "LRN + max-pooling", "ReLU",
                     "fully connected"):
            assert ms[f"backward: {kind}"] > 0, kind
        assert ms["data path (CifarLoader)"] > 0
        assert ms["optimizer (step, zero_grad)"] > 0
        # the rows add up to the step (each rounded to a microsecond)
        assert math.isclose(sum(ms.values()), run["step_ms_profiled"],
                            abs_tol=0.001 * len(ms))
        assert 0 < bench_proxy_profile.conv_share(run) < 1
        assert len(run["top_ops_self_ms_per_step"]) == 15


def test_proxy_profile_classifies_by_event_name():
    import bench_proxy_profile as bp

    class Event:
        def __init__(self, name, us, children=(), parent=None):
            self.name, self.cpu_time_total = name, us
            self.cpu_children, self.cpu_parent = list(children), parent
    conv = Event("aten::conv2d", 30.0, parent=object())
    lrn = Event("_LRNMaxPoolC", 5.0, parent=object())
    events = [Event("data", 2.0),
              Event("forward", 40.0, [conv, lrn]), conv, lrn,
              Event(bp._BACKWARD + "ConvolutionBackward0", 50.0),
              Event(bp._BACKWARD + "_LRNMaxPoolCBackward", 6.0),
              Event(bp._BACKWARD + "AccumulateGrad", 1.0),
              Event("Optimizer.step#PaperSGD.step", 3.0),
              Event("aten::cross_entropy_loss", 0.5)]
    assert dict(bp.classify(events)) == {
        "data path (CifarLoader)": 2.0,
        "forward: convolution": 30.0, "forward: LRN + max-pooling": 5.0,
        "forward: other": 5.0,
        "backward: convolution": 50.0, "backward: LRN + max-pooling": 6.0,
        "backward: other": 1.0,
        "optimizer (step, zero_grad)": 3.0, "loss and step statistics": 0.5}


def test_quick_channels_last_record(tmp_path):
    import bench_channels_last
    import bench_roofline
    r = quick_record(bench_channels_last, tmp_path)
    specs = bench_roofline.model_specs(quick=True)
    assert [(row["model"], row["options"], row["batch"]) for row in
            r["rows"]] == [(n, o, b) for _, n, o, b in specs]
    for row in r["rows"]:
        assert row["check"]["option"] == "channels_last"
        assert row["check"]["ok"], row  # within speed.TOLERANCES
        assert math.isclose(row["speedup"],
                            row["channels_last_images_per_s"]
                            / row["nchw_images_per_s"])


def test_stored_channels_last_records_back_the_cpu_profile():
    # the cpu profile's channels_last on x86-64 (speed.cpu_prefers_
    # channels_last) rests on these: every network faster, within
    # tolerance, with AVX-512 kernels and limited to AVX2
    stored = REPO / "results" / "benchmarks"
    isas = set()
    for name in ("channels_last_cpu.json", "channels_last_cpu_avx2.json"):
        r = json.loads((stored / name).read_text())
        assert r["quick"] is False and r["machine"] == "x86_64"
        isas.add(r["onednn_max_cpu_isa"])
        assert len(r["rows"]) == 9
        for row in r["rows"]:
            assert row["speedup"] > 1 and row["check"]["ok"], row
    assert isas == {None, "AVX2"}
