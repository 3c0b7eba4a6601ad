"""Phase mixtures: the planner against the sampler, the seeded orders, and the Beam job on real packed UDHR shards."""

from __future__ import annotations

import argparse
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
from mmbert.argtypes import token_count as parse_tokens
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
    assert rows_for_budget(1000, 12_800, 100, None) == 8  # 128 tokens a row: 7.8 rows
    assert rows_for_budget(960, 12_800, 100, None) == 8  # 7.5 rows rounds up
    assert rows_for_budget(950, 12_800, 100, None) == 7
    assert rows_for_budget(10_000, 2_560, 20, 2.0) == 40  # 78 rows wanted, 2 epochs × 20 rows allowed
    assert rows_for_budget(10_000, 12_800, 100, 0.29) == 29  # not 28: 0.29 × 100 is 28.999… in floating point


def test_rows_for_budget_counts_the_languages_own_rows_not_full_ones():
    # Rows of 4,096 tokens whose last one is partly padding: a language capped at one epoch takes all of its rows.
    assert rows_for_budget(1_545, 1_545, 1, 1.0) == 1  # seq_len per row would round this to no row at all
    assert rows_for_budget(4_147, 4_147, 2, 1.0) == 2  # ... and this to one
    assert rows_for_budget(2 * 4_147, 4_147, 2, 2.0) == 4


def test_a_phase_capped_at_one_epoch_takes_every_row_of_small_languages():
    counts = {"deu_Latn": 1_545, "hin_Deva": 4_147, "eng_Latn": 400_000}
    rows = rows_of(counts, 4_096)  # 1, 2 and 98 rows, each language's last row partly padding
    phase = Phase("decay", tuple(sorted(counts)), 0.3)
    plan = plan_phase(phase, counts, rows, 4_096, seed=0, budget=10**9, max_epochs=1.0)
    assert {b.language: b.rows for b in plan.languages} == rows


def test_plan_follows_the_sampler_budgets_to_within_one_row():
    phase = Phase("pretrain", tuple(sorted(COUNTS)), 0.5)
    plan = plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0, budget=200_000, max_epochs=None)
    expected = token_budgets(COUNTS, 0.5, 200_000)
    assert {b.language: b.budget_tokens for b in plan.languages} == expected
    for budget in plan.languages:
        tokens_per_row = budget.available_tokens / budget.available_rows
        assert abs(budget.rows * tokens_per_row - budget.budget_tokens) <= tokens_per_row / 2
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
    (Phase("../elsewhere", ("eng_Latn",), 0.5), 1000, "cannot name a directory"),
    (Phase("crumbs", ("eng_Latn", "fra_Latn"), 0.5), 60, "not even one row of 128 tokens"),
])
def test_plan_rejects_unusable_phases(phase, budget, message):
    with pytest.raises(UsageError, match=message):
        plan_phase(phase, COUNTS, rows_of(COUNTS), SEQ_LEN, seed=0, budget=budget)


def test_a_key_range_without_rows_still_gets_its_file(tmp_path):
    from types import SimpleNamespace

    from languages.mixture import write_empty_files

    plan = SimpleNamespace(phase="decay", num_files=4)  # all of a plan that says which files must exist
    (tmp_path / "decay" / "train").mkdir(parents=True)
    (tmp_path / "decay" / "train" / "part-00001.parquet").write_bytes(b"written by the job")
    write_empty_files([plan], str(tmp_path), seq_len=64)
    assert (tmp_path / "decay" / "train" / "part-00001.parquet").read_bytes() == b"written by the job"
    table = pq.read_table(tmp_path / "decay" / "train" / "part-00003.parquet")
    assert table.num_rows == 0 and table.column_names == ["input_ids", "document_lengths", "language"]
    assert len(list((tmp_path / "decay" / "train").iterdir())) == 4


