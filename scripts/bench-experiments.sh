#!/usr/bin/env bash
# The daily loop of a 20-stage pipeline, side by side with DVC: change one parameter and
# reproduce (all 20 stages run), then revert it and reproduce (all 20 served from the run cache).
# One `dvc.yaml` + `params.yaml`, byte for byte the same for both tools (auditai runs the
# dvc.yaml as it is): stage 1 reads `p.scale` from params.yaml through `${p.scale}` and its
# `params:` key, and every stage copies the previous stage's 1 MiB out.
# Needs hyperfine and DVC (`python3 -m venv v && v/bin/pip install dvc`; DVC=path/to/dvc).
# Usage: scripts/bench-experiments.sh [RUNS]   (default 5)
runs="${1:-5}"
source "$(dirname "$0")/bench-common.sh"
dvc="${DVC:-dvc}"
work="${BENCH_DIR:-$(mktemp -d)}"
export AUDITAI_CACHE_DIR="$work/cache" XDG_RUNTIME_DIR="$work"

mkdir -p "$work/auditai/data" "$work/dvc/data"
head -c 1048576 /dev/urandom > "$work/auditai/data/s00.bin"
cp "$work/auditai/data/s00.bin" "$work/dvc/data/s00.bin"
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
lines = ["stages:",
         "  s01:",
         "    cmd: printf '%s' ${p.scale} | cat - data/s00.bin > data/s01.bin",
         "    deps: [data/s00.bin]",
         "    params: [p.scale]",
         "    outs: [data/s01.bin]"]
for i in range(2, 21):
    lines += [f"  s{i:02d}:",
              f"    cmd: cp data/s{i-1:02d}.bin data/s{i:02d}.bin",
              f"    deps: [data/s{i-1:02d}.bin]",
              f"    outs: [data/s{i:02d}.bin]"]
for tool in ("auditai", "dvc"):
    with open(f"{work}/{tool}/dvc.yaml", "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(f"{work}/{tool}/params.yaml", "w") as f:
        f.write("p:\n  scale: 1\n")
# The commands hyperfine times and prepares with, as small scripts.
sh = {
    "auditai.sh": f'cd "{work}/auditai" && "$BIN" run dvc.yaml -q > /dev/null\n',
    "dvc.sh": f'cd "{work}/dvc" && "$DVC_BIN" repro -q > /dev/null\n',
    # p.scale in both projects: the value given, or one never run before.
    "scale.sh": 'v="${1:-$RANDOM$RANDOM}"\n'
                f'sed -i "s/scale: .*/scale: $v/" "{work}/auditai/params.yaml" "{work}/dvc/params.yaml"\n',
    # Before each revert: both at scale 2 (from their caches), then scale 1 put back.
    "revert.sh": f'bash "{work}/scale.sh" 2 && bash "{work}/auditai.sh" && bash "{work}/dvc.sh" '
                 f'&& bash "{work}/scale.sh" 1\n',
}
for name, text in sh.items():
    with open(f"{work}/{name}", "w") as f:
        f.write(text)
PY
export BIN="$bin" DVC_BIN="$dvc"
(cd "$work/dvc" && "$dvc" init --no-scm -q)
bash "$work/auditai.sh" && bash "$work/dvc.sh"
bash "$work/scale.sh" 2 && bash "$work/auditai.sh" && bash "$work/dvc.sh"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $("$dvc" --version | head -1 | sed 's/^/dvc /'); $("$bin" --version)"
hyperfine -N --warmup 1 --runs "$runs" --export-markdown "$work/change.md" \
  --prepare "bash $work/scale.sh" \
  --command-name "auditai run (1 param changed, 20 stages run)" "bash $work/auditai.sh" \
  --command-name "dvc repro (1 param changed, 20 stages run)" "bash $work/dvc.sh" || true
hyperfine -N --warmup 1 --runs "$runs" --export-markdown "$work/revert.md" \
  --prepare "bash $work/revert.sh" \
  --command-name "auditai run (reverted, 20 stages restored from the run cache)" "bash $work/auditai.sh" \
  --command-name "dvc repro (reverted, 20 stages restored from the run cache)" "bash $work/dvc.sh" || true
cat "$work/change.md" "$work/revert.md"
# Both tools, at the same scale, leave the same bytes.
bash "$work/scale.sh" 1 && bash "$work/auditai.sh" && bash "$work/dvc.sh"
for i in 01 20; do
  cmp "$work/auditai/data/s$i.bin" "$work/dvc/data/s$i.bin" && echo "s$i: same bytes"
done
