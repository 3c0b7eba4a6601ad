"""argparse `type=` checkers shared by the stage CLIs: a bad value is argparse's usage error (exit 2), naming it."""

from __future__ import annotations

import argparse
import math


def _parse(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def positive_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _parse(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _parse(text, float, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def probability(text: str) -> float:
    value = _parse(text, float, "a number")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def token_count(text: str) -> int:
    """'50M', '2.3T', '1e9', '600_000_000' → a whole number of tokens >= 1 (budgets on every command line)."""
    from languages.sampling import parse_token_count

    try:
        value = parse_token_count(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a token budget must be at least 1, got {text!r}")
    return value


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of descriptions and examples as written (every command's help)."""
