"""Three small steps over the iris rows, to show independent stages running in parallel.

Standard library only. `features` writes per-feature means, `classes` per-class counts (the two
read the same CSV and do not depend on each other), `summary` joins both into a report.
"""

import csv
import json
import sys

mode = sys.argv[1]
if mode in ("features", "classes"):
    with open(sys.argv[2], newline="") as f:
        rows = list(csv.DictReader(f))
    if mode == "features":
        names = [k for k in rows[0] if k != "species"]
        out = {n: round(sum(float(r[n]) for r in rows) / len(rows), 6) for n in names}
    else:
        out = {}
        for r in rows:
            out[r["species"]] = out.get(r["species"], 0) + 1
    with open(sys.argv[3], "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"{mode}: {len(out)} entries from {len(rows)} rows")
elif mode == "summary":
    features = json.load(open(sys.argv[2]))
    classes = json.load(open(sys.argv[3]))
    with open(sys.argv[4], "w") as f:
        f.write("# Iris summary\n\n")
        for n, m in sorted(features.items()):
            f.write(f"- mean {n}: {m}\n")
        for c, k in sorted(classes.items()):
            f.write(f"- {c}: {k} rows\n")
    with open(sys.argv[5], "w") as f:
        json.dump({"rows": sum(classes.values()), "classes": len(classes)}, f, sort_keys=True)
        f.write("\n")
else:
    sys.exit(f"unknown mode {mode}")
