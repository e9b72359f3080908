"""The same LeNet-5 in PyTorch, for ``minilenet bench`` to compare against when
PyTorch happens to be installed. PyTorch is never a dependency of minilenet:
this file is only imported by the benchmark, and only if ``import torch`` works.

Network: C1 - S2 (trainable coefficient and bias per map) - C3 (Table I as a
weight mask) - S4 - C5 - F6 - Euclidean RBF, scaled tanh, MAP loss, plain SGD.
"""
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from minilenet import C3_TABLE, load_digit_bitmaps


class TorchLeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(1, 6, 5)
        self.s2 = torch.nn.Parameter(torch.rand(2, 6) - 0.5)
        self.c3 = torch.nn.Conv2d(6, 16, 5)
        mask = torch.tensor(C3_TABLE.T[:, :, None, None], dtype=torch.float32)
        self.register_buffer("mask", mask)
        self.s4 = torch.nn.Parameter(torch.rand(2, 16) - 0.5)
        self.c5 = torch.nn.Conv2d(16, 120, 5)
        self.f6 = torch.nn.Linear(120, 84)
        self.register_buffer("centers", torch.tensor(load_digit_bitmaps(), dtype=torch.float32))

    @staticmethod
    def squash(a):
        return 1.7159 * torch.tanh(a * (2.0 / 3.0))

    @staticmethod
    def subsample(x, p):
        s = F.avg_pool2d(x, 2) * 4
        return s * p[0][None, :, None, None] + p[1][None, :, None, None]

    def forward(self, x):
        x = self.squash(self.c1(x))
        x = self.squash(self.subsample(x, self.s2))
        x = self.squash(F.conv2d(x, self.c3.weight * self.mask, self.c3.bias))
        x = self.squash(self.subsample(x, self.s4))
        x = self.squash(self.c5(x)).flatten(1)
        x = self.squash(self.f6(x))
        return ((x[:, None, :] - self.centers[None]) ** 2).sum(-1)


def map_loss(y, labels, j=0.1):
    z = torch.cat([torch.full_like(y[:, :1], -j), -y], dim=1)
    return (y.gather(1, labels[:, None])[:, 0] + torch.logsumexp(z, 1)).mean()


def _rate(fn, n, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def measure(batches, images, repeats):
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(-0.1, 1.175, (max(images, 1000), 1, 32, 32)), dtype=torch.float32)
    y = torch.tensor(rng.integers(0, 10, len(x)))
    rows = []
    for batch in batches:
        torch.set_num_threads(1 if batch == 1 else 2)
        model = TorchLeNet5()
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        n = (images if batch > 1 else images // 2) // batch * batch

        def epoch(model=model, opt=opt, n=n, batch=batch):
            for i in range(0, n, batch):
                opt.zero_grad()
                map_loss(model(x[i:i + batch]), y[i:i + batch]).backward()
                opt.step()
        rows.append({"what": f"train images/s, batch {batch} "
                             f"({torch.get_num_threads()} thread(s))",
                     "value": _rate(epoch, n, repeats)})
    torch.set_num_threads(2)
    model = TorchLeNet5().eval()
    with torch.no_grad():
        rows.append({"what": "inference images/s, batch 1000 (2 threads)",
                     "value": _rate(lambda: model(x[:1000]), 1000, repeats)})
    for row in rows:
        row["what"] += f", torch {torch.__version__}"
    return rows
