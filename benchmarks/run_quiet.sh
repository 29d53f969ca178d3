#!/usr/bin/env bash
# The CPU speed records, in one go, on a quiet machine (nothing else
# running: the rows are compared with each other). About 10 minutes on
# 2 cores; CIFAR-10 must be in the data folder ($ALEXNET_DATA). Writes
# results/benchmarks/*.json; PYTHON picks the interpreter (default
# .venv/bin/python).
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
R=results/benchmarks
# peak FLOP/s, each model's share of it, LRN's share of a step, LRN alone
"$PY" benchmarks/bench_roofline.py --json "$R/roofline_cpu.json"
# the models again as the library ran before its CPU speed-ups (blocked
# PyTorch LRN kernel, glibc unmapping freed activations), then with only
# the LRN kernel switched back: the before/after on one machine
ALEXNET_LRN_KERNEL=torch ALEXNET_MALLOC=default "$PY" benchmarks/bench_roofline.py \
    --skip peak lrn --peak-from "$R/roofline_cpu.json" \
    --json "$R/roofline_cpu_before.json"
ALEXNET_LRN_KERNEL=torch "$PY" benchmarks/bench_roofline.py --skip peak lrn \
    --peak-from "$R/roofline_cpu.json" --json "$R/roofline_cpu_blocked_lrn.json"
# the compiled kernel as it ran before it shared PyTorch's OpenMP threads
# and was fused with the max-pooling after it
ALEXNET_FUSE_LRN_POOL=0 ALEXNET_LRN_THREADS=python "$PY" \
    benchmarks/bench_roofline.py --skip peak lrn \
    --peak-from "$R/roofline_cpu.json" --json "$R/roofline_cpu_unfused.json"
# paper AlexNet with and without LRN, torchvision's, LRN vs torch's
"$PY" benchmarks/bench_alexnet_cpu.py --json "$R/alexnet_cpu.json"
# the CIFAR proxy end to end (in-memory data, tensor augmentation)
"$PY" benchmarks/bench_cifar_pipeline.py --crop 27 --model alexnet_cifar \
    --json "$R/cifar_pipeline_alexnet_cifar.json"
# one seeded proxy arm in float32 and in bf16 + channels_last
"$PY" benchmarks/bench_bf16_proxy.py --json "$R/bf16_proxy.json"
# where a proxy training step's time goes (torch.profiler, by layer kind)
"$PY" benchmarks/bench_proxy_profile.py \
    --json "$R/proxy_profile_alexnet_cifar.json"
# ImageNet-scale steps at small batches, input pipelines, 90-epoch time
"$PY" benchmarks/bench_imagenet_scale.py --device cpu \
    --json "$R/imagenet_scale_cpu.json"
# float32 NCHW against channels_last, with AVX-512 and limited to AVX2
"$PY" benchmarks/bench_channels_last.py --json "$R/channels_last_cpu.json"
ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 "$PY" \
    benchmarks/bench_channels_last.py --json "$R/channels_last_cpu_avx2.json"
