"""The ``minilenet`` command: summary, bitmaps, gradcheck, train, evaluate, predict, bench."""
import argparse
import os
import sys

import numpy as np


def cmd_summary(args):
    from .models import lenet5
    print(lenet5(args.variant).summary())
    return 0


def cmd_bitmaps(args):
    from .rbf import format_bitmaps, hamming_distances, load_digit_bitmaps, parse_bitmaps
    if args.file:
        with open(args.file) as f:
            centers = parse_bitmaps(f.read())
    else:
        centers = load_digit_bitmaps()
    print(format_bitmaps(centers))
    d = hamming_distances(centers)
    off = d[~np.eye(len(d), dtype=bool)]
    i, j = np.unravel_index(np.where(np.eye(len(d), dtype=bool), 10 ** 9, d).argmin(), d.shape)
    print(f"{len(centers)} codes of {centers.shape[1]} pixels; closest pair: {i} and {j}, "
          f"{off.min()} pixels apart (mean distance {off.mean():.1f})")
    if args.png:
        from .plots import plot_bitmaps
        plot_bitmaps(centers, args.png)
        print(f"wrote {args.png}")
    return 0


def cmd_gradcheck(args):
    from .gradcheck import format_results
    from .gradcheck_suite import run_suite
    results = run_suite(progress=(lambda label: print(f"checking {label} ...",
                                                      file=sys.stderr)) if args.verbose else None)
    print(format_results(results))
    return 0 if all(r.passed for r in results) else 1


def _config_from_args(args):
    from .train import TrainConfig
    variant = args.variant
    defaults = TrainConfig()
    loss = args.loss or ("ce" if variant == "modern" else defaults.loss)
    optimizer = args.optimizer or ("sgd" if variant == "modern" else defaults.optimizer)
    batch = args.batch_size or (64 if variant == "modern" else defaults.batch_size)
    return TrainConfig(variant=variant, epochs=args.epochs, batch_size=batch,
                       optimizer=optimizer, loss=loss, j=args.j, lr=args.lr,
                       momentum=args.momentum, mu=args.mu, eta_scale=args.eta_scale,
                       order=args.order, distort=args.distort, limit=args.limit,
                       validation=args.validation,
                       test_limit=args.test_limit, subsampling=args.subsampling,
                       bitmaps=args.bitmaps or "", seed=args.seed,
                       backend=args.backend or "").validate()


def _write_report(model, images, labels, out, history=None):
    """Test error and confusion matrix of a trained model on uint8 (N, 28, 28)
    test images; with ``out``, also the figures. Returns (error, matrix)."""
    from . import plots
    from .mnist import preprocess
    from .train import confusion_matrix, evaluate
    error, predicted, _ = evaluate(model, preprocess(images, model.dtype), labels)
    matrix = confusion_matrix(labels, predicted)
    if out:
        os.makedirs(out, exist_ok=True)
        if history:
            plots.plot_history(history, os.path.join(out, "curves.png"))
            plots.plot_rates(history, os.path.join(out, "learning_rates.png"))
        plots.plot_confusion(matrix, os.path.join(out, "confusion.png"))
        plots.plot_misclassified(images, labels, predicted,
                                 os.path.join(out, "misclassified.png"))
    return error, matrix


def _print_confusion(matrix):
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("      " + "".join(f"{j:>6}" for j in range(10)) + "   errors")
    for i, row in enumerate(matrix):
        errors = row.sum() - row[i]
        print(f"{i:>6}" + "".join(f"{v:>6}" for v in row)
              + f"   {errors:>3} ({100 * errors / max(row.sum(), 1):.2f}%)")


