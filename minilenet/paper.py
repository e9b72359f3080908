"""The paper's constants (LeCun, Bottou, Bengio & Haffner, 1998), stated once.

Every module that needs one imports it from here; nothing here imports the rest of
the package (docs/paper.md has the sections they come from).
"""
from importlib import resources

import numpy as np

#: The squashing function f(a) = A tanh(S a) (eq. 6, Appendix A): f(+-1) = +-1.
A = 1.7159
S = 2.0 / 3.0

#: The network's input: one 32x32 plane (MNIST's 28x28 digits, padded).
INPUT_SHAPE = (1, 32, 32)

#: The learning-rate schedule for MNIST, by pass (section III-B):
#: (first pass, last pass, eta).
PAPER_ETA = ((1, 2, 5e-4), (3, 5, 2e-4), (6, 8, 1e-4), (9, 12, 5e-5), (13, None, 1e-5))


def paper_eta(epoch):
    """eta for the 0-based ``epoch`` (pass epoch + 1) of the paper's schedule."""
    p = epoch + 1
    for first, last, eta in PAPER_ETA:
        if p >= first and (last is None or p <= last):
            return eta
    raise ValueError(f"epoch must be >= 0, got {epoch}")


def load_c3_table():
    """Table I as a (6, 16) boolean matrix: ``table[s2_map, c3_map]``, read from
    ``resources/c3_table.txt`` (X = connected)."""
    text = resources.files("minilenet").joinpath("resources/c3_table.txt").read_text()
    rows = [line.split(":", 1)[1].split() for line in text.splitlines()
            if line.startswith("S2")]
    return np.array([[cell == "X" for cell in row] for row in rows], dtype=bool)


#: Table I: which of S2's 6 maps each of C3's 16 maps reads (60 connections).
C3_TABLE = load_c3_table()
