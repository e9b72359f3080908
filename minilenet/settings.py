"""Settings stated once: a dataclass field carries its default, its range or
choices and its help, and the command line is built from it.

    epochs: int = setting(20, POSITIVE_INT, "passes over the training images")

``add_flags(parser, TrainConfig)`` adds ``--epochs`` with that type and help;
``from_flags(TrainConfig, args)`` builds the dataclass from the parsed flags (a
flag not given keeps the field's default, or the default for the variant chosen,
``other_variants``); ``problems(config)`` checks every field against its range
and choices, which is how ``TrainConfig.validate`` checks a configuration made
in Python. argparse reports a bad flag with the flag's name, ``validate`` with
the field's: the same rule, stated here once.
"""
import argparse
import dataclasses
import math


class Range:
    """The values a number may take: an argparse type (text -> value) and a check
    (value -> a problem, or "")."""

    def __init__(self, convert, what, allowed, rule):
        self.convert, self.what, self.allowed, self.rule = convert, what, allowed, rule

    def __call__(self, text):
        try:
            value = self.convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.what}, got {text!r}") from None
        if not self.allowed(value):
            raise argparse.ArgumentTypeError(f"must {self.rule}, got {text}")
        return value

    def problem(self, value):
        return "" if self.allowed(value) else f"must {self.rule}, got {value!r}"


POSITIVE_INT = Range(int, "a whole number", lambda v: v >= 1, "be at least 1")
NONNEGATIVE_INT = Range(int, "a whole number", lambda v: v >= 0, "not be negative")
POSITIVE_FLOAT = Range(float, "a number", lambda v: math.isfinite(v) and v > 0,
                       "be a positive number")
NONNEGATIVE_FLOAT = Range(float, "a number", lambda v: math.isfinite(v) and v >= 0,
                          "not be negative")
FRACTION = Range(float, "a number", lambda v: 0 <= v < 1, "be at least 0 and below 1")


def setting(default, kind=None, help="", *, choices=None, flag=True, unset=None,
            other_variants=None, **argparse_options):
    """A dataclass field with its flag. ``kind``: a ``Range`` (or ``str``, ``bool``);
    ``choices``: the values allowed; ``flag=False``: no flag (Python only);
    ``unset``: a value that stands for "not given" and is allowed besides the
    range (0 for "all images"); ``other_variants``: the default for the variants
    other than the paper's; ``argparse_options``: passed on (``nargs``, ``const``)."""
    return dataclasses.field(default=default, metadata=dict(
        kind=kind, help=help, choices=choices, flag=flag, unset=unset,
        other_variants=other_variants, argparse=argparse_options))


def _flag(field):
    return "--" + field.name.replace("_", "-")


def add_flags(parser, cls):
    """One flag per field of ``cls`` that has one, from its metadata."""
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if not meta.get("flag", False):
            continue
        if meta["kind"] is bool:
            parser.add_argument(_flag(field), action="store_true", help=meta["help"])
            continue
        text = meta["help"]
        if meta["other_variants"] is not None:
            text += (f" (default: {field.default} for the paper's network, "
                     f"{meta['other_variants']} for the other variants)")
        elif field.default not in (meta["unset"], "") and "default" not in text:
            text += f" (default {field.default})"
        options = dict(help=text or None, default=None, **meta["argparse"])
        if meta["choices"] is not None:
            options["choices"] = list(meta["choices"])
        if isinstance(meta["kind"], Range):
            options["type"] = meta["kind"]
        parser.add_argument(_flag(field), **options)


def from_flags(cls, args):
    """An instance of ``cls`` from parsed ``args``: each flag given sets its field;
    one not given keeps the default (for ``args.variant``, when the field has one
    for the other variants)."""
    values, given = {}, vars(args)
    paper = given.get("variant") in (None, "paper")
    for field in dataclasses.fields(cls):
        meta = field.metadata
        value = given.get(field.name) if meta.get("flag", False) else None
        if value is None or value is False:
            if meta.get("other_variants") is not None and not paper:
                values[field.name] = meta["other_variants"]
            continue
        values[field.name] = value
    return cls(**values)


def problems(config):
    """(field name, problem) for each field of ``config`` out of its range or
    choices, in field order."""
    found = []
    for field in dataclasses.fields(config):
        meta, value = field.metadata, getattr(config, field.name)
        if not meta or value == meta.get("unset", None):
            continue
        if meta["choices"] is not None and value not in meta["choices"]:
            found.append((field.name, f"must be one of {tuple(meta['choices'])}, got {value!r}"))
        elif isinstance(meta["kind"], Range) and meta["kind"].problem(value):
            found.append((field.name, meta["kind"].problem(value)))
    return found