def cmd_train(args):
    from .mnist import MnistError, load_mnist
    from .train import Data, Trainer, TrainingDiverged
    config = _config_from_args(args)
    try:
        arrays = load_mnist(args.data, verify=not args.no_verify, progress=not args.quiet)
    except MnistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = Data.from_mnist(arrays, config)
    trainer = Trainer(config, data, args.out, progress=not args.quiet)
    if args.resume and os.path.exists(trainer.checkpoint_path()):
        trainer.load_checkpoint()
        print(f"resuming {trainer.checkpoint_path()} after epoch {trainer.epoch}")
    elif args.resume:
        print(f"no checkpoint in {args.out}: starting from scratch")
    print(f"training LeNet-5 ({config.variant}) on {len(data.train_images):,} images: "
          f"{config.optimizer}, loss {config.loss}, batch {config.batch_size}, "
          f"{config.epochs} epochs, distortions {config.distort}, seed {config.seed}")
    try:
        history = trainer.fit()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    trainer.model.save(os.path.join(args.out, "weights.npz"))
    error, _ = _write_report(trainer.model, data.test_images, data.test_labels, args.out,
                             history)
    print(f"wrote {args.out}/: checkpoint.npz, weights.npz, history.json, curves.png, "
          f"learning_rates.png, confusion.png, misclassified.png")
    print(f"test error: {100 * error:.2f}%")
    return 0


def cmd_evaluate(args):
    from .mnist import MnistError, load_mnist
    from .train import load_trained
    model, _ = load_trained(args.checkpoint, args.variant)
    try:
        arrays = load_mnist(args.data, verify=not args.no_verify, progress=False)
    except MnistError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n = args.test_limit or None
    error, matrix = _write_report(model, arrays["test_images"][:n],
                                  arrays["test_labels"][:n].astype(np.int64), args.figures)
    _print_confusion(matrix)
    print(f"test error: {100 * error:.2f}%")
    return 0


def read_images(path):
    """Images from a PNG (one) or an IDX file (all), as uint8 (N, 28, 28) or (N, 32, 32)."""
    from .idx import read_idx
    if path.lower().endswith(".png"):
        from matplotlib.image import imread
        img = np.asarray(imread(path), dtype=np.float64)
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
        if img.max() <= 1.0:
            img = img * 255
        if img.mean() > 127:                 # dark ink on a light page: invert to MNIST's
            img = 255 - img
        images = np.clip(np.rint(img), 0, 255).astype(np.uint8)[None]
    else:
        images = read_idx(path)
        if images.ndim == 2:
            images = images[None]
    if images.ndim != 3 or images.shape[1:] not in ((28, 28), (32, 32)):
        raise ValueError(f"{path}: expected 28x28 or 32x32 images, got shape {images.shape}")
    return images.astype(np.uint8)


def cmd_predict(args):
    from .mnist import pad_bytes, scale_bytes
    from .models import predict_labels
    from .rbf import EuclideanRBF
    from .train import load_trained
    model, _ = load_trained(args.checkpoint, args.variant)
    kind = "RBF distances" if isinstance(list(model)[-1], EuclideanRBF) else "scores"
    for path in args.images:
        images = read_images(path)
        if images.shape[1] == 28:
            images = pad_bytes(images)
        scores = model.predict_scores(scale_bytes(images, model.dtype))
        for i, (digit, row) in enumerate(zip(predict_labels(model, scores), scores)):
            name = path if len(images) == 1 else f"{path}[{i}]"
            print(f"{name}: digit {digit}   {kind}: " + " ".join(f"{v:.1f}" for v in row))
    return 0


