"""PyTorch peer of bench/bench.ts: the same nets, batches and timing rule.

Prints one JSON line per net (`--model mnist_a,cifar_resnet`, the default):

  {"backend":"pytorch","model":"mnist_a","forward":…,"pgd_step":…,"train":…,
   "rss_mb":…,"torch":"1.13.1","threads":2,…}

mnist_a (MNIST model A, inputs in [0, 1]):
- forward: inference logits at batch 100 (torch.no_grad, eval mode);
- pgd_step: one L-inf PGD step at batch 100 (input gradient of the summed
  cross-entropy, x + 0.01*sign(g), projection onto the eps = 0.3 ball and [0, 1]),
  parameter gradients off;
- train: one Adam (lr 1e-4) step on the mean cross-entropy at batch 50.

cifar_resnet (the simple pre-activation CIFAR-10 ResNet of lib/nn/resnet.ts:
per-image standardisation inside, filters 16, 16, 32, 64, 5 units per stage,
batch norm + leaky ReLU 0.1, shortcuts by average pooling and zero channel
padding; inputs in [0, 255]), all at batch 128:
- forward: inference logits; pgd_step: eps 8, steps of 2, in [0, 255];
- train: one SGD step, lr 0.1, momentum 0.9, weight decay 2e-4 on the conv and
  dense weights only (as lib/train/optim.ts's Momentum with the ResNet's decay mask).

rss_mb: resident memory at the end.

Timing rule (as bench/bench.ts): each measurement runs once as a warm-up; if
that alone took `--seconds`, it reports the warm-up; if it took under a tenth
of `--seconds`, it runs once more; then it runs for `--seconds` and reports
images / elapsed seconds.

  /usr/bin/python3 bench/peer_torch.py --seconds 5 --threads 2

OpenBLAS (which Debian's torch uses for the FC layers) starts its own threads
beside torch's OpenMP ones; `--openblas-threads N` sets OPENBLAS_NUM_THREADS
before torch loads (default: the environment's value, else 1, the best setting
measured). `--omp-wait-policy` sets OMP_WAIT_POLICY (default: the environment's
value, else passive): with the default active waiting, torch's two OpenMP
threads spin at every barrier, and on cores shared with other work that cut
its speed 2-4x in our measurements, while passive waiting kept it at or above
the one-thread speed. OPENBLAS_CORETYPE is left as it is and reported.

A benchmark aid only: install with `sudo apt-get install python3-torch` (Debian),
which runs with /usr/bin/python3. Nothing else in the project needs it.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def parse(argv):
    p = argparse.ArgumentParser(description="PyTorch peer of bench/bench.ts (MNIST model A, CIFAR ResNet; img/s)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement (default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument(
        "--openblas-threads",
        type=int,
        default=None,
        help="sets OPENBLAS_NUM_THREADS (default: the environment's, else 1)",
    )
    p.add_argument(
        "--omp-wait-policy",
        choices=["active", "passive"],
        default=None,
        help="sets OMP_WAIT_POLICY (default: the environment's, else passive)",
    )
    p.add_argument("--model", default="mnist_a,cifar_resnet", help="comma list of mnist_a, cifar_resnet, or all")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not args.seconds > 0:
        p.error(f"--seconds must be a positive number, got {args.seconds}")
    if args.threads < 1 or (args.openblas_threads is not None and args.openblas_threads < 1):
        p.error("--threads and --openblas-threads must be positive")
    args.models = ["mnist_a", "cifar_resnet"] if args.model == "all" else args.model.split(",")
    for m in args.models:
        if m not in ("mnist_a", "cifar_resnet"):
            p.error(f"--model must be mnist_a, cifar_resnet, a comma list of them, or all, got {args.model!r}")
    return args


def torch_version(torch):
    """The Debian package's version where there is one (torch.__version__ says 1.13.0a0 there)."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "python3-torch"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if out:
            return out.split("+")[0]
    except (OSError, subprocess.CalledProcessError):
        pass
    return torch.__version__


def rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20)


def main(argv):
    args = parse(argv)
    if args.openblas_threads is not None:
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)
    else:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # OpenBLAS's idle threads spin for ~0.1 s after each product, taking a core from torch's OpenMP
    # threads; 4 (its least) puts them to sleep at once, as lib/backends/native/_blas.ts does for ours.
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    if args.omp_wait_policy is not None:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy
    else:
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    import torch  # after the variables above: OpenBLAS and libgomp read them when they load
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(args.threads)
    for name in args.models:
        torch.manual_seed(args.seed)
        result = measure(torch, nn, F, name, args)
        print(json.dumps(result, separators=(",", ":")), flush=True)


