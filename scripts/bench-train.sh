#!/usr/bin/env bash
# Training throughput on the CPU, side by side with PyTorch: samples per second of the training
# loop (forward, loss, backward, optimizer step over shuffled mini-batches; auditai's figure also
# includes writing and hashing each epoch's checkpoint) for four workloads, auditai
# `--device cpu` (release build) against the same model, data, batch size, epochs and optimizer
# in PyTorch (scripts/bench_train_torch.py), both with THREADS threads.
#
#   breast-cancer MLP   pipelines/breast-cancer-mlp.yaml (343 training rows, [64, 32], batch 32)
#   digits CNN          pipelines/digits-cnn.yaml (1,259 rows, conv [16, 32], [64], batch 32)
#   tabular MLP         1,000,000 x 30, [64, 32], batch 512, 3 epochs (synthetic, seeded)
#   MNIST-shaped MLP    60,000 x 784, [512, 256], batch 256, 3 epochs (synthetic, seeded)
#
# The synthetic CSVs are written once to $BENCH_DATA (default ~/.cache/auditai/bench-data).
# PyTorch comes from a venv this script creates (TORCH_VENV, default ~/.cache/auditai/torch-venv;
# `pip install torch numpy`, about 6 GB with the CUDA libraries it does not use here).
# Usage: scripts/bench-train.sh [RUNS] [THREADS]   (default 3 runs, median shown; 2 threads)
runs="${1:-3}"
threads="${2:-2}"
source "$(dirname "$0")/bench-common.sh"
repo="$PWD"
venv="${TORCH_VENV:-$HOME/.cache/auditai/torch-venv}"
data="${BENCH_DATA:-$HOME/.cache/auditai/bench-data}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import torch, numpy' 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch numpy
fi
py="$venv/bin/python"
mkdir -p "$data"
[ -f "$data/tabular.csv" ] && [ -f "$data/mnist.csv" ] || "$py" "$repo/scripts/bench_train_torch.py" data "$data"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="$work" AUDITAI_CACHE_DIR="$work/cache" RAYON_NUM_THREADS="$threads"

"$py" "$repo/scripts/bench_train_torch.py" specs "$data"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $threads threads; $("$py" -c 'import torch; print("torch", torch.__version__)')"
printf '| %-20s | %14s | %14s | %8s |\n' workload "auditai /s" "PyTorch /s" "ratio"
printf '|%s|%s|%s|%s|\n' "---" "---:" "---:" "---:"
for w in breast-cancer-mlp:"$repo/pipelines/breast-cancer-mlp.yaml" digits-cnn:"$repo/pipelines/digits-cnn.yaml" \
         tabular-mlp:"$data/tabular-mlp.yaml" mnist-mlp:"$data/mnist-mlp.yaml"; do
  name="${w%%:*}"; spec="${w#*:}"
  ours=(); theirs=()
  for i in $(seq "$runs"); do
    out="$work/$name-$i"
    "$bin" run "$spec" --device cpu --out "$out" --json --quiet > "$out.json"
    ours+=("$(grep -o '"samples_per_sec": [0-9.e+-]*' "$out.json" | awk '{print $2}')")
    # The twin trains the resolved spec the run recorded, on the same CSV.
    "$py" -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["spec"], open(sys.argv[2], "w"))' \
      "$out/summary.json" "$work/$name.spec.json"
    csv="$(cd "$(dirname "$spec")" && realpath "$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["path"])' "$work/$name.spec.json")")"
    theirs+=("$("$py" "$repo/scripts/bench_train_torch.py" train "$work/$name.spec.json" "$csv" "$threads" | grep -o '"samples_per_sec": [0-9.e+-]*' | awk '{print $2}')")
    rm -rf "$out"
  done
  a="$(printf '%s\n' "${ours[@]}" | median)"
  b="$(printf '%s\n' "${theirs[@]}" | median)"
  printf '| %-20s | %14.0f | %14.0f | %7.2fx |\n' "$name" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {print a / b}')"
done
