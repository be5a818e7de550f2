#!/usr/bin/env bash
# Check galaug's CUDA path on one GPU and print throughput; sized for under 8 minutes on one H100.
#
#   bash benchmarks/gpu.sh                      # python: $PYTHON, else .venv/bin/python, else python3
#   OUT=/some/dir bash benchmarks/gpu.sh        # logs and tables to $OUT; scratch data deleted at the end
#   GPU_SH_REHEARSE=1 bash benchmarks/gpu.sh    # no GPU: the same commands with --device cpu, tiny benchmarks
#   GPU_SH_DATA=DIR bash benchmarks/gpu.sh      # no GalSim there: DIR holds data.zarr and val.zarr made by
#       galaug simulate sersic DIR/data.zarr -n 512 --size 64 --seed 0; ... DIR/val.zarr -n 64 --size 64 --seed 1
#
# Steps, each with --device cuda: a 64 px Sersic dataset (galaug simulate, on the CPU),
# 20 ALAE training steps (tiny widths at 64 px; again with amp=bf16, channels_last and
# 4 loader workers when AlaeConfig has those fields), generation (and the same samples
# from the CUDA-trained checkpoint on the CPU: small differences are expected, cuDNN
# convolutions use TF32 by default), the same generation and 4 training steps with --nproc 2
# on the one device, degradation (its provenance must record cuda), a
# denoiser run of two short epochs with 2 loader workers and its evaluation; then
# benchmarks/alae.py on the GPU at 32, 64 and 128 px (fp32; bf16 + channels-last when
# available; the `paper` widths at 128 and 256 px), and nvidia-smi. Exits 0 at once,
# with a message, where torch sees no CUDA device. galaug and its plugins must be
# installed for that python (pip install -e . -e plugins/alae -e plugins/denoise).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n ${PYTHON:-} ]]; then PY=$PYTHON
elif [[ -x $root/.venv/bin/python ]]; then PY=$root/.venv/bin/python
else PY=python3
fi
rehearse=${GPU_SH_REHEARSE:-0}
dev=cuda
steps=20            # ALAE training steps
denoise_steps=20    # denoiser steps per epoch, at most
bench_extra=()
if [[ $rehearse == 1 ]]; then
    dev=cpu
    steps=4
    denoise_steps=2
    bench_extra=(--sizes 32 --batch 4 --gen-batch 8 --reps 1 --warmup 0 --loader-mb 4)
    echo "rehearsal: every command with --device cpu, benchmarks at 32 px only; no throughput figure means anything"
else
    if ! cuda=$("$PY" -c 'import torch; print(torch.cuda.is_available())'); then
        echo "gpu.sh: $PY cannot import torch" >&2
        exit 1
    fi
    if [[ $cuda != True ]]; then
        echo "no CUDA device: nothing to check ($PY, torch sees no GPU)"
        exit 0
    fi
fi
if ! "$PY" -c 'import galaug, galaug_alae, galaug_denoise' 2>/dev/null; then
    echo "gpu.sh: $PY cannot import galaug and its plugins; pip install -e . -e plugins/alae -e plugins/denoise" >&2
    exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/galaug-gpu.XXXXXX")
if [[ -n ${OUT:-} ]]; then
    logs=$OUT
    trap 'rm -rf "$scratch"' EXIT
else
    logs=$scratch/logs
fi
work=$scratch/work
mkdir -p "$logs" "$work"
exec > >(tee "$logs/gpu.log") 2>&1
cd "$work"
export PYTHONUNBUFFERED=1

galaug() { "$PY" -m galaug "$@"; }
summary=()
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# step LABEL IMAGES CMD...: run CMD, record its wall time (process start-up included) and IMAGES / wall
step() {
    local label=$1 n=$2 t0 ms
    shift 2
    echo
    echo "== $label: $*"
    t0=$(now_ms)
    "$@"
    ms=$(( $(now_ms) - t0 ))
    last_s=$(awk -v ms="$ms" 'BEGIN { printf "%.1f", ms / 1000 }')
    if (( n > 0 )); then
        summary+=("$(awk -v l="$label" -v ms="$ms" -v n="$n" \
            'BEGIN { printf "%-46s %7.1f s  %9.0f img/s (wall, start-up included)", l, ms / 1000, n * 1000 / ms }')")
    else
        summary+=("$(printf '%-46s %7s s' "$label" "$last_s")")
    fi
}
# last_rate FILE: images_per_s of the last line of a metrics.jsonl
last_rate() {
    "$PY" -c 'import json, sys
print(round(json.loads(open(sys.argv[1]).read().splitlines()[-1])["images_per_s"]))' "$1"
}

echo "galaug CUDA check, $(date -u +%FT%TZ), python $PY, scratch $work, logs $logs"
"$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN",
  torch.backends.cudnn.version(), *(["device", torch.cuda.get_device_name()] if torch.cuda.is_available() else []))'
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
fi

n=512
pipe="psf:gaussian(sigma=1.5)|noise:gaussian(std=5)"
if [[ -n ${GPU_SH_DATA:-} ]]; then  # made elsewhere, for a GPU machine without GalSim
    echo "data.zarr and val.zarr from $GPU_SH_DATA"
    cp -r "$GPU_SH_DATA/data.zarr" "$GPU_SH_DATA/val.zarr" .
else
    step "simulate sersic, $n x 64 px (CPU)" $n \
        galaug simulate sersic data.zarr -n $n --size 64 --workers 8 --seed 0
    step "simulate sersic, 64 x 64 px val (CPU)" 0 \
        galaug simulate sersic val.zarr -n 64 --size 64 --seed 1
fi

