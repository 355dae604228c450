"""Checks of the values that cross a public entry point (generation keywords, speech options, Processor options,
load / save arguments, write_wav): one type-and-range rule per kind of value, each raising a named omni error that
says which option was wrong, what it must be and what it got.

numpy scalars count as the Python numbers they are (a seed of np.int64(7) is the int 7); booleans are never numbers
(True is not the count 1) and numbers are never booleans; NaN and infinities are refused everywhere.
"""

from __future__ import annotations

import math
import numbers
import operator

from .errors import InputError


def integer(name: str, value, low: int | None = None, high: int | None = None, error=InputError,
            what: str | None = None) -> int:
    """An integer in [low, high] (either end open when None), numpy integers included. `what`: how to say it."""
    what = what or f"an integer{_range(low, high)}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise error(f"{name} must be {what}, got {value!r}")
    value = operator.index(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise error(f"{name} must be {what}, got {value}")
    return value


def number(name: str, value, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, error=InputError, what: str | None = None) -> float:
    """A finite real number in the range (open ends where asked), numpy floats included. `what`: how to say it."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = not (low is not None and (v < low or (low_open and v == low))) and \
            not (high is not None and (v > high or (high_open and v == high)))
    if not ok:
        bounds = f"{'(' if low_open else '['}{low if low is not None else '-inf'}, " \
                 f"{high if high is not None else 'inf'}{')' if high_open else ']'}"
        raise error(f"{name} must be {what or 'a finite number in ' + bounds}, got {value!r}")
    return float(value)


def boolean(name: str, value, error=InputError) -> bool:
    """True or False (numpy booleans included): not 0 / 1, not "false"."""
    if type(value).__name__ == "bool_" or isinstance(value, bool):
        return bool(value)
    raise error(f"{name} must be True or False, got {value!r}")


def string(name: str, value, choices=None, error=InputError) -> str:
    """A non-empty string, one of `choices` when given."""
    if not isinstance(value, str) or not value or (choices is not None and value not in choices):
        what = f"one of {sorted(choices)}" if choices is not None else "a non-empty string"
        raise error(f"{name} must be {what}, got {value!r}")
    return value


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f" in {low}..{high}"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""