@pytest.mark.parametrize("text, tokens", [("50M", 50_000_000), ("2.3T", 2_300_000_000_000), ("1e9", 10**9),
                                          ("600_000_000", 600_000_000), ("12k", 12_000), ("4096", 4096)])
def test_budgets_read_like_people_write_them(text, tokens):
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("text", ["", "lots", "0", "-5M", "3X"])
def test_unreadable_budgets_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_tokens(text)


def test_language_budget_epochs():
    budget = LanguageBudget("swh_Latn", 700, 6, 0.1, 3000, 2900, 23)
    assert budget.epoch_quotas() == [6, 6, 6, 5] and budget.epochs_used == pytest.approx(23 / 6)


# --------------------------------------------------------------------------------------------------------------------
# The Beam job on real packed UDHR shards

PRETRAIN = ["eng_Latn", "fra_Latn", "rus_Cyrl", "cmn_Hani", "arb_Arab", "hin_Deva"]
DECAY = PRETRAIN + ["swh_Latn", "tha_Thai", "amh_Ethi", "kat_Geor", "bod_Tibt", "sin_Sinh", "jpn_Jpan", "ell_Grek"]


def write_schedule(path, phases):
    lines = ["phases:"]
    for phase in phases:
        lines.append(f"  - name: {phase['name']}")
        lines.extend(f"    {key}: {json.dumps(value)}" for key, value in phase.items() if key != "name")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def schedule_file(tmp_path_factory, udhr_packed_shards):
    counts = read_packed_shards(udhr_packed_shards).counts
    # pretrain takes a third of its languages' data; decay asks for twice its languages' data with a cap of 2.5
    # epochs, so small languages repeat and some hit the cap.
    return write_schedule(tmp_path_factory.mktemp("schedule") / "phases.yaml", [
        {"name": "pretrain", "temperature": 0.7, "languages": PRETRAIN,
         "budget": sum(counts[label] for label in PRETRAIN) // 3},
        {"name": "decay", "temperature": 0.3, "languages": DECAY,
         "budget": 2 * sum(counts[label] for label in DECAY), "max_epochs": 2.5},
    ])


def mix(*arguments) -> int:
    return main(["languages", "mix", *map(str, arguments)])


@pytest.fixture(scope="module")
def mixtures(tmp_path_factory, udhr_packed_shards, schedule_file):
    """The same schedule and seed materialised with 1 and with 2 Beam workers."""
    root = tmp_path_factory.mktemp("mixtures")
    for workers in (1, 2):
        assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--seed", 7, "--rows-per-file", 150,
                   "--num-workers", workers, "--output", root / f"workers-{workers}") == 0
    return root


def source_rows(shards, language):
    table = pq.read_table(shards / language / "train")
    return [tuple(ids) for ids in table.column("input_ids").to_pylist()]


def test_each_language_gets_its_sampler_budget_to_within_one_row(mixtures, udhr_packed_shards, schedule_file):
    shards = read_packed_shards(udhr_packed_shards)
    phases = {phase["name"]: phase for phase in _schedule_entries(schedule_file)}
    for name, phase in phases.items():
        manifest = json.loads((mixtures / "workers-1" / name / "manifest.json").read_text())
        table = pq.read_table(mixtures / "workers-1" / name / "train")
        counts = {label: shards.counts[label] for label in phase["languages"]}
        expected = token_budgets(counts, phase["temperature"], phase["budget"], phase.get("max_epochs"))
        rows_per_language = collections.Counter(table.column("language").to_pylist())
        assert set(rows_per_language) == set(phase["languages"])
        assert manifest["rows"] == table.num_rows == sum(rows_per_language.values())
        for label, entry in manifest["languages"].items():
            assert entry["budget_tokens"] == expected[label]
            assert entry["rows_taken"] == rows_per_language[label]
            tokens_per_row = entry["available_tokens"] / entry["available_rows"]  # last rows are partly padding
            assert abs(entry["rows_taken"] * tokens_per_row - expected[label]) <= tokens_per_row / 2 + 1e-6, label
        assert all(len(ids) == shards.seq_len for ids in table.column("input_ids").to_pylist())


