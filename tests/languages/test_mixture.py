"""Phase mixtures: the planner against the sampler, the seeded orders, and the Beam job on real packed UDHR shards."""

from __future__ import annotations

import collections
import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from languages.mixture import (
    LanguageBudget, budget_table, file_of_keys, order_positions, plan_phase, read_packed_shards, rows_for_budget,
    sort_keys, stream_seed,
)
from languages.sampling import token_budgets
from languages.schedule import Phase
from mmbert.cli import main
from mmbert.errors import UsageError

COUNTS = {"eng_Latn": 400_000, "fra_Latn": 60_000, "deu_Latn": 9_000, "swh_Latn": 700}
SEQ_LEN = 128


def rows_of(counts, seq_len=SEQ_LEN):
    return {language: math.ceil(tokens / seq_len) for language, tokens in counts.items()}


# --------------------------------------------------------------------------------------------------------------------
# Seeded orders


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000, 4097])
def test_order_positions_are_a_permutation(n):
    positions = order_positions(np.arange(n), n, stream_seed(0, "pretrain", "eng_Latn", 0, "order"))
    assert sorted(positions.tolist()) == list(range(n))


def test_order_positions_depend_on_the_seed_and_epoch_and_not_on_the_slice():
    n = 500
    order = lambda seed, epoch: order_positions(np.arange(n), n, stream_seed(seed, "p", "eng_Latn", epoch, "order"))
    assert not np.array_equal(order(0, 0), order(1, 0))
    assert not np.array_equal(order(0, 0), order(0, 1))
    # A worker that reads rows 200..299 computes the same positions as one that reads all rows.
    stream = stream_seed(0, "p", "eng_Latn", 0, "order")
    assert np.array_equal(order_positions(np.arange(200, 300), n, stream), order(0, 0)[200:300])


def test_key_ranges_partition_keys_in_order():
    keys = np.sort(sort_keys(np.arange(10_000), stream_seed(3, "p", "fra_Latn", 0, "key")))
    files = file_of_keys(keys, 7).astype(np.int64)
    assert files.min() == 0 and files.max() == 6
    assert np.all(np.diff(files) >= 0)  # file i holds only keys below file i+1's: concatenation is the global order
    assert np.bincount(files).min() > 10_000 / 7 * 0.8  # uniform keys: files of similar size


# --------------------------------------------------------------------------------------------------------------------
# The planner


def test_rows_for_budget_rounds_to_the_nearest_row_within_the_cap():
    assert rows_for_budget(1000, 128, 100, None) == 8  # 7.8 rows
    assert rows_for_budget(960, 128, 100, None) == 8  # 7.5 rows rounds up
    assert rows_for_budget(950, 128, 100, None) == 7
    assert rows_for_budget(10_000, 128, 20, 2.0) == 40  # 78 rows wanted, 2 epochs × 20 rows allowed
    assert rows_for_budget(10_000, 128, 100, 0.29) == 29  # not 28: 0.29 × 100 is 28.999… in floating point


def test_plan_follows_the_sampler_budgets_to_within_one_row():
    phase = Phase("pretrain", tuple(sorted(COUNTS)), 0.5)
    plan = plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0, budget=200_000, max_epochs=None)
    expected = token_budgets(COUNTS, 0.5, 200_000)
    assert {b.language: b.budget_tokens for b in plan.languages} == expected
    for budget in plan.languages:
        assert abs(budget.rows * SEQ_LEN - budget.budget_tokens) <= SEQ_LEN / 2
        assert sum(budget.epoch_quotas()) == budget.rows
    assert plan.planned_tokens == 200_000 and plan.shortfall_tokens == 0
    swahili = next(b for b in plan.languages if b.language == "swh_Latn")
    assert swahili.epochs_used > 1  # low-resource: repeated, as temperature sampling intends
    assert swahili.epoch_quotas()[:-1] == [swahili.available_rows] * (len(swahili.epoch_quotas()) - 1)


def test_plan_caps_repetition_and_reports_the_shortfall():
    phase = Phase("decay", tuple(sorted(COUNTS)), 0.3, budget=300_000, max_epochs=2.5)
    plan = plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0)  # budget and cap from the phase
    assert plan.requested_tokens == 300_000 and plan.max_epochs == 2.5
    swahili = next(b for b in plan.languages if b.language == "swh_Latn")
    assert swahili.budget_tokens == math.floor(2.5 * COUNTS["swh_Latn"])
    assert swahili.rows <= math.floor(2.5 * swahili.available_rows) and swahili.shortfall_tokens > 0
    assert all(b.epochs_used <= 2.5 for b in plan.languages)
    # Caps that cannot hold the budget: the shortfall is the part no language could take.
    small = plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0, budget=2_000_000, max_epochs=1.0)
    assert small.planned_tokens == sum(COUNTS.values())
    assert small.shortfall_tokens == 2_000_000 - sum(COUNTS.values())
    assert all(b.rows <= b.available_rows for b in small.languages)


def test_plan_lists_languages_without_shards_and_the_table_shows_every_language():
    phase = Phase("pretrain", ("deu_Latn", "eng_Latn", "jpn_Jpan"), 0.7)
    plan = plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0, budget=50_000)
    assert plan.missing == ("jpn_Jpan",)
    table = budget_table(plan)
    assert "jpn_Jpan" in table.splitlines()[0]
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["eng_Latn", "deu_Latn", "total"]


@pytest.mark.parametrize("phase, budget, message", [
    (Phase("empty", (), 0.5), 1000, "has no languages"),
    (Phase("cold", ("eng_Latn",), 0.0), 1000, "temperature must be a number > 0"),
    (Phase("negative", ("eng_Latn",), -0.3), 1000, "temperature must be a number > 0"),
    (Phase("nobudget", ("eng_Latn",), 0.5), None, "has no token budget"),
    (Phase("nodata", ("jpn_Jpan", "kor_Hang"), 0.5), 1000, "none of its 2 languages have packed train rows"),
])
def test_plan_rejects_unusable_phases(phase, budget, message):
    with pytest.raises(UsageError, match=message):
        plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0, budget=budget)


def test_language_budget_epochs():
    budget = LanguageBudget("swh_Latn", 700, 6, 0.1, 3000, 2900, 23)
    assert budget.epoch_quotas() == [6, 6, 6, 5] and budget.epochs_used == pytest.approx(23 / 6)
