#!/usr/bin/env bash
# Cost of `auditai audit` against the training it checks, checkpoint disk use, and how far honest
# cross-backend replays land from the recorded weights.
# Usage: scripts/bench-audit.sh   (release build; needs python3 to read the JSON)
source "$(dirname "$0")/bench-common.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="$work"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo
echo "## checkpoint disk use (cpu, one segment per epoch)"
printf '%-20s %8s %12s\n' pipeline segments "checkpoints"
for p in iris-mlp breast-cancer-mlp digits-cnn; do
  "$bin" run "pipelines/$p.yaml" --device cpu --out "$work/$p" --quiet >/dev/null
  n=$(wc -l <"$work/$p/transcript.jsonl")
  printf '%-20s %8d %10.1f MB\n' "$p" "$n" "$(du -sb "$work/$p/checkpoints" | awk '{print $1 / 1e6}')"
done

echo
echo "## replay cost: digits-cnn on cpu, K of E segments"
run="$work/digits-cnn"
train_s=$(json "sum(e['seconds'] for e in d['epochs'])" <"$run/summary.json")
e=$(wc -l <"$run/transcript.jsonl")
printf 'training loop: %.2f s for %d segments\n' "$train_s" "$e"
printf '%4s %8s %12s %12s %10s\n' K "K/E" "replay s" "replay/train" "audit wall"
for k in 1 4 10 "$e"; do
  start=$(date +%s.%N)
  out="$("$bin" audit "$run/manifest.intoto.json" --root . --segments "$k" --challenge 00 --json --quiet)"
  end=$(date +%s.%N)
  replay=$(json "sum(s['seconds'] for s in d['segments'])" <<<"$out")
  ok=$(json "d['ok']" <<<"$out")
  [ "$ok" = True ] || { echo "audit failed: $out" >&2; exit 1; }
  awk -v k="$k" -v e="$e" -v r="$replay" -v t="$train_s" -v a="$start" -v b="$end" \
    'BEGIN {printf "%4d %8.3f %12.2f %12.3f %10.2f\n", k, k / e, r, r / t, b - a}'
done

echo
echo "## cross-backend replay: trained on wgpu, replayed on cpu (all segments)"
printf '%-20s %-40s %10s %12s %12s\n' pipeline adapter "max L∞" "max rel L2" "max cos d"
for p in iris-mlp digits-cnn; do
  spec="$work/$p-short.yaml"
  sed -E 's/epochs: [0-9]+/epochs: 4/; s#\.\./fixtures#'"$PWD"'/fixtures#' "pipelines/$p.yaml" >"$spec"
  adapter=$("$bin" run "$spec" --device wgpu --out "$work/$p-wgpu" --json --quiet | json "d['adapter']")
  out="$("$bin" audit "$work/$p-wgpu/manifest.intoto.json" --root . --device cpu --segments 100 --challenge 00 --json --quiet)"
  printf '%-20s %-40s %10.2e %12.2e %12.2e\n' "$p" "$adapter" \
    "$(json "max(s['distance']['linf'] for s in d['segments'])" <<<"$out")" \
    "$(json "max(s['distance']['relative_l2'] for s in d['segments'])" <<<"$out")" \
    "$(json "max(s['distance']['cosine_distance'] for s in d['segments'])" <<<"$out")"
done
