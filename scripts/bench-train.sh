#!/usr/bin/env bash
# Training throughput of the release build: samples/s of the training loop (forward, backward,
# optimizer step; checkpointing and validation excluded), as recorded in summary.json.
# Usage: scripts/bench-train.sh [RUNS]   (default 3 runs per pipeline and device; the median is shown)
runs="${1:-3}"
source "$(dirname "$0")/bench-common.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="$work"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
printf '%-20s %-6s %-45s %12s %10s\n' pipeline device adapter "samples/s" "wall s"
for pipeline in digits-cnn breast-cancer-mlp; do
  for device in cpu wgpu; do
    rates=()
    walls=()
    adapter=""
    for i in $(seq "$runs"); do
      start=$(date +%s.%N)
      json="$("$bin" run "pipelines/$pipeline.yaml" --device "$device" --out "$work/$pipeline-$device-$i" --json --quiet)"
      end=$(date +%s.%N)
      rates+=("$(grep -o '"samples_per_sec": [0-9.e+-]*' <<<"$json" | awk '{print $2}')")
      walls+=("$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')")
      adapter="$(grep -o '"adapter": "[^"]*"' <<<"$json" | cut -d'"' -f4)"
    done
    median_rate="$(printf '%s\n' "${rates[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    median_wall="$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
    printf '%-20s %-6s %-45s %12.0f %10.2f\n' "$pipeline" "$device" "$adapter" "$median_rate" "$median_wall"
  done
done
