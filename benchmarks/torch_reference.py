"""minilenet's two networks written plainly in PyTorch (CPU, float32), for
``benchmarks/compare_torch.py``. PyTorch is never a dependency of minilenet:
only the benchmarks import this file, and only once ``import torch`` works.

``PaperLeNet5``: C1 (``nn.Conv2d``) - S2 - C3 - S4 - C5 (``nn.Conv2d``) - F6
(``nn.Linear``) - RBF. C3 is an ``nn.Conv2d`` whose weight is multiplied by
the connection table; S2 and S4 are 4 x ``avg_pool2d`` (the sum of each 2x2
window) times a per-map coefficient plus a per-map bias; every layer but the
RBF is squashed by 1.7159 tanh(2a/3); the RBF gives the squared distance of
F6's output to the fixed +-1 codes. Trained with the MAP loss and plain SGD.

``ModernLeNet5``: the layers of ``minilenet.lenet5("modern")``: ReLU, 2x2
max-pooling, a dense C3, C5 as a convolution, F6 and a 10-way ``nn.Linear``
output; softmax cross-entropy, SGD with momentum 0.9.

``from_minilenet(model)`` builds the port with a minilenet model's weights, so
both frameworks start from the same point and the tests can check that the
port computes the same scores.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minilenet import C3_TABLE, EuclideanRBF, load_digit_bitmaps

A, S = 1.7159, 2.0 / 3.0        # the scaled tanh: A tanh(S a)
PAPER_LR = 5e-4                 # the paper's first-pass eta; the rate does not change the speed
MODERN_LR, MODERN_MOMENTUM = 0.01, 0.9


def squash(a):
    return A * torch.tanh(S * a)


def subsample(x, coef, bias):
    """(N, C, H, W) -> (N, C, H/2, W/2): coef[c] * (sum of each 2x2 window) + bias[c]."""
    return 4 * F.avg_pool2d(x, 2) * coef[None, :, None, None] + bias[None, :, None, None]


class PaperLeNet5(nn.Module):
    """(N, 1, 32, 32) images -> (N, 10) RBF penalties (lower is better)."""

    def __init__(self, table=C3_TABLE, centers=None):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2_coef = nn.Parameter(torch.rand(6) - 0.5)
        self.s2_bias = nn.Parameter(torch.zeros(6))
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4_coef = nn.Parameter(torch.rand(16) - 0.5)
        self.s4_bias = nn.Parameter(torch.zeros(16))
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        # table[s2_map, c3_map] -> a (16, 6, 1, 1) mask on C3's (out, in, 5, 5) weight
        self.register_buffer("mask", torch.tensor(np.asarray(table).T[:, :, None, None],
                                                  dtype=torch.float32))
        codes = load_digit_bitmaps() if centers is None else centers
        self.register_buffer("centers", torch.tensor(codes, dtype=torch.float32))

    def forward(self, x):
        x = squash(self.c1(x))
        x = squash(subsample(x, self.s2_coef, self.s2_bias))
        x = squash(F.conv2d(x, self.c3.weight * self.mask, self.c3.bias))
        x = squash(subsample(x, self.s4_coef, self.s4_bias))
        x = squash(self.c5(x)).flatten(1)
        x = squash(self.f6(x))
        return ((x[:, None, :] - self.centers[None]) ** 2).sum(-1)


class ModernLeNet5(nn.Module):
    """(N, 1, 32, 32) images -> (N, 10) logits."""

    def __init__(self):
        super().__init__()
        self.c1, self.c3 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6, self.output = nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        x = F.relu(self.c5(x)).flatten(1)
        return self.output(F.relu(self.f6(x)))


def map_loss(penalties, labels, j=0.1):
    """The MAP criterion: mean of y_D + log(exp(-j) + sum_i exp(-y_i))."""
    z = torch.cat([torch.full_like(penalties[:, :1], -j), -penalties], dim=1)
    return (penalties.gather(1, labels[:, None])[:, 0] + torch.logsumexp(z, 1)).mean()


def from_minilenet(model):
    """The port of a ``minilenet.lenet5`` model (either variant), with its weights
    (float32): minilenet's Dense weight is (in, out), nn.Linear's (out, in); C3's
    (K, 5, 5) connected kernels fill the masked (16, 6, 5, 5) weight."""
    def put(param, value):
        with torch.no_grad():
            param.copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=torch.float32))

    p = {name: layer.params[key] for name, layer, key in model.named_parameters()}
    if not isinstance(model["output"], EuclideanRBF):
        net = ModernLeNet5()
        for name in ("c1", "c3", "c5"):
            put(getattr(net, name).weight, p[f"{name}.weight"])
            put(getattr(net, name).bias, p[f"{name}.bias"])
        for name in ("f6", "output"):
            put(getattr(net, name).weight, p[f"{name}.weight"].T)
            put(getattr(net, name).bias, p[f"{name}.bias"])
        return net
    c3 = model["c3"]
    net = PaperLeNet5(c3.buffers["table"], model["output"].buffers["centers"])
    if model["s2"].scale != 1.0:
        raise ValueError(f"the port sums each 2x2 window (subsampling='sum'); "
                         f"this model averages them (s2 scale {model['s2'].scale})")
    w3 = np.zeros((c3.out_channels, c3.in_channels, c3.kernel_size, c3.kernel_size),
                  np.float32)
    w3[c3.out_idx, c3.in_idx] = p["c3.weight"]
    for name, weight in (("c1", p["c1.weight"]), ("c3", w3), ("c5", p["c5.weight"])):
        put(getattr(net, name).weight, weight)
        put(getattr(net, name).bias, p[f"{name}.bias"])
    for name in ("s2", "s4"):
        put(getattr(net, f"{name}_coef"), p[f"{name}.weight"])
        put(getattr(net, f"{name}_bias"), p[f"{name}.bias"])
    put(net.f6.weight, p["f6.weight"].T)
    put(net.f6.bias, p["f6.bias"])
    return net


def configure(threads, batch):
    """Set PyTorch's intra-op threads, and its oneDNN (mkldnn) convolutions on for
    mini-batches, off at batch 1: one sample at a time, oneDNN's cost per call
    makes PyTorch's native convolutions the faster choice (by about half on the
    2-core development machine), and the comparison meets PyTorch at its best."""
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = batch != 1


def train_step(net):
    """step(x, labels) -> loss: one SGD step of ``net`` on a (N, 1, 32, 32) float32
    tensor, as a plain PyTorch training loop does it."""
    if isinstance(net, PaperLeNet5):
        opt, loss_fn = torch.optim.SGD(net.parameters(), lr=PAPER_LR), map_loss
    else:
        opt = torch.optim.SGD(net.parameters(), lr=MODERN_LR, momentum=MODERN_MOMENTUM)
        loss_fn = F.cross_entropy
    net.train()

    def step(x, labels):
        opt.zero_grad()
        loss = loss_fn(net(x), labels)
        loss.backward()
        opt.step()
        return loss.item()
    return step