def test_rows_are_drawn_without_replacement_then_repeated_up_to_the_cap(mixtures, udhr_packed_shards):
    manifest = json.loads((mixtures / "workers-1" / "decay" / "manifest.json").read_text())
    table = pq.read_table(mixtures / "workers-1" / "decay" / "train")
    taken = collections.defaultdict(collections.Counter)
    for language, ids in zip(table.column("language").to_pylist(), table.column("input_ids").to_pylist()):
        taken[language][tuple(ids)] += 1
    repeated = capped = 0
    for language, uses in taken.items():
        available = source_rows(udhr_packed_shards, language)
        rows, n = manifest["languages"][language]["rows_taken"], len(available)
        assert set(uses) <= set(available)  # rows copied unchanged from the language's own shards
        # Whole epochs first: every row used ⌊rows/n⌋ or ⌊rows/n⌋ + 1 times, never above the 2.5-epoch cap.
        assert set(uses.values()) <= {rows // n, rows // n + 1} - {0}
        assert max(uses.values()) <= math.ceil(2.5) and rows <= math.floor(2.5 * n)
        if rows < n:
            assert len(uses) == rows  # no repetition before the language runs out
        repeated += rows > n
        capped += manifest["languages"][language]["shortfall_tokens"] > 0
    assert repeated and capped  # the schedule does exercise repetition and the cap


def test_same_seed_same_output_for_1_and_2_workers(mixtures):
    one, two = mixtures / "workers-1", mixtures / "workers-2"
    files = sorted(path.relative_to(one) for path in one.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(two) for path in two.rglob("*") if path.is_file())
    assert len([path for path in files if path.suffix == ".parquet"]) > 2  # several key ranges were written
    for path in files:
        assert (one / path).read_bytes() == (two / path).read_bytes(), path
    schemas = {pq.read_schema(one / path) for path in files if path.suffix == ".parquet"}
    assert len(schemas) == 1 and next(iter(schemas)).names == ["input_ids", "document_lengths", "language"]
    languages = pq.read_table(one / "pretrain" / "train").column("language").to_pylist()
    assert languages != sorted(languages) and len(set(languages[:30])) >= 4  # shuffled across languages


def test_small_row_groups_read_in_units_of_any_size_give_the_same_output(mixtures, udhr_packed_shards, schedule_file,
                                                                         tmp_path, monkeypatch):
    """Shards written with many row groups per file, read one group per Beam element or a file's groups together:
    the files are byte for byte those made from the shards as packed (one group per file here)."""
    import shutil

    import languages.mixture as mixture

    shards = tmp_path / "shards"
    shutil.copytree(udhr_packed_shards, shards)
    for path in shards.glob("*/train/part-*.parquet"):
        pq.write_table(pq.read_table(path), path, row_group_size=7)
    assert pq.ParquetFile(next(shards.glob("eng_Latn/train/part-*.parquet"))).metadata.num_row_groups > 1
    for read_tokens in (1, mixture.READ_TOKENS):
        monkeypatch.setattr(mixture, "READ_TOKENS", read_tokens)
        output = tmp_path / f"read-{read_tokens}"
        assert mix("--shards", shards, "--schedule", schedule_file, "--seed", 7, "--rows-per-file", 150,
                   "--output", output) == 0
        expected = mixtures / "workers-1"
        for path in sorted(expected.rglob("*.parquet")):
            assert (output / path.relative_to(expected)).read_bytes() == path.read_bytes(), path


def test_another_seed_gives_another_order(mixtures, udhr_packed_shards, schedule_file, tmp_path):
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--phase", "pretrain", "--seed", 8,
               "--rows-per-file", 150, "--output", tmp_path / "seed-8") == 0
    seven = pq.read_table(mixtures / "workers-1" / "pretrain" / "train")
    eight = pq.read_table(tmp_path / "seed-8" / "pretrain" / "train")
    assert seven.num_rows == eight.num_rows
    assert seven.column("input_ids").to_pylist() != eight.column("input_ids").to_pylist()
    assert not (tmp_path / "seed-8" / "decay").exists() and (tmp_path / "seed-8" / "_SUCCESS").exists()


