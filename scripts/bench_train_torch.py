"""The PyTorch twin of auditai's training benchmark (scripts/bench-train.sh), and its data.

    bench_train_torch.py data DIR                      write DIR/tabular.csv and DIR/mnist.csv
    bench_train_torch.py specs DIR                     write DIR/tabular-mlp.yaml and
                                                       DIR/mnist-mlp.yaml, auditai specs for them
    bench_train_torch.py train SPEC.json CSV THREADS [DEVICE]
                                                       train on DEVICE (cpu, or cuda for
                                                       scripts/bench-gpu.sh), print one JSON line

`data` writes the two synthetic workloads (seeded, so every machine gets the same bytes):
1,000,000 rows of 30 numeric features and 60,000 rows of 784 integer "pixels" 0..255, each with a
class label from a fixed random linear teacher (so that there is something to learn).

`train` reads the CSV the same way auditai's spec says (label column, standard or minmax
scaling, a seeded stratified-enough split of the same sizes), builds the same network (dense
layers with ReLU and dropout after each hidden layer; for the CNN, conv 3x3 'same' + ReLU + 2x2
max pool per conv layer), and times the training loop only (forward, loss, backward, optimizer
step, over shuffled mini-batches of a tensor already in memory; no validation, no checkpoint),
like auditai's `samples_per_sec`. It prints {"samples_per_sec": ..., "epochs": ..., "rows": ...}.
"""

import csv
import json
import math
import sys
import time


def write_data(out_dir):
    import numpy as np

    rng = np.random.default_rng(2026)
    for name, rows, cols, classes, pixels in (
        ("tabular.csv", 1_000_000, 30, 3, False),
        ("mnist.csv", 60_000, 784, 10, True),
    ):
        if pixels:
            x = rng.integers(0, 256, size=(rows, cols), dtype=np.int64)
            z = (x - 127.5) / 127.5
        else:
            x = rng.normal(size=(rows, cols)).astype(np.float32)
            z = x
        teacher = rng.normal(size=(cols, classes))
        y = np.argmax(z @ teacher + rng.normal(scale=2.0, size=(rows, classes)), axis=1)
        header = ",".join([f"f{i}" for i in range(cols)] + ["label"])
        fmt = ["%d" if pixels else "%.5f"] * cols + ["c%d"]
        with open(f"{out_dir}/{name}", "w") as f:
            f.write(header + "\n")
            step = 50_000
            for start in range(0, rows, step):
                block = np.column_stack([x[start : start + step], y[start : start + step]])
                np.savetxt(f, block, fmt=fmt, delimiter=",")


SPEC = """version: 1
name: {name}
seed: 1
data:
  path: {csv}
  label: label
  task: classification
  split: {{ train: 0.9, validation: 0.1, test: 0.0 }}
  normalize: standard
model:
  type: mlp
  hidden: {hidden}
training:
  epochs: 3
  batch_size: {batch}
  optimizer: {{ type: adam, lr: 0.001 }}
"""


def write_specs(out_dir):
    import os

    for name, csv_name, hidden, batch in (
        ("tabular-mlp", "tabular.csv", "[64, 32]", 512),
        ("mnist-mlp", "mnist.csv", "[512, 256]", 256),
    ):
        csv_path = os.path.abspath(os.path.join(out_dir, csv_name))
        with open(os.path.join(out_dir, name + ".yaml"), "w") as f:
            f.write(SPEC.format(name=name, csv=csv_path, hidden=hidden, batch=batch))


def load(spec, path):
    import numpy as np

    label = spec["data"]["label"]
    with open(path, newline="") as f:
        r = csv.reader(f)
        head = next(r)
        li = head.index(label)
        feats, labels = [], []
        for row in r:
            labels.append(row[li])
            feats.append([float(v) for i, v in enumerate(row) if i != li])
    x = np.asarray(feats, dtype=np.float32)
    classes = sorted(set(labels))
    y = np.asarray([classes.index(v) for v in labels], dtype=np.int64)
    n_train = int(round(len(y) * spec["data"]["split"]["train"]))
    perm = np.random.default_rng(spec["seed"]).permutation(len(y))[:n_train]
    x, y = x[perm], y[perm]
    if spec["data"].get("normalize", "standard") == "minmax":
        lo, hi = x.min(0), x.max(0)
        x = (x - lo) / np.where(hi > lo, hi - lo, 1)
    else:
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1)
    return x, y, len(classes)


def network(spec, features, classes):
    import torch.nn as nn

    m, layers, width = spec["model"], [], features
    if m["type"] == "cnn":
        c, h, w = spec["data"]["shape"]
        layers.append(nn.Unflatten(1, (c, h, w)))
        for ch in m["conv"]["channels"]:
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = ch, h // 2, w // 2
        layers.append(nn.Flatten())
        width = c * h * w
    for hidden in m["hidden"]:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if m.get("dropout", 0) > 0:
            layers.append(nn.Dropout(m["dropout"]))
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def train(spec_path, csv_path, threads, device="cpu"):
    import torch

    torch.set_num_threads(threads)
    spec = json.load(open(spec_path))
    x, y, classes = load(spec, csv_path)
    torch.manual_seed(spec["seed"])
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    net = network(spec, x.shape[1], classes).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    t = spec["training"]
    o = t["optimizer"]
    kind = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[o["type"]]
    args = {"lr": o["lr"], "weight_decay": o.get("weight_decay", 0.01 if o["type"] == "adamw" else 0.0)}
    opt = kind(net.parameters(), **args)
    loss_fn = torch.nn.CrossEntropyLoss()
    bs, epochs, n = t["batch_size"], t["epochs"], len(y)
    net.train()
    seconds = 0.0
    for _ in range(epochs):
        order = torch.randperm(n, device=device)
        sync()
        start = time.perf_counter()
        for s in range(math.ceil(n / bs)):
            idx = order[s * bs : (s + 1) * bs]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        sync()
        seconds += time.perf_counter() - start
    print(json.dumps({"samples_per_sec": n * epochs / seconds, "epochs": epochs, "rows": n,
                      "torch": torch.__version__, "threads": threads, "device": device}))


if __name__ == "__main__":
    if sys.argv[1] == "data":
        write_data(sys.argv[2])
    elif sys.argv[1] == "specs":
        write_specs(sys.argv[2])
    else:
        train(sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6])
