#!/usr/bin/env bash
# Gas per anchor transaction and per manifest for batches of 1, 100 and 10,000 manifests, on a
# local anvil (installed by .ci/run), plus the wall time of `auditai anchor` for each batch.
source "$(dirname "$0")/bench-common.sh"
anvil="${AUDITAI_ANVIL:-$HOME/.cache/auditai/npm/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil}"
work="$(mktemp -d)"
log="$work/anvil.log"
"$anvil" --host 127.0.0.1 --port 0 --chain-id 31337 > "$log" 2>&1 &
pid=$!
trap 'kill $pid; rm -rf "$work"' EXIT
until grep -q "Listening on" "$log"; do sleep 0.1; done
rpc="http://$(grep -o 'Listening on [0-9.:]*' "$log" | cut -d' ' -f3)"
export AUDITAI_ANCHOR_KEY=ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80

printf '%-10s %-12s %-18s %-10s\n' manifests "gas/tx" "gas/manifest" "wall s"
for n in 1 100 10000; do
  dir="$work/batch-$n"
  mkdir -p "$dir"
  for i in $(seq "$n"); do
    mkdir -p "$dir/$i" && printf '{"n":%d}' "$i" > "$dir/$i/manifest.intoto.json"
  done
  start=$(date +%s.%N)
  json="$(cd "$dir" && "$bin" anchor */manifest.intoto.json --chain local --rpc "$rpc" --json --quiet)"
  end=$(date +%s.%N)
  gas=$(grep -m1 -o '"gasUsed": [0-9]*' <<<"$json" | awk '{print $2}')
  awk -v n="$n" -v g="$gas" -v a="$start" -v b="$end" \
    'BEGIN { printf "%-10d %-12d %-18.2f %-10.2f\n", n, g, g / n, b - a }'
done