def cmd_bench(args):
    from .bench import main as bench_main
    return bench_main(args)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minilenet", description="LeNet-5 (LeCun et al., 1998) from scratch, for teaching.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print the layer ledger: shapes, parameters, connections")
    p.add_argument("--variant", choices=["paper", "modern"], default="paper")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("bitmaps", help="show the RBF output layer's 7x12 digit codes")
    p.add_argument("file", nargs="?", help="a code set in the same ASCII format "
                                           "(default: the shipped digit bitmaps)")
    p.add_argument("--png", help="also draw them into this PNG file")
    p.set_defaults(func=cmd_bitmaps)

    p = sub.add_parser("gradcheck", help="finite-difference check of every layer, loss and "
                                         "network; exits 1 on any failure")
    p.add_argument("-v", "--verbose", action="store_true", help="name each case as it runs")
    p.set_defaults(func=cmd_gradcheck)

    def data_flags(p):
        p.add_argument("--data", help="folder with the MNIST IDX files (default: "
                                      "$MINILENET_DATA, else ~/.cache/minilenet/mnist)")
        p.add_argument("--no-verify", action="store_true",
                       help="skip the MNIST checksums (for other MNIST-format data sets)")

    p = sub.add_parser("train", help="train LeNet-5 on MNIST (no flags: the paper's recipe)")
    p.add_argument("--variant", choices=["paper", "modern"], default="paper")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=0,
                   help="default: 1 (paper), 64 (modern)")
    p.add_argument("--optimizer", choices=["sdlm", "sgd"],
                   help="default: sdlm (paper), sgd (modern)")
    p.add_argument("--loss", choices=["map", "mse", "ce"], help="default: map (paper), ce (modern)")
    p.add_argument("--j", type=float, default=0.1, help="the MAP criterion's constant j")
    p.add_argument("--lr", type=float, default=0.0, help="SGD learning rate (default 0.01)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--mu", type=float, default=0.5,
                   help="SDLM safety constant (paper: 0.02; default 0.5, see docs/results.md)")
    p.add_argument("--eta-scale", type=float, default=1.0,
                   help="SDLM: multiply the paper's eta schedule by this")
    p.add_argument("--order", choices=["constant", "shuffle"], default="constant",
                   help="constant random order (paper) or a new one every pass")
    p.add_argument("--distort", nargs="?", const="paper", default="none",
                   choices=["none", "paper", "online"],
                   help="affine distortions: 'paper' (60k originals + 540k fixed distorted, "
                        "the default when the flag is given) or 'online' (fresh every pass)")
    p.add_argument("--subsampling", choices=["sum", "average"], default="sum")
    p.add_argument("--bitmaps", help="RBF prototypes as ASCII art (the format of "
                                     "minilenet/resources/digit_bitmaps.txt)")
    p.add_argument("--limit", type=int, default=0, help="train on the first N images only")
    p.add_argument("--validation", type=int, default=0,
                   help="hold out N random training images and report their error each epoch")
    p.add_argument("--test-limit", type=int, default=0, help="test on the first N images only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["numpy", "numba"])
    p.add_argument("--out", default="runs/lenet5", help="output folder (default runs/lenet5)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    data_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test error, confusion matrix and per-class errors")
    p.add_argument("checkpoint", help="checkpoint.npz or weights.npz")
    p.add_argument("--variant", choices=["paper", "modern"], default="paper",
                   help="for a weights.npz (a checkpoint knows its variant)")
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--figures", help="also write confusion.png and misclassified.png here")
    data_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify PNG or IDX images")
    p.add_argument("checkpoint", help="checkpoint.npz or weights.npz")
    p.add_argument("images", nargs="+", help="PNG files (28x28 or 32x32) or IDX image files")
    p.add_argument("--variant", choices=["paper", "modern"], default="paper",
                   help="for a weights.npz (a checkpoint knows its variant)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="speed and memory: NumPy reference against Numba")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--images", type=int, default=2048, help="images per timed training run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--epoch-images", type=int, default=60000,
                   help="images in the timed batch-1 epoch on numba")
    p.add_argument("--numpy-epoch-images", type=int, default=3000,
                   help="images in the timed batch-1 epoch on numpy (scaled to 60,000)")
    p.add_argument("--no-memory", action="store_true", help="skip the training-memory runs")
    p.add_argument("--no-first-call", action="store_true",
                   help="skip timing the cold and cached first call (new processes)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--data", help="MNIST folder for the memory run (default $MINILENET_DATA)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