def mnist_a(nn):
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 5, padding="same"),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(7 * 7 * 64, 1024),
        nn.ReLU(),
        nn.Linear(1024, 10),
    )


def cifar_resnet(torch, nn, F, filters=(16, 16, 32, 64), units=5):
    """The simple pre-activation ResNet of lib/nn/resnet.ts, in NCHW."""

    class BnRelu(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.bn = nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)  # TF's momentum 0.9

        def forward(self, x):
            return F.leaky_relu(self.bn(x), 0.1)

    class Unit(nn.Module):
        def __init__(self, cin, cout, stride, activate_before_residual):
            super().__init__()
            self.init, self.before = BnRelu(cin), activate_before_residual
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=1 if stride == 1 else 0, bias=False)
            self.sub2 = BnRelu(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1, bias=False)
            self.stride, self.pad = stride, ((cout - cin) // 2, cout - cin - (cout - cin) // 2)

        def forward(self, x):
            if self.before:
                x = self.init(x)
                shortcut = x
            else:
                shortcut = x
                x = self.init(x)
            if self.stride > 1:  # TF's SAME padding for stride 2 on even sizes: one row/column after
                x = F.pad(x, (0, 1, 0, 1))
            x = self.conv2(self.sub2(self.conv1(x)))
            if self.stride > 1:
                shortcut = F.avg_pool2d(shortcut, self.stride, self.stride)
            if self.pad != (0, 0):
                shortcut = F.pad(shortcut, (0, 0, 0, 0, *self.pad))
            return x + shortcut

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, filters[0], 3, 1, padding=1, bias=False)
            layers = []
            for stage, stride in enumerate((1, 2, 2)):
                cin, cout = filters[stage], filters[stage + 1]
                layers.append(Unit(cin, cout, stride, stage == 0))
                layers += [Unit(cout, cout, 1, False) for _ in range(units - 1)]
            self.units = nn.Sequential(*layers)
            self.last = BnRelu(filters[3])
            self.fc = nn.Linear(filters[3], 10)

        def forward(self, x):
            n = x[0].numel()
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            var = x.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
            x = (x - mean) / torch.sqrt(torch.clamp(var, min=1.0 / n))
            x = self.last(self.units(self.conv(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return Net()


def measure(torch, nn, F, name, args):
    if name == "mnist_a":
        model = mnist_a(nn)
        shape, (lo, hi), eps, step_size = (1, 28, 28), (0.0, 1.0), 0.3, 0.01
        forward_batch, pgd_batch, train_batch = 100, 100, 50
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    else:
        model = cifar_resnet(torch, nn, F)
        shape, (lo, hi), eps, step_size = (3, 32, 32), (0.0, 255.0), 8.0, 2.0
        forward_batch = pgd_batch = train_batch = 128
        decay = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
        rest = [p for n, p in model.named_parameters() if not (n.endswith("weight") and p.dim() > 1)]
        optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": 2e-4}, {"params": rest, "weight_decay": 0.0}], lr=0.1, momentum=0.9
        )
    params = list(model.parameters())

    def images(batch):
        return lo + (hi - lo) * torch.rand(batch, *shape)

    xf = images(forward_batch)
    x0 = images(pgd_batch)
    yp = torch.randint(0, 10, (pgd_batch,))
    xt = images(train_batch)
    yt = torch.randint(0, 10, (train_batch,))
    lower = (x0 - eps).clamp(lo, hi)
    upper = (x0 + eps).clamp(lo, hi)
    state = {"x_adv": x0.clone()}

    def forward():
        model.eval()
        with torch.no_grad():
            return model(xf)

    def pgd_step():
        model.eval()
        x = state["x_adv"].requires_grad_(True)
        loss = F.cross_entropy(model(x), yp, reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            nxt = torch.minimum(torch.maximum(x + step_size * g.sign(), lower), upper)
        state["x_adv"] = nxt
        return nxt.sum()

    def train():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def throughput(batch, step, grads):
        for p in params:
            p.requires_grad_(grads)

        def once():
            step().sum().item()  # reads the result back, as bench.ts does

        t0 = time.perf_counter()
        once()
        warm = time.perf_counter() - t0
        if warm >= args.seconds:
            return batch / warm
        if warm < args.seconds / 10:
            once()
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            once()
            n += 1
        return n * batch / (time.perf_counter() - t0)

    return {
        "backend": "pytorch",
        "model": name,
        "forward": round(throughput(forward_batch, forward, False), 1),
        "pgd_step": round(throughput(pgd_batch, pgd_step, False), 1),
        "train": round(throughput(train_batch, train, True), 1),
        "rss_mb": rss_mb(),
        "torch": torch_version(torch),
        "threads": torch.get_num_threads(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }


if __name__ == "__main__":
    main(sys.argv[1:])
