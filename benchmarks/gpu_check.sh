#!/usr/bin/env bash
# The GPU check in one call: CUDA-only tests, the ImageNet-scale
# benchmark and a short Imagenette training run, into one folder.
#
#   benchmarks/gpu_check.sh            # a CUDA machine: <= 9 minutes
#   benchmarks/gpu_check.sh --dry-run  # a CPU: every step at toy size
#
# Output: $OUT if set, else runs/gpu_check/ in the checkout (summary.md,
# summary.json, steps.tsv, one .log per step, the benchmark's JSON and
# the training run's folder). Needs python with torch >= 2.4 and
# torchvision, no network and no install (the checkout goes on
# PYTHONPATH); pytest only for the test step; a missing tqdm is
# replaced by a silent stand-in. Set PYTHON to choose the interpreter.
set -u
DRY=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$arg': use --dry-run" \
                "or no argument (--help says more)" >&2; exit 2 ;;
    esac
done
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$REPO/runs/gpu_check}
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-$(command -v python3 || command -v python)}
SAMPLE="$REPO/alexnet_lib/sample/imagenette2-224"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export ALEXNET_CACHE="$OUT/cache" PYTHONUNBUFFERED=1
START=$(date +%s)
: > "$OUT/steps.tsv"

# step NAME LIMIT_S COMMAND...: run it under a time limit, log to
# $OUT/NAME.log, append "name exit seconds" to steps.tsv
step() {
    local name=$1 limit=$2 t0 rc
    shift 2
    t0=$(date +%s)
    echo "== $name (at most ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    tail -n 4 "$OUT/$name.log" | sed 's/^/   /'
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" \
        >> "$OUT/steps.tsv"
    echo "   $name: exit $rc after $(( $(date +%s) - t0 )) s"
}
skip() {  # skip NAME REASON
    echo "== $1: skipped ($2)"
    echo "skipped: $2" > "$OUT/$1.log"
    printf '%s\tskipped\t0\n' "$1" >> "$OUT/steps.tsv"
}

# 1. What this machine has; stop early where it cannot run the check.
"$PY" - "$DRY" > "$OUT/environment.json" <<'EOF'
import importlib.util, json, platform, subprocess, sys
import torch
have = {m: importlib.util.find_spec(m) is not None
        for m in ("torchvision", "pytest", "tqdm", "numpy", "PIL")}
env = {"python": platform.python_version(), "torch": torch.__version__,
       "cuda_available": torch.cuda.is_available(),
       "devices": [torch.cuda.get_device_name(i)
                   for i in range(torch.cuda.device_count())],
       "cuda": torch.version.cuda, "modules": have,
       "dry_run": sys.argv[1] == "1"}
try:
    env["nvidia_smi"] = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
         "clocks.max.sm,power.limit", "--format=csv,noheader"],
        capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    env["nvidia_smi"] = None
print(json.dumps(env, indent=2))
EOF
if [ $? -ne 0 ]; then
    echo "gpu_check.sh: '$PY' cannot import torch: set PYTHON to an" \
         "interpreter with torch >= 2.4 and torchvision" >&2
    exit 2
