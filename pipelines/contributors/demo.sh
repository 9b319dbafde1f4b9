#!/usr/bin/env bash
# The two-clinics example end to end: each clinic keeps its own key and signs the terms of its
# own rows; the trainer runs with a declared jurisdiction, verifies, audits the measured credit
# and splits a reward pool. Run from the repository root: bash pipelines/contributors/demo.sh
# (AUDITAI=path/to/auditai to use another binary). Writes only under pipelines/contributors/
# {data,keys}/ and runs/two-clinics*.
set -euo pipefail
cd "$(dirname "$0")"
A="${AUDITAI:-auditai}"
rm -rf data keys ../../runs/two-clinics ../../runs/two-clinics.replaced-* ../../runs/two-clinics-rewards.json ../../runs/two-clinics-rewards.intoto.json
mkdir -p data keys
# Clinic A holds the first 300 rows of the breast-cancer data, clinic B the other 269.
head -n 301 ../../fixtures/breast_cancer.csv > data/clinic-a.csv
{ head -n 1 ../../fixtures/breast_cancer.csv; tail -n +302 ../../fixtures/breast_cancer.csv; } > data/clinic-b.csv
for who in clinic-a clinic-b; do "$A" keygen --out "keys/$who" > /dev/null; done
trainer=$("$A" keygen --out keys/trainer --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keyid"])')
"$A" contribute data/clinic-a.csv --key keys/clinic-a.key --owner-name "Clinic A" \
  --license CC-BY-4.0 --legal-basis Consent --ai-training allowed \
  --expires 2030-12-31 \
  --reward-address 0x1111111111111111111111111111111111111111
"$A" contribute data/clinic-b.csv --key keys/clinic-b.key --owner-name "Clinic B" \
  --license CC-BY-NC-4.0 --legal-basis ScientificResearch --ai-training allowed \
  --exclude-jurisdiction US --expires 2030-12-31 \
  --reward-address 0x2222222222222222222222222222222222222222
echo "--- training in the US is refused by clinic B's terms (exit 2):"
"$A" run pipeline.yaml --jurisdiction US --policy policy.yaml --key keys/trainer.key -q || echo "exit $?"
echo "--- training in Germany:"
"$A" run pipeline.yaml --jurisdiction DE --policy policy.yaml --key keys/trainer.key -q
"$A" verify ../../runs/two-clinics/manifest.intoto.json --key keys/trainer.pub --policy policy.yaml
"$A" audit ../../runs/two-clinics/manifest.intoto.json --segments 2 --challenge 00
"$A" rewards ../../runs/two-clinics --key keys/trainer.pub --pool 1000000000000000000 \
  --compute-share 0.1 --address "$trainer=0x3333333333333333333333333333333333333333" \
  --sign-with keys/trainer.key -o ../../runs/two-clinics-rewards.json
"$A" rewards proof ../../runs/two-clinics-rewards.json 0x1111111111111111111111111111111111111111
