#!/usr/bin/env bash
# Raw data, side by side with scikit-learn: the same raw CSVs (text columns, NA cells, quoted
# fields) through `auditai run` + `auditai eval` and through scikit-learn's equivalent pipeline
# (ColumnTransformer of SimpleImputer(median, add_indicator) + StandardScaler and
# SimpleImputer(constant) + OneHotEncoder, then MLPClassifier or, inside a
# TransformedTargetRegressor with a StandardScaler, MLPRegressor), with the same hidden sizes,
# activation, optimizer, learning rate, batch size, epochs and no weight decay.
#
# Each dataset is split once into train.csv and test.csv (every 5th row held out, by a seeded
# shuffle); both tools fit on train.csv (auditai keeps 10 % of it as its validation split; no
# early stopping on either side) and are scored on test.csv. Scores are the mean over SEEDS
# seeds; times are the median wall time of whole processes for the first seed (auditai: `run`,
# which also writes checkpoints, the transcript and the signed manifest, then `eval`, which
# verifies the signature before loading; scikit-learn: the Python process that reads the CSVs,
# fits and scores).
# Needs a Python with scikit-learn and pandas (PYTHON=path/to/python, default python3).
# Usage: scripts/bench-rawdata.sh [SEEDS] [RUNS]   (default 5 seeds, 3 timed runs)
seeds="${1:-5}"
runs="${2:-3}"
source "$(dirname "$0")/bench-common.sh"
python="${PYTHON:-python3}"
repo="$PWD"
work="${BENCH_DIR:-$(mktemp -d)}"
export AUDITAI_CACHE_DIR="$work/cache" XDG_RUNTIME_DIR="$work"
cd "$work"
cp "$repo/fixtures/penguins.csv" "$repo/fixtures/penguins-raw.csv" .
[ -f bench.key ] || "$bin" keygen --out bench > /dev/null

cat > sk.py <<'PY'
import json, sys, warnings
import numpy as np, pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
warnings.filterwarnings("ignore")  # max_iter reached: every epoch runs on purpose
d, seed = json.loads(sys.argv[1]), int(sys.argv[2])
na = ["", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "?"]
read = lambda f: pd.read_csv(f, na_values=na, keep_default_na=False)
train, test = read("train.csv"), read("test.csv")
train, test = train[train[d["label"]].notna()], test[test[d["label"]].notna()]
drop = [d["label"]] + d["drop"]
X, Xt = train.drop(columns=drop), test.drop(columns=drop)
num = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
cat = [c for c in X.columns if c not in num]
pre = ColumnTransformer([
    ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), num),
    ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="<missing>"),
                          OneHotEncoder(handle_unknown="ignore")), cat),
])
mlp = dict(hidden_layer_sizes=tuple(d["hidden"]), activation="relu", solver="adam", alpha=0.0,
           learning_rate_init=d["lr"], batch_size=d["batch"], max_iter=d["epochs"], shuffle=True,
           tol=0.0, n_iter_no_change=d["epochs"] + 1, random_state=seed)
if d["task"] == "classification":
    model = make_pipeline(pre, MLPClassifier(**mlp))
    model.fit(X, train[d["label"]])
    score = accuracy_score(test[d["label"]], model.predict(Xt))
else:
    model = TransformedTargetRegressor(make_pipeline(pre, MLPRegressor(**mlp)), transformer=StandardScaler())
    model.fit(X, train[d["label"]].astype(float))
    score = r2_score(test[d["label"]].astype(float), model.predict(Xt))
print(score)
PY

cat > driver.py <<'PY'
import json, os, random, statistics, subprocess, sys, time
bin, python, seeds, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
D = [
    dict(name="penguins: species", csv="penguins.csv", label="species", task="classification",
         columns={"year": "exclude"}, drop=["year"], metric="accuracy"),
    dict(name="penguins: body mass (g)", csv="penguins.csv", label="body_mass_g", task="regression",
         columns={"year": "exclude"}, drop=["year"], metric="r2"),
    dict(name="penguins-raw: sex", csv="penguins-raw.csv", label="Sex", task="classification",
         columns={"Sample Number": "id", "Individual ID": "id", "Date Egg": "exclude", "Comments": "exclude"},
         drop=["Sample Number", "Individual ID", "Date Egg", "Comments"], metric="accuracy"),
]
for d in D:
    d.update(hidden=[32, 16], lr=0.005, batch=16, epochs=100)

