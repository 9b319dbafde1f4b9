"""Clean the breast-cancer rows and carve out a holdout set before training.

Standard library only. The holdout rows get one more column, `size_band` (`small` when
mean_radius < 13, else `large`), a subgroup to judge the model on (`auditai eval --by
size_band`); it is not in the training rows, so it is never a model feature. Rows with an empty or non-numeric feature are dropped (and counted); the
holdout is chosen by a hash of each row's text, so the split is the same on every machine and
does not depend on row order. The holdout fraction comes from the spec's params
(AUDITAI_PARAMS, set by auditai for the stage).
"""

import csv
import hashlib
import json
import os
import sys

src, out_dir = sys.argv[1], sys.argv[2]
params = json.loads(os.environ.get("AUDITAI_PARAMS", "{}"))
holdout = float(params.get("prepare.holdout_fraction", 0.15))

with open(src, newline="") as f:
    rows = list(csv.reader(f))
header, body = rows[0], rows[1:]
label = header.index("diagnosis")

kept, dropped = [], 0
for row in body:
    features = [v for i, v in enumerate(row) if i != label]
    try:
        [float(v) for v in features]
    except ValueError:
        dropped += 1
        continue
    if len(row) != len(header) or not row[label]:
        dropped += 1
        continue
    kept.append(row)

os.makedirs(out_dir, exist_ok=True)
train, test = [], []
for row in kept:
    h = hashlib.sha256(",".join(row).encode()).digest()
    (test if int.from_bytes(h[:8], "big") / 2**64 < holdout else train).append(row)

radius = header.index("mean_radius")
with open(os.path.join(out_dir, "train.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(header)
    w.writerows(train)
with open(os.path.join(out_dir, "holdout.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(header + ["size_band"])
    w.writerows(r + ["small" if float(r[radius]) < 13 else "large"] for r in test)

print(f"kept {len(kept)} rows, dropped {dropped}; {len(train)} for training, {len(test)} held out")
