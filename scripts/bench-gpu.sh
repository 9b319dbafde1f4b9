#!/usr/bin/env bash
# Training on an NVIDIA GPU: auditai `--device wgpu` (Vulkan) against a PyTorch CUDA twin of the
# same model, data, batch size, optimizer and epochs (scripts/bench_train_torch.py), four
# workloads, each twice (cold, then warm kernel caches), plus two identical wgpu runs compared
# bitwise. Prints one table. See DEVELOPERS.md, "The GPU machine".
#
#   scripts/bench-gpu.sh prepare    here (a Rust toolchain, apt): build the release binary and
#                                   put it, xz-compressed, with the Vulkan loader's Debian
#                                   packages into .gpu/ (git-ignored; about 14 MB to carry)
#   scripts/bench-gpu.sh            there (NVIDIA driver, python3 with torch and numpy, no Rust,
#                                   no network): unpack .gpu/, run, print the table
#
# Workloads as in scripts/bench-train.sh: breast-cancer MLP and digits CNN (bundled), a
# 1,000,000 x 30 tabular MLP [64, 32] batch 512 and a 60,000 x 784 MLP [512, 256] batch 256
# (synthetic, seeded; written to $BENCH_DATA, default /tmp/auditai-bench-data).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
gpu="$repo/.gpu"

prepare() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auditai/target}"
  cargo build --release --locked --quiet
  mkdir -p "$gpu/debs" /tmp/amd64/partial
  xz -T0 -6 -c "$CARGO_TARGET_DIR/release/auditai" > "$gpu/auditai.xz.tmp"
  mv "$gpu/auditai.xz.tmp" "$gpu/auditai.xz"
  local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update -qq
  (cd "$gpu/debs" && apt-get "${o[@]}" download libvulkan1 > /dev/null)
  du -sh "$gpu"
  echo "carry .gpu and run: bash scripts/bench-gpu.sh"
}

# The binary and the Vulkan loader; the NVIDIA driver's ICD file comes with the driver.
setup() {
  [ -f "$gpu/auditai.xz" ] || { echo "no .gpu/auditai.xz: run 'scripts/bench-gpu.sh prepare' first" >&2; exit 2; }
  mkdir -p /tmp/auditai-gpu
  bin=/tmp/auditai-gpu/auditai
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$gpu/auditai.xz" "$bin"
  chmod +x "$bin"
  if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
    for f in "$gpu"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
}


field() { grep -o "\"$1\": [0-9.e+-]*" | head -1 | awk '{print $2}'; }

# One auditai run on wgpu; prints samples/s. $3 is the kernel cache directory (cold when empty).
ours() { # spec out cache
  XDG_CACHE_HOME="$3" AUDITAI_CACHE_DIR="$3/auditai" __GL_SHADER_DISK_CACHE_PATH="$3/nv" \
    "$bin" run "$1" --device wgpu --out "$2" --json --quiet > "$2.json"
  field samples_per_sec < "$2.json"
}

theirs() { # name spec-file
  python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["spec"], open(sys.argv[2], "w"))' \
    "$work/$1-cold/summary.json" "$work/$1.spec.json"
  local csv
  csv="$(cd "$(dirname "$2")" && realpath "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["path"])' "$work/$1.spec.json")")"
  python3 "$repo/scripts/bench_train_torch.py" train "$work/$1.spec.json" "$csv" "$(nproc)" cuda | field samples_per_sec
}

bench() {
  setup
  local data="${BENCH_DATA:-/tmp/auditai-bench-data}"
  mkdir -p "$data"
  [ -f "$data/tabular.csv" ] && [ -f "$data/mnist.csv" ] || python3 "$repo/scripts/bench_train_torch.py" data "$data"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  export XDG_RUNTIME_DIR="$work"
  python3 "$repo/scripts/bench_train_torch.py" specs "$data"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
  "$bin" --version
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  printf '| %-18s | %12s | %12s | %12s | %12s | %7s | %-8s |\n' workload "wgpu cold/s" "wgpu warm/s" \
    "torch cold/s" "torch warm/s" "ratio" "bitwise"
  printf '|%s|%s|%s|%s|%s|%s|%s|\n' "---" "---:" "---:" "---:" "---:" "---:" "---"
  for w in breast-cancer-mlp:"$repo/pipelines/breast-cancer-mlp.yaml" digits-cnn:"$repo/pipelines/digits-cnn.yaml" \
           tabular-mlp:"$data/tabular-mlp.yaml" mnist-mlp:"$data/mnist-mlp.yaml"; do
    local name="${w%%:*}" s="${w#*:}" cache="$work/cache-${w%%:*}"
    mkdir -p "$cache"
    local c1 c2 t1 t2 same
    c1="$(ours "$s" "$work/$name-cold" "$cache")"
    c2="$(ours "$s" "$work/$name-warm" "$cache")"
    t1="$(theirs "$name" "$s")"
    t2="$(theirs "$name" "$s")"
    # Two identical runs: every checkpoint (weights and optimizer state) must be the same bytes.
    same=yes
    for f in "$work/$name-cold"/checkpoints/*.bpk "$work/$name-cold/model.bpk"; do
      cmp -s "$f" "$work/$name-warm/${f#"$work/$name-cold/"}" || same=NO
    done
    printf '| %-18s | %12.0f | %12.0f | %12.0f | %12.0f | %6.2fx | %-8s |\n' "$name" "$c1" "$c2" "$t1" "$t2" \
      "$(awk -v a="$c2" -v b="$t2" 'BEGIN {print a / b}')" "$same"
  done
  echo "ratio: warm wgpu / warm PyTorch CUDA; bitwise: the two wgpu runs' checkpoints and model are identical"
}

case "${1:-}" in
  prepare) prepare ;;
  "") bench ;;
  *) echo "usage: scripts/bench-gpu.sh [prepare]" >&2; exit 2 ;;
esac