def test_dry_run_prints_the_budget_table_and_writes_no_data(udhr_packed_shards, schedule_file, tmp_path, capsys):
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--dry-run", "--plot",
               tmp_path / "mix.png", "--output", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert "phase pretrain: τ 0.7" in printed and "phase decay: τ 0.3" in printed
    assert all(f"\n{label} " in printed for label in DECAY)
    assert (tmp_path / "mix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out").exists()


def _schedule_entries(path):
    import yaml

    return yaml.safe_load(path.read_text())["phases"]


@pytest.mark.parametrize("phase, message", [
    ({"name": "p", "temperature": 0.5, "languages": ["eng_Latn", "xx_Nope"], "budget": 1000}, "unknown languages"),
    ({"name": "p", "temperature": 0, "languages": ["eng_Latn"], "budget": 1000}, "temperature"),
    ({"name": "p", "temperature": -0.7, "languages": ["eng_Latn"], "budget": 1000}, "temperature"),
    ({"name": "p", "temperature": 0.5, "languages": [], "budget": 1000}, "no languages"),
    ({"name": "p", "temperature": 0.5, "languages": ["eng_Latn"]}, "no token budget"),
    ({"name": "p", "temperature": 0.5, "languages": ["kin_Latn"], "budget": 1000}, "none of its 1 languages"),
])
def test_bad_schedules_fail_clearly_and_write_nothing(phase, message, udhr_packed_shards, tmp_path, capsys):
    schedule = write_schedule(tmp_path / "bad.yaml", [phase])
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule, "--output", tmp_path / "out") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unusable_arguments_exit_2(udhr_packed_shards, schedule_file, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "stale.txt").write_text("old run")
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--output", tmp_path / "taken") == 2
    assert "already exists" in capsys.readouterr().err
    assert mix("--shards", tmp_path / "nowhere", "--budget", "1M", "--output", tmp_path / "out") == 2
    assert "packed shards not found" in capsys.readouterr().err
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--phase", "warmup", "--dry-run") == 2
    assert "no phase named 'warmup'" in capsys.readouterr().err
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file) == 2
    assert "--output is required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # --overwrite replaces the old directory as a whole.
    (tmp_path / "taken" / "stale.txt").write_text("old run")
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--phase", "pretrain", "--overwrite",
               "--output", tmp_path / "taken") == 0
    assert sorted(path.name for path in (tmp_path / "taken").iterdir()) == ["_SUCCESS", "pretrain"]


def test_runner_flags_reach_beam_and_an_unknown_runner_exits_2(udhr_packed_shards, schedule_file, tmp_path, capsys):
    assert mix("--shards", udhr_packed_shards, "--schedule", schedule_file, "--phase", "pretrain",
               "--runner", "NoSuchRunner", "--output", tmp_path / "out") == 2
    assert "NoSuchRunner" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_output_holding_the_shards_is_refused_even_with_overwrite(udhr_packed_shards, schedule_file, tmp_path,
                                                                   capsys):
    import shutil

    shards = shutil.copytree(udhr_packed_shards, tmp_path / "work" / "shards")
    for output in (tmp_path / "work", shards):  # --overwrite would have deleted the shards being read
        assert mix("--shards", shards, "--schedule", schedule_file, "--phase", "pretrain", "--overwrite",
                   "--output", output) == 2
        assert "must not be or hold the --shards it reads" in capsys.readouterr().err
    assert (shards / "_SUCCESS").is_file() and (shards / "manifest.json").is_file()
