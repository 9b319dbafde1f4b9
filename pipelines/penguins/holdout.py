"""Set aside holdout rows of a raw CSV, byte for byte: no cleaning, no parsing of values.

Standard library only. Each data line goes to the holdout file when a hash of its text falls
under the fraction (from the spec's params, AUDITAI_PARAMS), so the split is the same on every
machine and does not depend on row order. Lines are copied as they are: the text columns, the
`NA` cells and the line endings reach auditai exactly as they were published.
"""

import hashlib
import json
import os
import sys

src, out_dir = sys.argv[1], sys.argv[2]
params = json.loads(os.environ.get("AUDITAI_PARAMS", "{}"))
fraction = float(params.get("holdout.fraction", 0.2))

with open(src, "rb") as f:
    header, *lines = f.read().splitlines(keepends=True)

train, holdout = [header], [header]
for line in lines:
    h = hashlib.sha256(line.rstrip(b"\r\n")).digest()
    (holdout if int.from_bytes(h[:8], "big") / 2**64 < fraction else train).append(line)

os.makedirs(out_dir, exist_ok=True)
for name, rows in (("train.csv", train), ("holdout.csv", holdout)):
    tmp = os.path.join(out_dir, name + ".tmp")
    with open(tmp, "wb") as f:
        f.writelines(rows)
    os.replace(tmp, os.path.join(out_dir, name))

print(f"{len(train) - 1} rows for training, {len(holdout) - 1} held out")
