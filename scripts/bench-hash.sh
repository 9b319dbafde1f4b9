#!/usr/bin/env bash
# Hashing and verification speed, release build, side by side with b3sum and sha256sum:
#   - one 1 GiB file;
#   - a directory of 10,000 files of 1-16 KiB;
#   - `auditai verify` on a ~1 GiB run directory (a wide MLP's checkpoints).
# Needs hyperfine and b3sum (`apt-get install hyperfine`, `cargo install b3sum`).
# Usage: scripts/bench-hash.sh [RUNS]   (default 7; hyperfine reports mean and median)
runs="${1:-7}"
source "$(dirname "$0")/bench-common.sh"
repo="$PWD"
work="${BENCH_DIR:-$(mktemp -d)}"
export AUDITAI_CACHE_DIR="$work/cache" XDG_RUNTIME_DIR="$work"
cd "$work"

[ -f big.bin ] || dd if=/dev/urandom of=big.bin bs=1M count=1024 status=none
if [ ! -d many ]; then
  python3 - <<'PY'
import os, random
random.seed(1)
for i in range(10000):
    d = f"many/d{i % 100:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}.bin", "wb") as f:
        f.write(os.urandom(random.randint(1024, 16384)))
PY
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), files in page cache (warm runs)"
hyperfine -N --warmup 1 --runs "$runs" --export-markdown big.md \
  "$bin hash --no-cache big.bin" "$bin hash big.bin" "b3sum big.bin" "sha256sum big.bin"
hyperfine --warmup 1 --runs "$runs" --export-markdown many.md \
  "$bin hash --no-cache many" \
  "$bin hash many" \
  "find many -type f -print0 | xargs -0 b3sum > /dev/null" \
  "find many -type f -print0 | xargs -0 sha256sum > /dev/null"

# A ~1 GiB run directory: an MLP with two 4096-wide layers trained for 4 epochs on iris.
if [ ! -f wide/r/manifest.intoto.json ]; then
  mkdir -p wide
  cp "$repo/fixtures/iris.csv" wide/
  printf 'version: 1\nname: wide\nseed: 1\ndata:\n  path: iris.csv\n  label: species\n  task: classification\nmodel:\n  type: mlp\n  hidden: [4096, 4096]\ntraining:\n  epochs: 4\n' > wide/spec.yaml
  [ -f wide/k.key ] || (cd wide && "$bin" keygen --out k > /dev/null)
  (cd wide && "$bin" run spec.yaml --device cpu --out r --key k.key --quiet > /dev/null)
fi
du -sh wide/r
hyperfine -N --warmup 1 --runs "$runs" --export-markdown verify.md \
  "$bin verify wide/r/manifest.intoto.json --key wide/k.pub --root wide"
cat big.md many.md verify.md
