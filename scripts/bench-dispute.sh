#!/usr/bin/env bash
# What settling a dispute costs against a full audit, on the digits CNN: two nodes train the same
# job, one skips a step in the middle of one segment and re-signs everything after it; the signed
# game (open, respond, next, judge) is played move by move and each move timed.
# Usage: scripts/bench-dispute.sh [SEGMENT_STEPS] [EPOCHS]   (release build; python3)
source "$(dirname "$0")/bench-common.sh"
cargo build --release --locked --quiet --example dispute_bench
cheat="$CARGO_TARGET_DIR/release/examples/dispute_bench"
S="${1:-20}"
E="${2:-15}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="$work"
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
now() { date +%s.%N; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
cp fixtures/digits.csv "$work/"
sed -e 's|../fixtures/digits.csv|digits.csv|' -e "s/epochs: 15/epochs: $E/" pipelines/digits-cnn.yaml >"$work/spec.yaml"
printf 'audit:\n  every_steps: %s\n' "$S" >>"$work/spec.yaml"
cd "$work"
for k in h me referee; do "$bin" keygen --out "$k" >/dev/null; done
t0=$(now)
"$bin" run spec.yaml --device cpu --out honest --key h.key -q >/dev/null
t1=$(now)
"$bin" run spec.yaml --device cpu --out cheat --key me.key -q >/dev/null
segments=$(wc -l <honest/transcript.jsonl)
steps=$(python3 -c "import json; print(sum(json.loads(l)['steps'][1]-json.loads(l)['steps'][0] for l in open('honest/transcript.jsonl')))")
mid=$(( (segments + 1) / 2 ))
at=$(python3 -c "import json; l=open('honest/transcript.jsonl').read().splitlines()[$mid-1]; s=json.loads(l)['steps']; print((s[0]+s[1])//2)")
"$cheat" cheat . "$mid" "$at" me.key
printf 'job: digits-cnn, %d epochs, %d segments of up to %d steps (%d steps); training took %.1f s\n' \
  "$E" "$segments" "$S" "$steps" "$(echo "$t1 - $t0" | bc)"
printf 'the cheater skips step %d of segment %d\n\n' "$at" "$mid"

timed() { local a b; a=$(now); "$@" >/dev/null; b=$(now); echo "$b - $a" | bc; }
printf '%-34s %10s\n' move seconds
printf '%-34s %10.2f\n' "referee: open" "$(timed "$bin" dispute open honest cheat --key referee.key)"
round=0
party=0
while :; do
  round=$((round + 1))
  a=$(timed "$bin" dispute respond dispute.json honest --key h.key --device cpu)
  b=$(timed "$bin" dispute respond dispute.json cheat --key me.key --device cpu)
  printf '%-34s %10.2f\n' "round $round: party 1 respond" "$a" "round $round: party 2 respond" "$b"
  party=$(echo "$party + $a + $b" | bc)
  start=$(now)
  out=$("$bin" dispute next dispute.json --key referee.key)
  printf '%-34s %10.2f\n' "round $round: referee next" "$(echo "$(now) - $start" | bc)"
  case "$out" in *"one step is left"*) break ;; esac
done
start=$(now)
"$bin" dispute judge dispute.json --key referee.key --device cpu >/dev/null || true
judge=$(echo "$(now) - $start" | bc)
printf '%-34s %10.2f\n' "referee: judge (replays 1 step)" "$judge"
start=$(now)
"$bin" audit honest/manifest.intoto.json --root . --segments "$segments" --challenge 00 --quiet >/dev/null
audit=$(echo "$(now) - $start" | bc)
printf '%-34s %10.2f\n' "full audit ($steps steps)" "$audit"
echo
local_out=$("$bin" audit dispute honest cheat --json --device cpu || true)
echo "audit dispute: rounds $(json "d['rounds']" <<<"$local_out"), steps replayed by party 1 $(json "d['party_steps'][0]" <<<"$local_out"), party 2 $(json "d['party_steps'][1]" <<<"$local_out"), referee $(json "d['referee_steps']" <<<"$local_out"), full audit $(json "d['audit_steps']" <<<"$local_out"); loser $(json "d['losers'][0]['run']" <<<"$local_out")"
printf 'parties, all rounds: %.2f s; referee judge %.2f s vs full audit %.2f s (%.1fx less)\n' "$party" "$judge" "$audit" "$(echo "$audit / $judge" | bc -l)"
