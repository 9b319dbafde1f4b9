"""Evaluate the trained model on the holdout rows it never saw, in plain Python.

Standard library only: reads the run's model.safetensors (little-endian f32 tensors after a JSON
header) and preprocessing.json (each input column's imputation and scaling or categories, the
class names; docs/preprocessing.md), runs the MLP forward pass (ReLU hidden layers, then the
output layer) and writes metrics.json and report.md.
"""

import csv
import json
import os
import struct
import sys

model_dir, holdout_csv, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
params = json.loads(os.environ.get("AUDITAI_PARAMS", "{}"))
min_accuracy = float(params.get("evaluate.min_accuracy", 0.9))

with open(os.path.join(model_dir, "preprocessing.json")) as f:
    pre = json.load(f)
with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
    blob = f.read()
n = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8 : 8 + n])
data = blob[8 + n :]


def tensor(name):
    t = header[name]
    a, b = t["data_offsets"]
    flat = struct.unpack(f"<{(b - a) // 4}f", data[a:b])
    if len(t["shape"]) == 1:
        return list(flat)
    rows, cols = t["shape"]
    return [flat[r * cols : (r + 1) * cols] for r in range(rows)]


hidden = sorted(
    {k.split(".")[1] for k in header if k.startswith("dense.")}, key=int
)
layers = [(tensor(f"dense.{i}.weight"), tensor(f"dense.{i}.bias")) for i in hidden]
out_w, out_b = tensor("output.weight"), tensor("output.bias")


def linear(x, w, b):
    return [sum(x[i] * w[i][j] for i in range(len(x))) + b[j] for j in range(len(b))]


def predict(x):
    for w, b in layers:
        x = [max(0.0, v) for v in linear(x, w, b)]
    logits = linear(x, out_w, out_b)
    return max(range(len(logits)), key=logits.__getitem__)


classes = pre["classes"]
with open(holdout_csv, newline="") as f:
    reader = csv.DictReader(f)
    rows = list(reader)



def features(row):
    """The model's input for one raw row, as preprocessing.json (v2) says."""
    x = []
    for c in pre["columns"]:
        cell = row[c["name"]].strip()
        gap = cell in pre["dialect"]["missing"]
        if c["kind"] == "numeric":
            value = c["fill"] if gap else float(cell)
            x.append((value - c["offset"]) / c["scale"])
            if c["indicator"]:
                x.append(1.0 if gap else 0.0)
        else:
            text = (c.get("missing_as") or "<missing>") if gap else cell
            x.extend(1.0 if text == k else 0.0 for k in c["categories"])
            if c.get("other"):
                x.append(1.0 if text in c["other"] else 0.0)
    return x


confusion = [[0] * len(classes) for _ in classes]
for row in rows:
    x = features(row)
    truth = classes.index(row[pre["label"]])
    confusion[truth][predict(x)] += 1

total = sum(map(sum, confusion))
accuracy = sum(confusion[i][i] for i in range(len(classes))) / max(total, 1)
recall = {
    c: confusion[i][i] / max(sum(confusion[i]), 1) for i, c in enumerate(classes)
}
metrics = {
    "holdout_rows": total,
    "accuracy": round(accuracy, 6),
    "recall": {c: round(r, 6) for c, r in recall.items()},
    "min_accuracy": min_accuracy,
    "passed": accuracy >= min_accuracy,
}
os.makedirs(out_dir, exist_ok=True)
with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
    f.write("\n")
with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("# Breast-cancer classifier: holdout evaluation\n\n")
    f.write(f"- holdout rows: {total}\n- accuracy: {accuracy:.4f} (required {min_accuracy})\n")
    for c, r in recall.items():
        f.write(f"- recall of {c}: {r:.4f}\n")
    f.write("\n| true \\ predicted | " + " | ".join(classes) + " |\n")
    f.write("|---" * (len(classes) + 1) + "|\n")
    for c, row in zip(classes, confusion):
        f.write(f"| {c} | " + " | ".join(map(str, row)) + " |\n")
print(f"holdout accuracy {accuracy:.4f} on {total} rows")
