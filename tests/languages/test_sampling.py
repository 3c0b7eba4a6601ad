"""Temperature maths on known inputs, epoch caps with redistribution, and the counts file's error messages."""

import math

import pytest

from languages.sampling import parse_token_count, read_counts_csv, temperature_weights, token_budgets
from mmbert.errors import UsageError

COUNTS = {"eng_Latn": 1_000_000, "fra_Latn": 100_000, "swh_Latn": 1_000, "yor_Latn": 10}


def test_temperature_one_is_proportional():
    weights = temperature_weights(COUNTS, 1.0)
    total = sum(COUNTS.values())
    for label, count in COUNTS.items():
        assert weights[label] == pytest.approx(count / total)


def test_temperature_to_zero_is_uniform_and_sums_to_one():
    weights = temperature_weights(COUNTS, 1e-9)
    assert all(value == pytest.approx(0.25, abs=1e-6) for value in weights.values())
    for tau in (0.3, 0.5, 0.7, 1.0):
        assert math.fsum(temperature_weights(COUNTS, tau).values()) == pytest.approx(1.0)


def test_known_value_at_tau_half():
    weights = temperature_weights({"a": 100, "b": 1}, 0.5)
    assert weights["a"] == pytest.approx(10 / 11) and weights["b"] == pytest.approx(1 / 11)


def test_monotonic_in_count_and_lower_tau_flattens():
    for tau in (0.3, 0.7):
        weights = temperature_weights(COUNTS, tau)
        ordered = sorted(COUNTS, key=COUNTS.get)
        assert [weights[l] for l in ordered] == sorted(weights[l] for l in ordered)
    assert temperature_weights(COUNTS, 0.3)["yor_Latn"] > temperature_weights(COUNTS, 0.7)["yor_Latn"]


def test_zero_counts_get_zero_and_bad_values_fail():
    assert temperature_weights({"a": 0, "b": 5}, 0.5) == {"a": 0.0, "b": 1.0}
    with pytest.raises(ValueError, match="temperature"):
        temperature_weights(COUNTS, 0)
    with pytest.raises(ValueError, match=">= 0"):
        temperature_weights({"a": -1}, 0.5)


def test_budgets_sum_to_budget_and_follow_weights():
    budgets = token_budgets(COUNTS, 0.5, 1_000_000)
    assert sum(budgets.values()) == 1_000_000
    weights = temperature_weights(COUNTS, 0.5)
    for label in COUNTS:
        assert abs(budgets[label] - weights[label] * 1_000_000) <= 1


def test_epoch_cap_redistributes_the_excess():
    budgets = token_budgets(COUNTS, 0.3, 500_000, max_epochs=2)
    assert sum(budgets.values()) == 500_000  # still met: the big languages absorb the excess
    assert budgets["yor_Latn"] == 20 and budgets["swh_Latn"] == 2_000  # capped at 2 epochs
    uncapped = token_budgets(COUNTS, 0.3, 500_000)
    assert budgets["eng_Latn"] > uncapped["eng_Latn"] and budgets["fra_Latn"] > uncapped["fra_Latn"]
    # the ratio between uncapped languages is still the temperature ratio
    weights = temperature_weights(COUNTS, 0.3)
    assert budgets["eng_Latn"] / budgets["fra_Latn"] == pytest.approx(weights["eng_Latn"] / weights["fra_Latn"], rel=1e-4)


def test_budget_beyond_all_caps_gives_every_cap():
    budgets = token_budgets(COUNTS, 0.3, 10**9, max_epochs=1.5)
    assert budgets == {label: math.floor(1.5 * count) for label, count in COUNTS.items()}


def write(tmp_path, text, name="counts.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_counts_normalises_and_sums(tmp_path):
    path = write(tmp_path, "language,tokens\nfra,10\nfra_Latn,5\n__label__en,3\nzho,2.3e3\n")
    assert read_counts_csv(path) == {"fra_Latn": 15, "eng_Latn": 3, "cmn_Hani": 2300}


@pytest.mark.parametrize("text, message", [
    ("lang,count\nfra,1\n", "header"),
    ("language,tokens\nfra,-3\n", ">= 0"),
    ("language,tokens\nfra,many\n", "integer"),
    ("language,tokens\nfra,1\nxyz,2\nqqq,4\n", "unknown language codes: qqq, xyz"),
    ("", "header"),
])
def test_read_counts_bad_input(tmp_path, text, message):
    with pytest.raises(UsageError, match=message):
        read_counts_csv(write(tmp_path, text))


def test_read_counts_missing_file_and_ignore_unknown(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_counts_csv(tmp_path / "nope.csv")
    assert read_counts_csv(write(tmp_path, "language,tokens\nfra,1\nxyz,2\n"), ignore_unknown=True) == {"fra_Latn": 1}


@pytest.mark.parametrize("value, tokens", [(10000, 10000), (1e4, 10000), ("10K", 10000), ("2.3T", 2_300_000_000_000),
                                           ("600_000", 600000), ("100000000000tok", 10**11), ("50m", 50_000_000),
                                           # decimals binary floats cannot hold: 4.02 * 1000 = 4019.999…
                                           ("4.02k", 4020), ("16.1k", 16100), ("1.07T", 1_070_000_000_000)])
def test_token_counts_in_every_spelling(value, tokens):
    assert parse_token_count(value) == tokens


@pytest.mark.parametrize("value", ["lots", "-5", "1.5", "4.0005k", True, float("nan"), float("inf"), "10X", None,
                                   "1e20", 2**63 - 1])  # shared out in floating point: exact up to 2**53
def test_bad_token_counts_raise(value):
    with pytest.raises(ValueError):
        parse_token_count(value)
