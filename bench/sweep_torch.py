"""How the CIFAR-10 quick preset's learning rate and weight decay were chosen.

A research aid beside bench/peer_torch.py, not part of the library: it trains
the simple ResNet of peer_torch.py with the quick preset's recipe (momentum SGD,
batch 128, one learning-rate cycle 0 -> lr at 40% -> 0, weight decay on the conv
and dense weights, pad-4 crop and flip, FGSM from a random start with a step of
10 at eps 8, the training adversary attacking in inference mode), varies one knob
at a time over several seeds, and reports natural and PGD-7 (eps 8, steps of 2,
random start) accuracy of each run. Weights start as lib/nn/resnet.ts draws them
(conv N(0, 2/(9*out)), dense uniform unit-scaling, zero bias). On a GPU a run of
1,050 steps takes seconds, so a grid that would take days of our CPU path fits in
minutes; the chosen setting is then trained with the project's own code.

  python3 bench/sweep_torch.py --data-dir ../shared/data/cifar-10-batches-bin \\
      --train-range 25000:50000 --test-examples 2500 --grid grid.json --out DIR

--grid: a JSON list of runs, each an object of
  name, seed, steps (1050), lr (0.2), wd (2e-4), alpha (10), batch (128),
  peak (0.4), schedule ("cyclic" | "steps": /10 at 50%, /100 at 75%),
  method ("fgsm" | "pgd" | "natural"), attack_bn ("eval" | "train": batch
  statistics in the training adversary, as MadryLab's and Wong et al.'s code do).
Runs go to --parallel worker processes (one GPU holds many such small nets);
each result is one JSON line in DIR/results.jsonl, and a table of the mean and
spread over seeds of each name is printed at the end. Device: CUDA where
available, else the CPU (SWEEP_DEVICE overrides).

Needs PyTorch and NumPy (Debian: python3-torch).
"""

import argparse
import concurrent.futures as cf
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np

RECORD = 3073
FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def load_split(data_dir, split):
    """Images [n, 3, 32, 32] uint8 (the files' R, G, B planes) and labels [n]."""
    parts = []
    for name in FILES[split]:
        raw = np.fromfile(os.path.join(data_dir, name), dtype=np.uint8)
        if raw.size != 10000 * RECORD:
            sys.exit(f"{name}: expected {10000 * RECORD} bytes (10,000 records of {RECORD}), found {raw.size}")
        parts.append(raw.reshape(-1, RECORD))
    a = np.concatenate(parts)
    return a[:, 1:].reshape(-1, 3, 32, 32), a[:, 0].copy()