def split(d):
    lines = open(d["csv"], newline="").read().splitlines(keepends=True)
    head, body = lines[0], lines[1:]
    order = list(range(len(body)))
    random.Random(42).shuffle(order)
    test = set(order[::5])
    with open("train.csv", "w", newline="") as f:
        f.writelines([head] + [l for i, l in enumerate(body) if i not in test])
    with open("test.csv", "w", newline="") as f:
        f.writelines([head] + [l for i, l in enumerate(body) if i in test])

def spec(d, seed):
    cols = ", ".join(f'"{k}": {v}' for k, v in d["columns"].items())
    open("spec.yaml", "w").write(
        f'version: 1\nname: bench\nseed: {seed}\ndata:\n  path: train.csv\n  label: "{d["label"]}"\n'
        f'  task: {d["task"]}\n  columns: {{ {cols} }}\n  split: {{ train: 0.9, validation: 0.1, test: 0.0 }}\n'
        f'model:\n  type: mlp\n  hidden: {d["hidden"]}\n  activation: relu\n'
        f'training:\n  epochs: {d["epochs"]}\n  batch_size: {d["batch"]}\n'
        f'  optimizer: {{ type: adam, lr: {d["lr"]} }}\n  device: cpu\n')

def auditai(d):
    subprocess.run(["rm", "-rf", "run", "eval.json"], check=True)
    t = time.perf_counter()
    subprocess.run([bin, "run", "spec.yaml", "--out", "run", "--key", "bench.key", "-q"],
                   check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run([bin, "eval", "run", "--data", "test.csv", "--key", "bench.pub",
                          "--out", "eval.json", "--json", "-q"], check=True, capture_output=True)
    wall = time.perf_counter() - t
    m = json.loads(out.stdout)["evaluation"]["overall"]
    return m["accuracy" if d["metric"] == "accuracy" else "r2"], wall

def sklearn(d, seed):
    t = time.perf_counter()
    out = subprocess.run([python, "sk.py", json.dumps(d), str(seed)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout), time.perf_counter() - t

print("| dataset (rows; metric on the held-out 20 %) | auditai score | scikit-learn score | difference | auditai s | scikit-learn s |")
print("|---|---:|---:|---:|---:|---:|")
for d in D:
    split(d)
    a, s, ta, ts = [], [], [], []
    for seed in range(1, seeds + 1):
        spec(d, seed)
        for r in range(runs if seed == 1 else 1):
            score, wall = auditai(d)
            if seed == 1:
                ta.append(wall)
        a.append(score)
        for r in range(runs if seed == 1 else 1):
            score, wall = sklearn(d, seed)
            if seed == 1:
                ts.append(wall)
        s.append(score)
    print(f"{d['name']}: auditai {[round(x, 4) for x in a]}, scikit-learn {[round(x, 4) for x in s]}",
          file=sys.stderr)
    rows = sum(1 for _ in open(d["csv"])) - 1
    ma, ms = statistics.mean(a), statistics.mean(s)
    print(f"| {d['name']} ({rows}; {d['metric']}) | {ma:.3f} ± {statistics.pstdev(a):.3f} | "
          f"{ms:.3f} ± {statistics.pstdev(s):.3f} | {ma - ms:+.3f} | {statistics.median(ta):.2f} | "
          f"{statistics.median(ts):.2f} |", flush=True)
PY

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'); $("$python" -c 'import sklearn, pandas; print("scikit-learn", sklearn.__version__, "pandas", pandas.__version__)'); $seeds seeds, $runs timed runs"
"$python" driver.py "$bin" "$python" "$seeds" "$runs"