fi
read -r TORCH_OK CUDA_OK HAVE_TV HAVE_PYTEST HAVE_TQDM < <("$PY" -c "
import json, sys
e = json.load(open(sys.argv[1]))
v = tuple(int(p) for p in e['torch'].split('+')[0].split('.')[:2])
m = e['modules']
print(int(v >= (2, 4)), int(e['cuda_available']), int(m['torchvision']),
      int(m['pytest']), int(m['tqdm']))" "$OUT/environment.json")
if [ "$TORCH_OK" != 1 ] || [ "$HAVE_TV" != 1 ]; then
    echo "gpu_check.sh: needs torch >= 2.4 and torchvision (see" \
         "$OUT/environment.json)" >&2
    exit 2
fi
if [ "$DRY" = 0 ] && [ "$CUDA_OK" != 1 ]; then
    echo "gpu_check.sh: no CUDA device is visible; on a CPU run" \
         "benchmarks/gpu_check.sh --dry-run" >&2
    exit 2
fi
if [ "$HAVE_TQDM" != 1 ]; then  # alexnet_lib imports tqdm for its bars
    mkdir -p "$OUT/stand-ins/tqdm"
    cat > "$OUT/stand-ins/tqdm/auto.py" <<'EOF'
"""A silent stand-in for tqdm where it is not installed."""


class tqdm:
    def __init__(self, iterable=None, *args, total=None, **kwargs):
        self.iterable, self.total, self.n = iterable, total, 0

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def update(self, n=1):
        self.n += n

    def __getattr__(self, name):  # set_postfix, refresh, close, ...
        return lambda *args, **kwargs: None

    @staticmethod
    def write(text, *args, **kwargs):
        print(text)
EOF
    cp "$OUT/stand-ins/tqdm/auto.py" "$OUT/stand-ins/tqdm/__init__.py"
    export PYTHONPATH="$PYTHONPATH:$OUT/stand-ins"
fi

# 2. The tests that need CUDA (speed options, nvJPEG decoding, the two
# towers on two devices, LRN on the GPU); on a CPU they skip.
if [ "$HAVE_PYTEST" = 1 ]; then
    step tests 110 "$PY" -m pytest -q -m gpu -p no:cacheprovider \
        --rootdir "$REPO" -c "$REPO/pyproject.toml" \
        "$REPO/tests/test_speed.py" "$REPO/tests/test_jpeg_batch.py" \
        "$REPO/tests/test_two_tower.py" "$REPO/tests/test_layers.py"
else
    skip tests "pytest is not installed here"
fi

# 3. Training steps (torchvision baseline vs the paper's AlexNet in
# fp32, bf16 + channels_last, + compile), input pipelines, and the
# 90-epoch projection.
if [ "$DRY" = 1 ]; then
    step bench 240 "$PY" "$REPO/benchmarks/bench_imagenet_scale.py" \
        --device cpu --batches 2 --steps 1 --warmup 0 --workers 0 \
        --jpegs 40 --unique-jpegs 8 --pipeline-batch 4 \
        --pipeline-batches 2 --imagenette "$SAMPLE" \
        --json "$OUT/imagenet_scale.json"
else
    step bench 290 "$PY" "$REPO/benchmarks/bench_imagenet_scale.py" \
        --device cuda --batches 128 256 512 1024 --steps 20 \
        --compile-batches 1024 --workers 8 16 --jpegs 16384 \
        --unique-jpegs 1024 --imagenette "$SAMPLE" \
        --json "$OUT/imagenet_scale.json"
fi

# 4. A short training run on the shipped Imagenette sample (500 train,
# 100 val JPEGs, 7 MB): GPU decoding, bf16, checkpoints, validation.
TRAIN=(-m alexnet_lib train --dataset imagenet --data "$SAMPLE"
       --out "$OUT/imagenette_run" --no-resume --no-progress
       --decode batched)
if [ "$DRY" = 1 ]; then
    step train 120 "$PY" "${TRAIN[@]}" --device cpu --profile ci \
        --max-steps 2 --batch-size 4 --train-subset 16 --val-subset 8 \
        --image-size 64 --resize 72 --model-option input_size=64 \
        --workers 0
else
    step train 100 "$PY" "${TRAIN[@]}" --device cuda --profile gpu \
        --epochs 30 --batch-size 64 --workers 8 --bf16 --channels-last
fi

# 5. One page: each step, the targets, the run's last metrics.
"$PY" - "$OUT" "$DRY" "$START" > "$OUT/summary.md" <<'EOF'
import json, sys, time
from pathlib import Path
out, dry, start = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = [line.split("\t") for line in
         (out / "steps.tsv").read_text().splitlines()]
env = json.loads((out / "environment.json").read_text())
summary = {"dry_run": dry, "seconds": round(time.time() - start),
           "environment": env,
           "steps": {n: {"exit": rc, "seconds": int(s)}
                     for n, rc, s in steps}}
lines = [f"# GPU check{' (dry run on a CPU)' if dry else ''}", "",
         f"torch {env['torch']}, CUDA {env['cuda']}, devices: "
         f"{', '.join(env['devices']) or 'none'}; "
         f"{summary['seconds']} s in all (limit 540 s)", "",
         "| step | exit | seconds |", "|---|---|---|"]
lines += [f"| {n} | {rc} | {s} |" for n, rc, s in steps]
bench = out / "imagenet_scale.json"
if bench.exists():
    b = json.loads(bench.read_text())
    t, p = b.get("targets", {}), b["projection"]
    summary["bench"] = {"targets": t, "projection": p}
    lines += ["", "| training step | batch | images/s |", "|---|---|---|"]
    lines += [f"| {r['name']} | {r['batch']} | "
              + (f"{r['images_per_s']:,.0f} |" if "images_per_s" in r
                 else f"skipped: {r['skipped']} |")
              for r in b["training_step"]]
    if t:
        lines += ["", f"Best paper AlexNet: {t['best']}, "
                  f"{t['best_images_per_s']:,.0f} images/s (target "
                  f"50,000), {t['ratio']:.2f}x {t['baseline']} "
                  f"(target 4x)."]
    lines += ["", f"Best input pipeline on ImageNet-size JPEGs: "
              f"{p['best_pipeline_images_per_s']:,.0f} images/s; 90 "
              f"epochs of ILSVRC-2012 projected at {p['hours']:,.2f} h."]
metrics = out / "imagenette_run" / "metrics.jsonl"
if metrics.exists():
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x]
    summary["train_last_metrics"] = rows[-1] if rows else None
    lines += ["", f"Imagenette sample run: {len(rows)} metric records; "
              f"last: {json.dumps(rows[-1]) if rows else 'none'}"]
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print("\n".join(lines))
EOF
cat "$OUT/summary.md"
echo "gpu_check.sh: everything is in $OUT"
# exit status: 1 if any step failed (a skipped step is not a failure)
! cut -f2 "$OUT/steps.tsv" | grep -qv -e '^0$' -e '^skipped$'
