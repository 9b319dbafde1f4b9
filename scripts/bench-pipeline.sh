#!/usr/bin/env bash
# "Nothing changed" for a 20-stage pipeline, side by side with DVC: the time `auditai run`,
# `auditai status`, `dvc repro` and `dvc status` take to decide that every stage is up to date.
# The pipeline is a chain of 20 command stages (stage i copies stage i-1's out), each with a
# 1 MiB file, written identically for both tools; both run it once before the timed runs.
# Needs hyperfine and DVC (`python3 -m venv v && v/bin/pip install dvc`; DVC=path/to/dvc).
# Usage: scripts/bench-pipeline.sh [RUNS]   (default 10)
runs="${1:-10}"
source "$(dirname "$0")/bench-common.sh"
dvc="${DVC:-dvc}"
work="${BENCH_DIR:-$(mktemp -d)}"
export AUDITAI_CACHE_DIR="$work/cache" XDG_RUNTIME_DIR="$work"

for tool in auditai dvc; do
  mkdir -p "$work/$tool/data"
  head -c 1048576 /dev/urandom > "$work/$tool/data/s00.bin"
done
cp "$work/auditai/data/s00.bin" "$work/dvc/data/s00.bin"
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
stages = []
for i in range(1, 21):
    stages.append((f"s{i:02d}", f"cp data/s{i-1:02d}.bin data/s{i:02d}.bin",
                   f"data/s{i-1:02d}.bin", f"data/s{i:02d}.bin"))
with open(f"{work}/auditai/pipeline.yaml", "w") as f:
    f.write("version: 1\nname: bench\nstages:\n")
    for name, cmd, dep, out in stages:
        f.write(f"  {name}:\n    cmd: {cmd}\n    deps: [{dep}]\n    outs: [{out}]\n")
with open(f"{work}/dvc/dvc.yaml", "w") as f:
    f.write("stages:\n")
    for name, cmd, dep, out in stages:
        f.write(f"  {name}:\n    cmd: {cmd}\n    deps: [{dep}]\n    outs: [{out}]\n")
PY
(cd "$work/auditai" && "$bin" run pipeline.yaml -q > /dev/null)
(cd "$work/dvc" && "$dvc" init --no-scm -q && "$dvc" repro -q > /dev/null)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $("$dvc" --version | head -1 | sed 's/^/dvc /'); $("$bin" --version)"
hyperfine -N --warmup 2 --runs "$runs" --export-markdown "$work/pipeline.md" \
  --command-name "auditai run (20 unchanged stages)" "$bin run $work/auditai/pipeline.yaml --out $work/auditai/runs/bench -q" \
  --command-name "auditai status" "$bin status $work/auditai/pipeline.yaml --out $work/auditai/runs/bench" \
  --command-name "dvc repro (20 unchanged stages)" "bash -c 'cd $work/dvc && $dvc repro -q'" \
  --command-name "dvc status" "bash -c 'cd $work/dvc && $dvc status -q'" || true
cat "$work/pipeline.md"