# AlaeConfig's GPU options (amp, channels_last, loader_workers), where this galaug_alae has them
gpu_options=$("$PY" -c 'import dataclasses; from galaug_alae.generator import AlaeConfig
print(int({"amp", "channels_last", "loader_workers"} <= {f.name for f in dataclasses.fields(AlaeConfig)}))')

step "train alae, tiny@64, $steps steps" 0 \
    galaug train alae data.zarr --preset tiny --set image_size=64 --steps $steps --device $dev --run-dir runs
alae_run=$(ls -d runs/*-alae-data)
summary+=("  (steady training rate in metrics.jsonl: $(last_rate "$alae_run/metrics.jsonl") img/s, batch 16)")
if [[ $gpu_options == 1 ]]; then
    step "train alae, same, bf16, channels-last, 4 workers" 0 \
        galaug train alae data.zarr --preset tiny --set image_size=64 --set amp=bf16 --set channels_last=true \
            --set loader_workers=4 --steps $steps --device $dev --run-dir runs-bf16
    summary+=("  (steady training rate in metrics.jsonl: $(last_rate runs-bf16/*-alae-data/metrics.jsonl) img/s)")
else
    summary+=("train alae with amp/channels_last/loader_workers: skipped, AlaeConfig has no such fields")
fi

step "generate 2048 images" 2048 \
    galaug generate alae "$alae_run" gen.zarr -n 2048 --device $dev
step "generate 64 images on the CPU from that run" 0 \
    galaug generate alae "$alae_run" gen-cpu.zarr -n 64 --device cpu
gap=$("$PY" -c 'import galaug, numpy as np
a, b = (galaug.open_dataset(p).read(0, 64, fields=["images"])["images"] for p in ("gen.zarr", "gen-cpu.zarr"))
print(f"{np.abs(a - b).max() / b.std():.2e}")')
echo "the same 64 samples generated on $dev and on the CPU: max |difference| / std = $gap"
summary+=("  (the same 64 samples on $dev and on the CPU: max |difference| / std $gap)")

# two processes on this one GPU: generation shards the rows, training averages gradients (gloo then,
# since NCCL refuses two ranks on one GPU)
step "generate 2048 images, --nproc 2 on one device" 2048 \
    galaug generate alae "$alae_run" gen-2p.zarr -n 2048 --device $dev --nproc 2
gap2=$("$PY" -c 'import galaug, numpy as np
a, b = (galaug.open_dataset(p).read(fields=["images"])["images"] for p in ("gen.zarr", "gen-2p.zarr"))
print(f"{np.abs(a - b).max() / b.std():.2e}")')
echo "generated by 2 processes and by 1: max |difference| / std = $gap2"
summary+=("  (2048 samples by 2 processes and by 1 on $dev: max |difference| / std $gap2)")
step "train alae, tiny@64, 4 steps, --nproc 2 on one device" 0 \
    galaug train alae data.zarr --preset tiny --set image_size=64 --steps 4 --device $dev --run-dir runs-2p --nproc 2

step "degrade $n images" $n \
    galaug degrade data.zarr deg.zarr --pipeline "$pipe" --device $dev
recorded=$("$PY" -c 'import galaug, sys
print(galaug.open_dataset(sys.argv[1]).provenance[-1]["config"]["device"])' deg.zarr)
echo "degrade provenance records device: $recorded"
if [[ $recorded != "$dev" ]]; then
    echo "gpu.sh: degrade ran on $recorded, not $dev" >&2
    exit 1
fi
summary+=("  (provenance of deg.zarr records device $recorded)")

step "task train denoise, 2 epochs" 0 \
    galaug task train denoise data.zarr --degrade "$pipe" --set epochs=2 --set max_steps_per_epoch=$denoise_steps \
        --set num_workers=2 --device $dev --run-dir runs
denoise_run=$(ls -d runs/*-denoise-data)
summary+=("  (steady training rate in metrics.jsonl: $(last_rate "$denoise_run/metrics.jsonl") img/s, batch 64)")
step "task eval denoise, 64 images" 0 \
    galaug task eval denoise "$denoise_run" val.zarr --device $dev

tee_to() { local file=$1; shift; "$@" | tee "$file"; }  # tee_to FILE CMD...: CMD's output also in FILE
bench() {  # bench NAME ARGS...: benchmarks/alae.py on the device, its output also in $logs/alae-NAME.txt
    local name=$1
    shift
    step "benchmarks/alae.py $name" 0 \
        tee_to "$logs/alae-$name.txt" "$PY" "$root/benchmarks/alae.py" --device $dev "$@" "${bench_extra[@]}"
}
bench fp32 --sizes 32 64 128 --reps 10 --warmup 3
if [[ $gpu_options == 1 ]]; then
    bench bf16-cl --sizes 32 64 128 --reps 10 --warmup 3 --amp bf16 --channels-last
else
    echo "AlaeConfig has no amp / channels_last fields: the bf16 and channels-last benchmark skipped"
    summary+=("benchmarks/alae.py bf16 + channels-last: skipped, AlaeConfig has no such fields")
fi
bench paper --preset paper --sizes 128 256 --batch 32 --gen-batch 64 --reps 5 --warmup 2 --no-loader

echo
if command -v nvidia-smi >/dev/null; then
    nvidia-smi | tee "$logs/nvidia-smi.txt"
else
    echo "no nvidia-smi on PATH"
fi

{
    echo
    echo "== summary ($dev; logs in $logs)"
    printf '%s\n' "${summary[@]}"
    for f in "$logs"/alae-*.txt; do
        echo
        echo "-- $(basename "$f")"
        cat "$f"
    done
} | tee "$logs/summary.txt"
