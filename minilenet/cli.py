"""The ``minilenet`` command: summary, gradcheck (and, as they land, train,
evaluate, predict, bench)."""
import argparse
import sys


def cmd_summary(args):
    from .models import lenet5
    print(lenet5(args.variant).summary())
    return 0


def cmd_gradcheck(args):
    from .gradcheck import format_results
    from .gradcheck_suite import run_suite
    results = run_suite(progress=(lambda label: print(f"checking {label} ...",
                                                      file=sys.stderr)) if args.verbose else None)
    print(format_results(results))
    return 0 if all(r.passed for r in results) else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="minilenet", description="LeNet-5 (LeCun et al., 1998) from scratch, for teaching.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("summary", help="print the layer ledger: shapes, parameters, connections")
    p.add_argument("--variant", choices=["paper", "modern"], default="paper")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("gradcheck", help="finite-difference check of every layer, loss and "
                                         "network; exits 1 on any failure")
    p.add_argument("-v", "--verbose", action="store_true", help="name each case as it runs")
    p.set_defaults(func=cmd_gradcheck)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
