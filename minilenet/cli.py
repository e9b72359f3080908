"""The ``minilenet`` command: summary, bitmaps, gradcheck, train, evaluate, predict, bench.

A mistake the user can fix (a missing or corrupt file, a flag out of range)
ends as one line, ``error: ...``, on stderr and exit status 2; ``--debug``
(or ``MINILENET_DEBUG=1``) shows the traceback instead.
"""
import argparse
import os
import sys
import time

import numpy as np

from .errors import UserError
from .models import VARIANTS
from .settings import POSITIVE_FLOAT as positive_float
from .settings import POSITIVE_INT as positive_int
from .settings import add_flags, from_flags
from .teaching import UNIT_MEMORY_MB


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its usage errors in the same one-line form as the others."""

    def error(self, message):
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def cmd_summary(args):
    from .models import lenet5
    print(lenet5(args.variant).summary())
    return 0


def cmd_bitmaps(args):
    from .bitmaps import format_bitmaps, hamming_distances, load_digit_bitmaps, read_bitmaps
    if args.file:
        centers = read_bitmaps(args.file)
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
    from .gradcheck_suite import check_units, format_report, run_suite
    units = check_units([u.strip() for text in args.unit for u in text.split(",")
                         if u.strip()]) if args.unit else None
    results = run_suite(progress=(lambda label: print(f"checking {label} ...",
                                                      file=sys.stderr)) if args.verbose else None,
                        units=units)
    print(format_report(results))
    return 0 if all(r.passed for r in results) else 1


def cmd_check(args):
    from .teaching.check import check, format_report
    report = check(args.units)
    print(format_report(report))
    return 0 if all(r.status == "passed" for r in report) else 1


def _config_from_args(args):
    from .train.config import TrainConfig
    return from_flags(TrainConfig, args).validate()


def _write_report(model, config, images, labels, out, history=None):
    """Test error and confusion matrix of a trained model (of ``config``) on uint8
    (N, 28, 28) test images; with ``out``, also the figures. Returns (error, matrix)."""
    from . import plots
    from .evaluation import confusion_matrix, evaluate
    from .mnist import scale_bytes
    error, predicted, _ = evaluate(model, scale_bytes(config.input_bytes(images), model.dtype),
                                   labels)
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
    from .mnist import load_mnist
    from .train.config import build_model, rbf_centers
    from .train.data import Data
    from .train.trainer import Trainer, TrainingDiverged
    config = _config_from_args(args)
    model = build_model(config, rbf_centers(config))  # a bad bitmaps file is reported first
    arrays = load_mnist(args.data, verify=not args.no_verify, progress=not args.quiet)
    data = Data.from_mnist(arrays, config)
    trainer = Trainer(config, data, args.out, progress=not args.quiet, model=model)
    if args.resume and os.path.exists(trainer.checkpoint_path()):
        trainer.load_checkpoint()
        print(f"resuming {trainer.checkpoint_path()} after epoch {trainer.epoch}")
    elif args.resume:
        print(f"no checkpoint in {args.out}: starting from scratch")
    name = (f"LeNet-5 ({config.variant})" if config.variant in ("paper", "modern")
            else f"the {config.variant} network")
    print(f"training {name} on {len(data.train_images):,} images: "
          f"{config.optimizer}, loss {config.loss}, batch {config.batch_size}, "
          f"{config.epochs} epochs, distortions {config.distort}, seed {config.seed}")
    try:
        history = trainer.fit()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    trainer.model.save(os.path.join(args.out, "weights.npz"))
    error, _ = _write_report(trainer.model, config, data.test_images, data.test_labels,
                             args.out, history)
    print(f"wrote {args.out}/: checkpoint.npz, weights.npz, history.json, curves.png, "
          f"learning_rates.png, confusion.png, misclassified.png")
    print(f"weights SHA-256: {trainer.model.weights_sha256()}")
    print(f"test error: {100 * error:.2f}%")
    return 0


def cmd_evaluate(args):
    from .mnist import load_mnist
    from .train.checkpoints import load_trained
    model, config = load_trained(args.checkpoint, args.variant, args.deskew)
    arrays = load_mnist(args.data, verify=not args.no_verify, progress=False)
    n = args.test_limit
    error, matrix = _write_report(model, config, arrays["test_images"][:n],
                                  arrays["test_labels"][:n].astype(np.int64), args.figures)
    _print_confusion(matrix)
    print(f"test error: {100 * error:.2f}%")
    return 0


def read_images(path):
    """Images from a file as uint8 (N, 28, 28) or (N, 32, 32): all of an IDX file,
    or a picture of one digit (PNG, JPEG...) made MNIST-style (``handwriting``)."""
    from .handwriting import read_images as read
    return read(path)


def cmd_predict(args):
    from .mnist import scale_bytes
    from .models import predict_labels
    from .rbf import EuclideanRBF
    from .train.checkpoints import load_trained
    model, config = load_trained(args.checkpoint, args.variant, args.deskew)
    rbf = isinstance(list(model)[-1], EuclideanRBF)
    if args.show and not rbf:
        raise UserError(f"--show draws the ten RBF distances, and {args.checkpoint} is a "
                        f"network without an RBF output (the {config.variant} variant); "
                        f"drop --show")
    kind = "RBF distances" if rbf else "scores"
    for n, path in enumerate(args.images):
        images = read_images(path)
        if images.shape[1] == 28:
            images = config.input_bytes(images)
        elif images.shape[1:] != model.input_shape[1:]:
            raise UserError(f"{path}: images of {images.shape[1]}x{images.shape[2]}, and the "
                            f"{config.variant} network reads 28x28 digits (made into "
                            f"{model.input_shape[1]}x{model.input_shape[2]})")
        scores = model.predict_scores(scale_bytes(images, model.dtype))
        for i, (digit, row) in enumerate(zip(predict_labels(model, scores), scores)):
            name = path if len(images) == 1 else f"{path}[{i}]"
            print(f"{name}: digit {digit}   {kind}: " + " ".join(f"{v:.1f}" for v in row))
        if n == 0:
            first = (path, images[0], scores[0])
    if args.show:
        from .handwriting import read_picture
        from .plots import plot_prediction
        path, digit32, distances = first
        plot_prediction(read_picture(path), digit32, distances, path=args.show,
                        title=os.path.basename(path))
        print(f"wrote {args.show}")
    return 0


def cmd_assign(args):
    from .teaching.assign import assign, locations, parse_units
    from .teaching.units import UNITS, notebook_path
    if args.list:
        where = locations()
        for unit in UNITS.values():
            n = len(where[unit.name])
            print(f"{unit.name:<24}{unit.summary} ({notebook_path(unit.name)}; "
                  f"{n} region{'s' if n != 1 else ''}; {unit.points:g} points)")
        return 0
    if not args.out:
        raise UserError("assign: name the folder to write the student copy into "
                        "(minilenet assign OUT), or pass --list")
    units = [] if args.solutions else parse_units(args.units) if args.units else None
    secret = None
    if args.secret or args.secret_file:
        from .teaching.grading import load_secret
        secret = load_secret(args.secret, args.secret_file)
    out = assign(args.out, units, secret=secret)
    withheld = units if units is not None else list(UNITS)
    print(f"wrote a student copy to {out} withholding {len(withheld)} units"
          + (f": {', '.join(withheld)}" if withheld else " (a solution copy)"))
    return 0


def cmd_grade(args):
    target = os.path.realpath(args.submission)
    mine = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    if os.path.commonpath([mine, target]) == target:      # before importing the grader
        raise UserError(f"grade: this minilenet ({mine}) lives inside {target}: a "
                        f"submission's own grader is the student's code; run the "
                        f"instructor's minilenet, installed outside the submissions")
    try:
        from .teaching import grading
    except ImportError:
        raise UserError("grade: this is a student copy; grading needs the instructor's "
                        "minilenet") from None
    from .teaching.assign import parse_units
    if not os.path.isdir(target):
        raise UserError(f"grade: {args.submission}: no such folder")
    units = parse_units(args.units) if args.units else None
    secret = grading.load_secret(args.secret, args.secret_file)
    rubric = grading.read_rubric(args.rubric)
    folder = not grading.is_submission(target)
    cover = [target] + ([args.secret_file] if args.secret_file else [])
    box = grading.make_sandbox(args.timeout, args.memory, args.sandbox_user, cover)
    if folder:
        reports, csv_path = grading.grade_folder(target, rubric, units, secret, box, args.csv,
                                                 progress=not args.quiet)
        for student, report in reports.items():
            print(f"{student}: {report.total:g} / {report.max_total:g}"
                  + (f" ({report.error})" if report.error else ""))
        print(f"wrote {csv_path} and {os.path.join(target, 'grades')}{os.sep}")
        return 0
    progress = None if args.quiet else (lambda unit: print(f"grading {unit} ...",
                                                           file=sys.stderr))
    start = time.monotonic()
    report = grading.grade(target, rubric, units, secret, box, progress)
    grading.add_similarity(report)
    print(grading.format_table(report))
    if args.json:
        grading.write_json(args.json, grading.to_json(report))
    if args.gradescope:
        grading.write_json(args.gradescope,
                           grading.to_gradescope(report, time.monotonic() - start))
    return 0


def cmd_autograder(args):
    from .teaching import autograder, grading
    from .teaching.assign import parse_units
    rubric = grading.read_rubric(args.rubric)
    units = parse_units(args.units) if args.units else sorted(rubric)
    secret = grading.load_secret(args.secret, args.secret_file)
    if secret is None:
        secret = grading.new_secret().encode()
        print("no --secret given: the bundle draws its hidden cases from a new random one")
    out = autograder.build(args.out, units, rubric, secret, args.timeout, args.memory)
    print(f"wrote {out}: Gradescope's autograder for {len(units)} units "
          f"({sum(rubric[u] for u in units):g} points); upload it as the zip file")
    return 0


def cmd_bench(args):
    from .bench import main as bench_main
    return bench_main(args)


def _grading_flags(p, units_help):
    """The flags ``grade`` and ``autograder`` share."""
    p.add_argument("--units", help=f"comma-separated units {units_help}")
    p.add_argument("--secret", help="the assignment's secret, which draws the hidden cases "
                                    "and checks the copy's signed record (default "
                                    "$MINILENET_GRADING_SECRET; grade without one: new hidden "
                                    "cases every run; autograder: a new random one)")
    p.add_argument("--secret-file", help="a file holding the secret (kept out of every unit)")
    p.add_argument("--rubric", help="points per unit, TOML [points] table (default: each "
                                    "unit's own points)")
    p.add_argument("--timeout", type=positive_float, default=60,
                   help="seconds each unit may run (default 60)")
    p.add_argument("--memory", type=positive_int, default=UNIT_MEMORY_MB,
                   help=f"MiB of address space each unit may use (default {UNIT_MEMORY_MB})")


def build_parser():
    parser = ArgumentParser(
        prog="minilenet", description="LeNet-5 (LeCun et al., 1998) from scratch, for teaching.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print the layer ledger: shapes, parameters, connections")
    p.add_argument("--variant", choices=VARIANTS, default="paper")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("bitmaps", help="show the RBF output layer's 7x12 digit codes")
    p.add_argument("file", nargs="?", help="a code set in the same ASCII format "
                                           "(default: the shipped digit bitmaps)")
    p.add_argument("--png", help="also draw them into this PNG file")
    p.set_defaults(func=cmd_bitmaps)

    p = sub.add_parser("gradcheck", help="finite-difference check of every layer, loss and "
                                         "network; exits 1 on any failure")
    p.add_argument("-v", "--verbose", action="store_true", help="name each case as it runs")
    p.add_argument("--unit", action="append", metavar="NAME",
                   help="only the checks that run this unit's code (repeatable, or "
                        "comma-separated: --unit conv.backward,col2im)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("check", help="check your units on the visible cases (a student's own "
                                     "grader); exits 1 unless every unit asked passes")
    p.add_argument("units", nargs="*", help="units to check (default: this copy's units; "
                                            "in the instructor's checkout, every unit)")
    p.set_defaults(func=cmd_check)

    def data_flags(p):
        p.add_argument("--data", help="folder with the MNIST IDX files (default: "
                                      "$MINILENET_DATA, else ~/.cache/minilenet/mnist)")
        p.add_argument("--no-verify", action="store_true",
                       help="skip the MNIST checksums (for other MNIST-format data sets)")

    p = sub.add_parser("train", help="train LeNet-5 on MNIST (no flags: the paper's recipe)")
    from .train.config import TrainConfig
    add_flags(p, TrainConfig)                    # one flag per setting of the recipe
    p.add_argument("--out", default="runs/lenet5", help="output folder (default runs/lenet5)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    data_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test error, confusion matrix and per-class errors")
    p.add_argument("checkpoint", help="checkpoint.npz or weights.npz")
    p.add_argument("--variant", choices=VARIANTS,
                   help="for a weights.npz (default paper; a checkpoint knows its variant)")
    p.add_argument("--deskew", action="store_true",
                   help="for a weights.npz trained on deskewed digits")
    p.add_argument("--test-limit", type=positive_int, help="test on the first N images only")
    p.add_argument("--figures", help="also write confusion.png and misclassified.png here")
    data_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="read handwritten digits: photos, scans, PNG or IDX images",
        description="Classify digits. A picture (PNG, JPEG...; any size, grey or colour, "
                    "dark ink on light paper or the reverse) is made MNIST-style first: "
                    "background removed, cropped to the ink, fit into 20x20, centred by "
                    "mass in 28x28; IDX image files (28x28 or 32x32) are read as they are.")
    p.add_argument("checkpoint", help="checkpoint.npz or weights.npz")
    p.add_argument("images", nargs="+",
                   help="pictures of one digit each (PNG, JPEG...) or IDX image files")
    p.add_argument("--variant", choices=VARIANTS,
                   help="for a weights.npz (default paper; a checkpoint knows its variant)")
    p.add_argument("--deskew", action="store_true",
                   help="for a weights.npz trained on deskewed digits")
    p.add_argument("--show", metavar="FILE",
                   help="draw the first image, the network's 32x32 input made from it and "
                        "the ten RBF distances into FILE (PNG); paper variant")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="speed and memory: NumPy reference against Numba")
    p.add_argument("--batches", type=positive_int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--images", type=positive_int, default=2048,
                   help="images per timed training run")
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--epoch-images", type=positive_int, default=60000,
                   help="images in the timed batch-1 epoch on numba")
    p.add_argument("--numpy-epoch-images", type=positive_int, default=3000,
                   help="images in the timed batch-1 epoch on numpy (scaled to 60,000)")
    p.add_argument("--no-memory", action="store_true", help="skip the training-memory runs")
    p.add_argument("--no-first-call", action="store_true",
                   help="skip timing the cold and cached first call (new processes)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--data", help="MNIST folder for the memory run (default $MINILENET_DATA)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("assign", help="write a student copy with chosen units withheld")
    p.add_argument("out", nargs="?", help="a new (or empty) folder for the student copy")
    p.add_argument("--units", help="comma-separated units to withhold (default: all; "
                                   "--list shows them)")
    p.add_argument("--list", action="store_true", help="list the units, one line each")
    p.add_argument("--solutions", action="store_true",
                   help="withhold nothing: a solution copy (the answer key)")
    p.add_argument("--secret", help="sign the copy's record of its units with the "
                                    "assignment's secret (grade --secret checks it)")
    p.add_argument("--secret-file", help="a file holding the secret")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("grade", help="grade a student copy (or a folder of them) unit by unit")
    p.add_argument("submission", help="a student copy, or a folder with one per student")
    _grading_flags(p, "to grade (default: the copy's record of its withheld units)")
    p.add_argument("--json", help="write the detailed results here")
    p.add_argument("--gradescope", help="write Gradescope's results.json here")
    p.add_argument("--csv", help="for a folder: the scores' CSV (default FOLDER/grades.csv)")
    p.add_argument("--sandbox-user", help="when run as root: the unprivileged account units "
                                          "run as (default nobody)")
    p.add_argument("--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("autograder", help="write a Gradescope autograder bundle (a .zip)")
    p.add_argument("out", help="the zip file to write")
    _grading_flags(p, "of the assignment (default: every unit of the rubric)")
    p.set_defaults(func=cmd_autograder)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true",
                       help="show the traceback of an error (also: MINILENET_DEBUG=1)")
    return parser


def _one_line(text):
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def main(argv=None):
    """Run the command; user errors become ``error: ...`` and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, OSError, KeyboardInterrupt) as e:
        if args.debug or os.environ.get("MINILENET_DEBUG", "0") not in ("", "0"):
            raise
        if isinstance(e, KeyboardInterrupt):
            message = "interrupted (a training run keeps its last checkpoint: --resume)"
        elif isinstance(e, OSError) and e.filename:
            message = f"{e.filename}: {e.strerror or e}"
        else:
            message = _one_line(e)
        print(f"error: {message}", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 2


if __name__ == "__main__":
    sys.exit(main())