def run_config(cfg, npz):
    """Trains one run of `cfg` on the arrays in `npz`; returns cfg with its accuracies."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_torch import cifar_resnet

    dev = os.environ.get("SWEEP_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    d = np.load(npz)
    xtr = torch.tensor(d["xtr"], device=dev).float()
    ytr = torch.tensor(d["ytr"], device=dev).long()
    xte = torch.tensor(d["xte"], device=dev).float()
    yte = torch.tensor(d["yte"], device=dev).long()
    seed = cfg.get("seed", 0)
    torch.manual_seed(seed)
    net = cifar_resnet(torch, nn, F).to(dev)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0, math.sqrt(2 / (9 * m.out_channels)))
        if isinstance(m, nn.Linear):
            lim = math.sqrt(3 / m.in_features)
            nn.init.uniform_(m.weight, -lim, lim)
            nn.init.zeros_(m.bias)
    decay = [p for n, p in net.named_parameters() if n.endswith("weight") and p.dim() > 1]
    rest = [p for n, p in net.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
    wd = cfg.get("wd", 2e-4)
    # PyTorch's SGD adds the decay to the gradient and keeps v <- 0.9 v + g, w <- w - lr v: lib/train/optim.ts's Momentum.
    opt = torch.optim.SGD([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0}], lr=0.0, momentum=0.9)
    T, lr_max, peak = cfg["steps"], cfg.get("lr", 0.2), cfg.get("peak", 0.4)
    batch = cfg.get("batch", 128)
    eps, alpha = 8.0, cfg.get("alpha", 10.0)
    method = cfg.get("method", "fgsm")
    attack_bn = cfg.get("attack_bn", "eval")
    schedule = cfg.get("schedule", "cyclic")
    g = torch.Generator(device=dev).manual_seed(seed)
    n = xtr.shape[0]
    perm, pos = torch.randperm(n, device=dev, generator=g), 0
    ar = torch.arange(32, device=dev)

    def augment(x):
        b = x.shape[0]
        p = F.pad(x, (4, 4, 4, 4))
        dy = torch.randint(0, 9, (b,), device=dev, generator=g)
        dx = torch.randint(0, 9, (b,), device=dev, generator=g)
        flip = torch.rand(b, device=dev, generator=g) < 0.5
        iy = dy[:, None] + ar[None]
        ix = dx[:, None] + torch.where(flip[:, None], 31 - ar[None], ar[None])
        bi = torch.arange(b, device=dev)[:, None, None]
        out = p.permute(0, 2, 3, 1)[bi, iy[:, :, None], ix[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

    def lr_at(t):
        if schedule == "steps":
            return lr_max * (1 if t < 0.5 * T else 0.1 if t < 0.75 * T else 0.01)
        pk = peak * T
        return lr_max * t / pk if t < pk else lr_max * (T - t) / (T - pk)

    def input_grad(x, y, train_mode):
        net.train(train_mode)
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(net(x), y, reduction="sum")
        (gx,) = torch.autograd.grad(loss, x)
        return gx

    def attack(x, y, steps, step, train_mode):
        xa = (x + (torch.rand(x.shape, device=dev, generator=g) * 2 - 1) * eps).clamp(0, 255)
        for _ in range(steps):
            gx = input_grad(xa, y, train_mode)
            xa = torch.min(torch.max(xa + step * gx.sign(), x - eps), x + eps).clamp(0, 255)
        return xa.detach()

    t0 = time.time()
    curve = []
    for t in range(T):
        if pos + batch > n:
            perm, pos = torch.randperm(n, device=dev, generator=g), 0
        idx = perm[pos : pos + batch]
        pos += batch
        x, y = augment(xtr[idx]), ytr[idx]
        if method == "fgsm":
            x = attack(x, y, 1, alpha, attack_bn == "train")
        elif method == "pgd":
            x = attack(x, y, cfg.get("attack_steps", 7), 2.0, attack_bn == "train")
        for gr in opt.param_groups:
            gr["lr"] = lr_at(t)
        net.train()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if t % 50 == 0:
            curve.append(round(loss.item(), 3))
    if dev == "cuda":
        torch.cuda.synchronize()
    train_s = time.time() - t0

    def evaluate(limit):
        nat = adv = 0
        for i in range(0, limit, 500):
            x, y = xte[i : min(i + 500, limit)], yte[i : min(i + 500, limit)]
            net.eval()
            with torch.no_grad():
                nat += (net(x).argmax(1) == y).sum().item()
            xa = attack(x, y, 7, 2.0, False)
            with torch.no_grad():
                adv += (net(xa).argmax(1) == y).sum().item()
        return nat / limit, adv / limit

    n500 = evaluate(min(500, xte.shape[0]))
    nall = evaluate(xte.shape[0])
    return {**cfg, "train_s": round(train_s, 1), "nat500": n500[0], "pgd500": n500[1], "nat": nall[0], "pgd": nall[1],
            "n_test": int(xte.shape[0]), "n_train": int(n), "curve": curve}


def summary(rows):
    """Mean and spread over seeds of natural and PGD-7 accuracy, per run name."""
    names = {}
    for r in rows:
        if "nat" in r:
            names.setdefault(r["name"], []).append(r)
    lines = ["| run | seeds | natural % | PGD-7 % |", "| --- | ---: | ---: | ---: |"]
    for name, rs in names.items():
        cells = []
        for key in ("nat", "pgd"):
            v = [100 * r[key] for r in rs]
            sd = f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else ""
            cells.append(f"{statistics.mean(v):.1f}{sd}")
        lines.append(f"| {name} | {len(rs)} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description="Sweeps the CIFAR-10 quick FGSM recipe in PyTorch (see the module docstring)")
    p.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR", ""), help="CIFAR-10 binary folder (default: CIFAR10_DIR)")
    p.add_argument("--train-range", default="0:50000", help="training images used, start:end (default 0:50000)")
    p.add_argument("--test-examples", type=int, default=10000, help="first test images evaluated (default 10000)")
    p.add_argument("--grid", help="JSON list of runs (required)")
    p.add_argument("--out", help="folder for results.jsonl (required)")
    p.add_argument("--parallel", type=int, default=8, help="runs at a time (default 8)")
    p.add_argument("--budget", type=float, default=float("inf"), help="seconds after which no new run starts")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--npz", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(run_config(json.loads(a.worker), a.npz)), flush=True)
        return
    if not a.grid or not a.out:
        p.error("--grid and --out are required")
    if not a.data_dir or not os.path.isdir(a.data_dir):
        p.error(f"--data-dir (or CIFAR10_DIR) must name the folder of data_batch_1..5.bin and test_batch.bin, got {a.data_dir!r}")
    start, end = (int(v) for v in a.train_range.split(":"))
    if not 0 <= start < end <= 50000:
        p.error(f"--train-range must be start:end with 0 <= start < end <= 50000, got {a.train_range!r}")
    if not 0 < a.test_examples <= 10000:
        p.error(f"--test-examples must be in 1..10000, got {a.test_examples}")
    grid = json.load(open(a.grid))
    t0 = time.time()
    xtr, ytr = load_split(a.data_dir, "train")
    xte, yte = load_split(a.data_dir, "test")
    os.makedirs(a.out, exist_ok=True)
    npz = os.path.join(a.out, "data.npz")
    np.savez(npz, xtr=xtr[start:end], ytr=ytr[start:end], xte=xte[: a.test_examples], yte=yte[: a.test_examples])
    print(json.dumps({"train": end - start, "test": a.test_examples, "runs": len(grid)}), flush=True)
    results = open(os.path.join(a.out, "results.jsonl"), "a")

    def one(cfg):
        if time.time() - t0 > a.budget:
            return {**cfg, "skipped": True}
        try:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg), "--npz", npz],
                               capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            return {**cfg, "error": "timeout"}
        if r.returncode != 0:
            return {**cfg, "error": r.stderr[-800:]}
        return json.loads(r.stdout.strip().splitlines()[-1])

    rows = []
    with cf.ThreadPoolExecutor(a.parallel) as ex:
        for res in ex.map(one, grid):
            rows.append(res)
            line = json.dumps(res)
            print(line, flush=True)
            results.write(line + "\n")
            results.flush()
    os.remove(npz)
    print(summary(rows))
    print(json.dumps({"total_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
