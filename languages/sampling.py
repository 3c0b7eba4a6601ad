"""Temperature sampling over languages, and per-language token budgets with epoch caps.

    p_i = n_i^τ / Σ_j n_j^τ        (τ = 1: proportional to data; τ → 0: uniform; mmBERT: 0.7 → 0.5 → 0.3)

This is the one implementation the tokenizer trainer, the training loader, the phase mixtures and the reports call.
"""

from __future__ import annotations

import csv
import decimal
import math
import re
from pathlib import Path
from typing import Mapping

from mmbert.errors import UsageError
from languages.registry import UnknownLanguage, normalize


def temperature_weights(counts: Mapping[str, float], temperature: float) -> dict[str, float]:
    """p_i ∝ n_i^τ over the languages in `counts`; languages with no data get 0. Sums to 1 (unless all are 0)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    for language, count in counts.items():
        if count < 0 or math.isnan(count):
            raise ValueError(f"count for {language} must be >= 0, got {count}")
    logs = {language: temperature * math.log(count) for language, count in counts.items() if count > 0}
    if not logs:
        return {language: 0.0 for language in counts}
    top = max(logs.values())  # in log space so 1e12 ** 0.7 never overflows and tiny counts never vanish
    unnormalised = {language: math.exp(value - top) for language, value in logs.items()}
    total = sum(unnormalised.values())
    return {language: unnormalised.get(language, 0.0) / total for language in counts}


def token_budgets(counts: Mapping[str, float], temperature: float, budget: int,
                  max_epochs: float | None = None) -> dict[str, int]:
    """Split `budget` tokens over languages by temperature weights, each capped at `max_epochs` × its data.

    The part of a capped language's share it cannot use goes to the others in proportion to their weights, so the
    total is `budget` whenever the caps allow it (and Σ caps otherwise). Integers, rounded by largest remainder.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if max_epochs is not None and not max_epochs > 0:
        raise ValueError(f"max_epochs must be > 0, got {max_epochs}")
    weights = temperature_weights(counts, temperature)
    caps = {language: (math.floor(max_epochs * counts[language]) if max_epochs is not None else math.inf)
            for language in counts}
    shares: dict[str, float] = {language: 0.0 for language in counts}
    active = {language for language, weight in weights.items() if weight > 0}
    remaining = float(budget)
    while active and remaining > 0:  # water-filling: cap the languages that overflow, re-split the rest
        total_weight = sum(weights[language] for language in active)
        proposal = {language: remaining * weights[language] / total_weight for language in active}
        overflowing = {language for language in active if proposal[language] >= caps[language]}
        if not overflowing:
            shares.update(proposal)
            break
        for language in overflowing:
            shares[language] = caps[language]
            remaining -= caps[language]
        active -= overflowing
    return _round_preserving_total(shares, caps, target=min(budget, sum(shares.values())))


def _round_preserving_total(shares: dict[str, float], caps: dict[str, float], target: float) -> dict[str, int]:
    floors = {language: int(math.floor(share)) for language, share in shares.items()}
    missing = int(round(target)) - sum(floors.values())
    # Largest fractional part first; ties broken by label so the result never depends on dict order.
    order = sorted((language for language in shares if floors[language] < caps[language]),
                   key=lambda language: (-(shares[language] - floors[language]), language))
    for language in order[:max(missing, 0)]:
        floors[language] += 1
    return floors


def read_counts_csv(path: str | Path, ignore_unknown: bool = False) -> dict[str, int]:
    """Read a `language,tokens` CSV into registry label → count. Rows that normalise to one label are summed.

    Raises UsageError naming the problem: missing file, wrong header, non-integer or negative counts, unknown codes
    (unless `ignore_unknown`, which drops them).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"counts file not found: {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [column.strip() for column in header[:2]] != ["language", "tokens"]:
            raise UsageError(f"{path}: the header must start with 'language,tokens', got {header!r}")
        counts: dict[str, int] = {}
        unknown: list[str] = []
        for line_number, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise UsageError(f"{path}:{line_number}: expected 'language,tokens', got {row!r}")
            label, value = row[0].strip(), row[1].strip()
            count = _parse_count(value)
            if count is None:
                raise UsageError(f"{path}:{line_number}: tokens must be an integer, got {value!r}")
            if count < 0:
                raise UsageError(f"{path}:{line_number}: tokens must be >= 0, got {count} for {label}")
            try:
                code = normalize(label)
            except UnknownLanguage:
                unknown.append(label)
                continue
            counts[code] = counts.get(code, 0) + count
    if unknown and not ignore_unknown:
        raise UsageError(f"{path}: unknown language codes: {', '.join(sorted(set(unknown)))} "
                         "(use --ignore-unknown to drop them)")
    return counts


def _parse_count(value: str) -> int | None:
    """An integer count, also written as a float with no fraction (`2.3e12`); None when it is not one."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


_TOKEN_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_TOKEN_COUNT = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)\s*([kmbgt]?)\s*(?:tok)?\s*")


MAX_TOKEN_COUNT = 2**53  # ~9e15: a hundred times Common Crawl's tokens


def parse_token_count(value) -> int:
    """10000, 1e4, "10K", "2.3T", "600_000", "100000000000tok" (mmBERT's spelling) → a whole number of tokens >= 0.

    Raises ValueError naming the value; callers turn it into their own error (a recipe key, a command-line flag).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a number of tokens, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (match := _TOKEN_COUNT.fullmatch(value.lower())):
        # Decimal, not float: 4.02 * 1000 is 4019.999… in binary floating point, and "4.02k" is a whole number.
        number = decimal.Decimal(match.group(1).replace("_", "")) * _TOKEN_SUFFIXES[match.group(2)]
    else:
        raise ValueError(f"expected a number of tokens like 20000, 50K, 2.3T; got {value!r}")
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"must be a whole number of tokens >= 0, got {value!r}")
    if number > MAX_TOKEN_COUNT:  # budgets are shared out in floating point, exact only up to 2**53
        raise ValueError(f"must be at most 9e15 tokens (2**53), got {value!r}")
    return int(number)


def format_counts_csv(counts: Mapping[str, int]) -> str:
    """The `language,tokens` CSV that `read_counts_csv` reads (languages without data left out)."""
    lines = ["language,tokens"] + [f"{label},{int(count)}" for label, count in counts.items() if count > 0]
    return "\n".join(lines) + "\n"
