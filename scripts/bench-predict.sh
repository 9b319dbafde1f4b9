#!/usr/bin/env bash
# Prediction throughput on the CPU, release build: `auditai predict` (verify, stream the CSV,
# preprocess, forward pass, write CSV) against the same model evaluated in NumPy (the run's
# model.safetensors and preprocessing.json loaded in Python; the same CSV parsed with the csv
# module, batches of 4,096 rows, the same softmax and CSV output).
# PyTorch is not measured: PyPI's torch wheel for Linux needs the CUDA runtime libraries (several
# GB) even on the CPU, and this machine reaches only PyPI.
# Needs hyperfine and a Python with NumPy (PYTHON=path/to/python, default python3).
# Usage: scripts/bench-predict.sh [RUNS] [ROWS]   (default 5 runs, 1,000,000 rows)
runs="${1:-5}"
rows="${2:-1000000}"
source "$(dirname "$0")/bench-common.sh"
python="${PYTHON:-python3}"
repo="$PWD"
work="${BENCH_DIR:-$(mktemp -d)}"
export AUDITAI_CACHE_DIR="$work/cache" XDG_RUNTIME_DIR="$work"
cd "$work"

[ -f bench.key ] || "$bin" keygen --out bench > /dev/null
if [ ! -f run/manifest.intoto.json ]; then
  cp "$repo/fixtures/breast_cancer.csv" .
  sed 's|../fixtures/breast_cancer.csv|breast_cancer.csv|; s|device: auto|device: cpu|' \
    "$repo/pipelines/breast-cancer-mlp.yaml" > spec.yaml
  "$bin" run spec.yaml --out run --key bench.key -q > /dev/null
fi
"$python" - "$rows" <<'PY'
import sys
rows = int(sys.argv[1])
src = open("breast_cancer.csv").read().splitlines()
head, body = src[0], src[1:]
with open("input.csv", "w") as f:
    f.write(head + "\n")
    for i in range(rows):
        f.write(body[i % len(body)] + "\n")
PY
cat > numpy_predict.py <<'PY'
import csv, json, struct, sys
import numpy as np
run, inp, out = sys.argv[1:4]
pre = json.load(open(f"{run}/preprocessing.json"))
blob = open(f"{run}/model.safetensors", "rb").read()
n = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + n])
data = blob[8 + n:]
def t(name):
    a, b = header[name]["data_offsets"]
    return np.frombuffer(data[a:b], dtype="<f4").reshape(header[name]["shape"])
layers = sorted({k.split(".")[1] for k in header if k.startswith("dense.")}, key=int)
ws = [(t(f"dense.{i}.weight"), t(f"dense.{i}.bias")) for i in layers]
ow, ob = t("output.weight"), t("output.bias")
cols_ = pre["columns"]  # every column is numeric here, without gaps
off = np.array([c["offset"] for c in cols_], "f4")
sc = np.array([c["scale"] for c in cols_], "f4")
classes = pre["classes"]
r = csv.reader(open(inp))
cols = next(r)
idx = [cols.index(c["name"]) for c in cols_]
w = open(out, "w")
w.write("row,prediction," + ",".join("p_" + c for c in classes) + "\n")
row = 0
def flush(batch):
    global row
    x = (np.array(batch, "f4") - off) / sc
    for wt, b in ws:
        x = np.maximum(x @ wt + b, 0)
    z = x @ ow + ob
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    for k in range(len(p)):
        row += 1
        w.write(f"{row},{classes[int(p[k].argmax())]}," + ",".join(f"{v:.7g}" for v in p[k]) + "\n")
batch = []
for rec in r:
    batch.append([float(rec[i]) for i in idx])
    if len(batch) == 4096:
        flush(batch); batch = []
if batch:
    flush(batch)
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $rows rows, $(du -h input.csv | cut -f1) input; $("$python" -c 'import numpy; print("numpy", numpy.__version__)')"
hyperfine -N --warmup 1 --runs "$runs" --export-markdown predict.md \
  --command-name "auditai predict (verify + predict, CSV out)" "bash -c 'rm -f out.csv; $bin predict run --input input.csv --output out.csv --key bench.pub -q'" \
  --command-name "auditai predict --log (one hash-chained entry per row)" "bash -c 'rm -f log.jsonl out.csv; $bin predict run --input input.csv --output out.csv --key bench.pub --log log.jsonl -q'" \
  --command-name "NumPy (same model, same CSV in and out)" "$python numpy_predict.py run input.csv out_np.csv"
cat predict.md
