"""Benchmark scripts in their quick modes: the records they write."""
import json
import math
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_roofline  # noqa: E402


def test_quick_roofline_record(tmp_path):
    threads = torch.get_num_threads()
    try:
        bench_roofline.main(["--quick", "--threads", "1", "--bf16",
                             "--json", str(tmp_path / "r.json")])
    finally:
        torch.set_num_threads(threads)
    r = json.loads((tmp_path / "r.json").read_text())
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
    threads = torch.get_num_threads()
    try:
        bench_bf16_proxy.main(["--quick", "--threads", "1",
                               "--json", str(tmp_path / "b.json")])
    finally:
        torch.set_num_threads(threads)
    r = json.loads((tmp_path / "b.json").read_text())
    a, b = r["runs"]["float32"], r["runs"]["bf16 + channels_last"]
    assert a["seed"] == b["seed"] == 0
    assert a["parameters"] == b["parameters"]  # the same network
    assert r["bf16_minus_float32"]["test_error"] == round(
        b["test_error"] - a["test_error"], 4)
    assert (r["train_images"], r["test_images"]) == (2000, 1017)
