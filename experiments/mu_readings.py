"""Why SDLM with the paper's mu = 0.02 fails here: h_kk and the per-parameter
rates eta / (mu + h_kk) at the start of pass 1, under each reading of the paper.

For the untrained network and the curvature samples the trainer draws before
pass 1 (the same seed, order and samples), it prints, per layer and parameter
kind, the distribution of h_kk (min, quartiles, max, the fractions below 1e-3
and 1e-2) and of the rate with mu = 0.02, eta = 5e-4: for the baseline (the
recipe with mu = 0.02) and for each reading one at a time. With ``--train`` it
also runs the short training of each reading (one at a time) and prints the
test error after each pass.

    python experiments/mu_readings.py                    # h_kk and rates, all 60,000 images
    python experiments/mu_readings.py --limit 10000      # the short runs' samples
    python experiments/mu_readings.py --train --limit 10000 --test-limit 2000 --epochs 3

Every reading but the input scaling is a ``minilenet train`` flag (the command
is printed with it); the input scaling is set here through the module's
constants, which every scaling in the package reads.
"""
import argparse
import contextlib
import tempfile

import numpy as np

from minilenet import mnist
from minilenet.train import Data, TrainConfig, Trainer

MU, ETA = 0.02, 5e-4

#: (name, flags as minilenet train takes them, TrainConfig overrides, input
#: levels: None for the paper's -0.1 / 1.175, "unit-variance" for the paper's
#: stated aim, mean 0 and variance 1, met by standardising its scaling with the
#: training images' measured mean and standard deviation)
READINGS = [
    ("baseline", "", {}, None),
    ("a. S2/S4 F_i = 1", "--subsampling-init one", {"subsampling_init": "one"}, None),
    ("a. S2/S4 coefficient 1, bias 0", "--subsampling-init unit",
     {"subsampling_init": "unit"}, None),
    ("b. bias counts in F_i", "--count-bias", {"count_bias": True}, None),
    ("b. biases start at 0", "--bias-init zero", {"bias_init": "zero"}, None),
    ("c. average subsampling", "--subsampling average", {"subsampling": "average"}, None),
    ("d. h summed over the 500 samples", "--h-reduce sum", {"h_reduce": "sum"}, None),
    ("d. h as a running average", "--h-reduce running", {"h_reduce": "running"}, None),
    ("e. seed + MAP competitive term", "--curvature-seed map", {"curvature_seed": "map"}, None),
    ("e. seed 2 for all 10 penalties", "--curvature-seed all", {"curvature_seed": "all"}, None),
    ("f. input standardised (variance 1)", "", {}, "unit-variance"),
]


@contextlib.contextmanager
def input_levels(levels):
    """Background and ink values for every mnist.scale_bytes call inside (None: the paper's)."""
    saved = mnist.BACKGROUND, mnist.FOREGROUND
    if levels is not None:
        mnist.BACKGROUND, mnist.FOREGROUND = levels
    try:
        yield
    finally:
        mnist.BACKGROUND, mnist.FOREGROUND = saved


def unit_variance_levels(train_images):
    """(background, ink) that give the padded training images mean 0 and variance 1."""
    x = mnist.preprocess(train_images, np.float64)
    mean, std = x.mean(), x.std()
    return (mnist.BACKGROUND - mean) / std, (mnist.FOREGROUND - mean) / std


def pass1_curvature(config, arrays, out):
    """{parameter name: (h, rate)} at the start of pass 1, exactly as the trainer sees it."""
    trainer = Trainer(config, Data.from_mnist(arrays, config), out, progress=False,
                      log=lambda s: None)
    images, _, order = trainer.epoch_plan(0)
    opt = trainer.optimizer
    opt.start_epoch(0, trainer.model, trainer.curvature_samples(images, order))
    rates = opt.rates(trainer.model)
    return {name: (opt.h[name].astype(np.float64), rates[name].astype(np.float64))
            for name in opt.h}


def describe(h, rate):
    q = np.quantile(h, [0, 0.25, 0.5, 0.75, 1])
    return (*q, np.mean(h < 1e-3), np.mean(h < 1e-2), rate.min(), np.median(rate), rate.max(),
            np.mean(rate > 0.9 * ETA / MU))


HEADER = ("| parameter | n | h min | h q25 | h median | h q75 | h max | h<1e-3 | h<1e-2 "
          "| rate min | rate median | rate max | at cap |")


def table(stats):
    lines = [HEADER, "|" + "---|" * 13]
    for name, (h, rate) in stats.items():
        d = describe(h.ravel(), rate.ravel())
        lines.append(f"| {name} | {h.size} | " + " | ".join(f"{v:.2g}" for v in d[:5])
                     + f" | {d[5]:.2f} | {d[6]:.2f} | " + " | ".join(f"{v:.2g}" for v in d[7:10])
                     + f" | {d[10]:.2f} |")
    every_h = np.concatenate([h.ravel() for h, _ in stats.values()])
    every_rate = np.concatenate([r.ravel() for _, r in stats.values()])
    d = describe(every_h, every_rate)
    lines.append(f"| all | {every_h.size} | " + " | ".join(f"{v:.2g}" for v in d[:5])
                 + f" | {d[5]:.2f} | {d[6]:.2f} | " + " | ".join(f"{v:.2g}" for v in d[7:10])
                 + f" | {d[10]:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=0, help="first N training images (0: all)")
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="", help="numpy or numba (default: the package's)")
    p.add_argument("--train", action="store_true", help="also run each reading's short training")
    p.add_argument("--only", help="run only the readings whose name contains this")
    args = p.parse_args(argv)
    arrays = mnist.load_mnist(progress=False)
    standardised = unit_variance_levels(arrays["train_images"])
    with tempfile.TemporaryDirectory() as out:
        for name, flags, overrides, levels in READINGS:
            if args.only and args.only not in name:
                continue
            levels = standardised if levels == "unit-variance" else levels
            config = TrainConfig(mu=MU, limit=args.limit, test_limit=args.test_limit,
                                 epochs=args.epochs, seed=args.seed, backend=args.backend,
                                 **overrides).validate()
            command = (f"minilenet train --mu {MU} --seed {args.seed}"
                       + (f" --limit {args.limit}" if args.limit else "")
                       + (f" {flags}" if flags else "")
                       + ("" if levels is None else
                          f"   (input levels {levels[0]:.3f} / {levels[1]:.3f})"))
            print(f"\n### {name}\n\n`{command}`\n")
            with input_levels(levels):
                print(table(pass1_curvature(config, arrays, out)))
                if args.train:
                    trainer = Trainer(config, Data.from_mnist(arrays, config), out,
                                      progress=False, log=lambda s: None)
                    errors = [f"{100 * r['test_error']:.2f}" for r in trainer.fit()]
                    print(f"\ntest error after each pass: {' / '.join(errors)}%")


if __name__ == "__main__":
    main()
