"""The training loader on real packed UDHR shards: determinism, rank slices, proportions, resume, clear errors."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter

import numpy as np
import pytest

from languages.sampling import temperature_weights
from mmbert.errors import UsageError
from training.config import parse_recipe
from training.data import TrainLoader


def recipe(shards, phases=None, **top):
    phases = phases or [
        {"name": "one", "top": 6, "temperature": 0.7, "budget": 2048, "mask_rate": 0.3, "seq_len": 64},
        {"name": "two", "top": 40, "temperature": 0.3, "budget": 1024, "mask_rate": 0.15, "seq_len": 64},
    ]
    return parse_recipe({"seed": 3, "model": {"name": "tiny"}, "data": {"shards": str(shards)}, "phases": phases,
                         **top})


def batches(loader, steps, rows=8):
    return [loader.next_batch(rows) for _ in range(steps)]


def test_same_seed_same_rows_and_phases_advance_on_budget(shards_64):
    a, b = (batches(TrainLoader(recipe(shards_64)), 6) for _ in range(2))
    for x, y in zip(a, b):
        assert (x.input_ids == y.input_ids).all() and x.languages == y.languages and x.row_seeds == y.row_seeds
    # 2048 tokens = 4 steps of 8 × 64 in phase one, then 2 steps in phase two, then done.
    assert [batch.phase_index for batch in a] == [0, 0, 0, 0, 1, 1]
    other = batches(TrainLoader(recipe(shards_64, seed=4)), 4)
    assert any((x.input_ids != y.input_ids).any() for x, y in zip(a, other))


def test_rank_slices_make_up_the_single_process_batch(shards_64):
    single = batches(TrainLoader(recipe(shards_64)), 6)
    ranks = [batches(TrainLoader(recipe(shards_64), rank=r, world_size=2), 6) for r in range(2)]
    for step, whole in enumerate(single):
        joined = np.concatenate([ranks[0][step].input_ids, ranks[1][step].input_ids])
        assert (joined == whole.input_ids).all()
        assert ranks[0][step].row_seeds + ranks[1][step].row_seeds == whole.row_seeds
        assert ranks[0][step].document_lengths + ranks[1][step].document_lengths == whole.document_lengths


def test_epochs_keep_apart_one_language_in_two_shards_directories(shards_64, tmp_path):

    copy = tmp_path / "copy"
    shutil.copytree(shards_64, copy)
    phases = [{"name": "one", "languages": ["fra_Latn"], "temperature": 1.0, "budget": 512, "mask_rate": 0.3,
               "seq_len": 64},
              {"name": "two", "languages": ["fra_Latn"], "temperature": 1.0, "budget": 512, "mask_rate": 0.3,
               "seq_len": 64, "shards": str(copy)}]
    loader = TrainLoader(recipe(shards_64, phases))
    batches(loader, 1)  # 8 rows from the first directory, none from the second
    epochs = loader.epochs()
    assert sorted(epochs.values())[0] == 0 and sorted(epochs.values())[1] > 0 and len(epochs) == 2
    assert all(key.endswith(":fra_Latn") for key in epochs)
    single = TrainLoader(recipe(shards_64, phases[:1]))
    batches(single, 1)
    assert list(single.epochs()) == ["fra_Latn@64"]  # the short name where it is unambiguous


def test_rows_are_real_packed_rows(shards_64):
    batch = TrainLoader(recipe(shards_64)).next_batch(8)
    assert batch.input_ids.shape == (8, 64)
    for row, lengths in zip(batch.input_ids, batch.document_lengths):
        assert sum(lengths) == int((row != 0).sum())  # document pieces cover exactly the non-padding tokens


def test_language_proportions_follow_the_temperature_weights(shards_64):
    phases = [{"name": "p", "top": 10, "temperature": 0.5, "budget": 10**9, "mask_rate": 0.3, "seq_len": 64}]
    loader = TrainLoader(recipe(shards_64, phases))
    source = loader.sources[0]
    drawn = Counter(language for batch in batches(loader, 60, rows=64) for language in batch.languages)
    expected = temperature_weights({language: loader.shards(loader.phase).counts[language]
                                    for language in source.languages}, 0.5)
    total = sum(drawn.values())
    assert set(drawn) == set(expected)
    for language, weight in expected.items():
        # 3840 draws: a binomial standard deviation is at most 0.8 percentage points
        assert abs(drawn[language] / total - weight) < 0.03, (language, drawn[language] / total, weight)


def test_rows_are_read_without_replacement_then_recycled(shards_64):
    phases = [{"name": "p", "languages": ["eng_Latn"], "temperature": 0.7, "budget": 10**9, "mask_rate": 0.3,
               "seq_len": 64}]
    loader = TrainLoader(recipe(shards_64, phases))
    stream = loader.sources[0].streams[0]
    n = stream.table.num_rows
    first_epoch = [stream.take() for _ in range(n)]
    assert sorted(first_epoch) == list(range(n)) and first_epoch != list(range(n))
    assert stream.epoch == 1 and stream.position == 0
    second_epoch = [stream.take() for _ in range(n)]
    assert sorted(second_epoch) == list(range(n)) and second_epoch != first_epoch


def test_each_row_group_is_decoded_once_however_many_languages_are_drawn(shards_64):
    """More languages than a small cache of decoded groups would hold, drawn at mmBERT's flattest temperature: each
    language's current group stays decoded, so a group is decoded once (the least-recently-used cache of 32 groups
    this replaced made 148 decodes here for 40 groups)."""
    phases = [{"name": "all", "top": 1000, "temperature": 0.3, "budget": 10**9, "mask_rate": 0.3, "seq_len": 64}]
    loader = TrainLoader(recipe(shards_64, phases))
    drawn = {language for batch in batches(loader, 40, rows=16) for language in batch.languages}
    shards = loader.shards(loader.phase)
    assert len(drawn) > 32 and all(len(shards.table(language).groups) == 1 for language in drawn)
    assert loader.cache.decodes == len(drawn)


def test_rows_read_through_the_cache_are_the_files_rows_one_decode_per_group_and_epoch(shards_64, tmp_path):
    """A language written in row groups of 10 rows, read in its stream's shuffled order for two epochs, whole (one
    process) and in halves (each of two processes takes every other row): every row is the file's row, and each
    process decodes each group once per epoch."""
    import pyarrow.parquet as pq

    from training.data import LanguageStream, RowGroupCache, RowTable

    path = tmp_path / "part-00000.parquet"
    pq.write_table(pq.read_table(next((shards_64 / "eng_Latn" / "train").glob("part-*.parquet"))), path,
                   row_group_size=10)
    expected = pq.read_table(path).to_pydict()
    table = RowTable.scan([path], 64)
    assert len(table.groups) >= 3
    for take_every, start in ((1, 0), (2, 0), (2, 1)):
        stream, cache = LanguageStream("eng_Latn@64", table, seed=3), RowGroupCache()
        order = [stream.take() for _ in range(2 * table.num_rows)]
        for row in order[start::take_every]:
            ids, lengths = cache.row(table, row)
            assert ids.tolist() == expected["input_ids"][row] and lengths == expected["document_lengths"][row]
        assert cache.decodes == 2 * len(table.groups)


def test_large_row_groups_are_announced(shards_64, caplog, monkeypatch):
    """What the cache will hold (the largest group of each language a phase reads) is estimated up front; above the
    threshold a warning says so and how to fix it. The test shards are far below the real threshold."""
    import training.data

    with caplog.at_level(logging.WARNING, logger="training.data"):
        TrainLoader(recipe(shards_64))
        assert "decoded row groups" not in caplog.text
        monkeypatch.setattr(training.data, "HELD_ROW_GROUPS_WARNING_BYTES", 1000)
        TrainLoader(recipe(shards_64))
    assert "phase one: the loader will hold up to" in caplog.text
    assert "repack with `mmbert tokenizer pack`" in caplog.text


def test_resumed_loader_sees_the_same_rows(shards_64):
    loader = TrainLoader(recipe(shards_64))
    batches(loader, 3)
    state = loader.state_dict()
    expected = batches(loader, 3)
    resumed = TrainLoader(recipe(shards_64))
    resumed.load_state_dict(state)
    for x, y in zip(expected, batches(resumed, 3)):
        assert (x.input_ids == y.input_ids).all() and x.row_seeds == y.row_seeds and x.phase_index == y.phase_index


def test_a_resumed_loader_finds_its_positions_under_another_spelling_of_the_shards(shards_64, tmp_path,
                                                                                   monkeypatch, caplog):
    loader = TrainLoader(recipe(shards_64))
    batches(loader, 3)
    state = loader.state_dict()
    expected = batches(loader, 3)
    (tmp_path / "link").symlink_to(shards_64)  # a symlink, then a relative path: the same directory
    monkeypatch.chdir(tmp_path)
    for spelling in (tmp_path / "link", "link"):
        resumed = TrainLoader(recipe(spelling))
        resumed.load_state_dict(state)
        for x, y in zip(expected, batches(resumed, 3)):
            assert (x.input_ids == y.input_ids).all() and x.row_seeds == y.row_seeds
    assert "does not read" not in caplog.text


def test_a_resumed_loader_finds_its_positions_in_shards_moved_or_copied_elsewhere(shards_64, tmp_path, caplog):
    loader = TrainLoader(recipe(shards_64))
    batches(loader, 3)
    state = loader.state_dict()
    expected = batches(loader, 3)
    moved = tmp_path / "node-local" / "shards"  # e.g. copied to node-local disk: another path, the same manifest
    shutil.copytree(shards_64, moved)
    resumed = TrainLoader(recipe(moved))
    resumed.load_state_dict(state)
    for x, y in zip(expected, batches(resumed, 3)):
        assert (x.input_ids == y.input_ids).all() and x.row_seeds == y.row_seeds
    assert "does not read" not in caplog.text
    # other data under the old path's name is not taken for it: its streams start over, as said
    other = tmp_path / "other"
    shutil.copytree(shards_64, other)
    (other / "manifest.json").write_text((other / "manifest.json").read_text(encoding="utf-8") + " ")
    TrainLoader(recipe(other)).load_state_dict(state)
    assert "does not read" in caplog.text


def test_missing_languages_fail_by_name_or_are_skipped_when_asked(shards_64, caplog):
    phases = [{"name": "p", "languages": ["eng_Latn", "zul_Latn", "xho_Latn"], "temperature": 0.7, "budget": 1024,
               "mask_rate": 0.3, "seq_len": 64}]
    with pytest.raises(UsageError, match=r"phases\[0\] \(p\): no packed shards .* for: xho_Latn, zul_Latn"):
        TrainLoader(recipe(shards_64, phases))
    with caplog.at_level(logging.WARNING):
        loader = TrainLoader(recipe(shards_64, phases, data={"shards": str(shards_64),
                                                             "skip_missing_languages": True}))
    assert loader.sources[0].languages == ["eng_Latn"]
    assert "skipping 2 languages" in caplog.text


def test_sequence_length_and_shards_errors_are_clear(shards_64, shards_128, tmp_path):
    phases = [{"name": "long", "top": 4, "temperature": 0.7, "budget": 1024, "mask_rate": 0.3, "seq_len": 128}]
    with pytest.raises(UsageError, match=r"trains at 128 tokens per row but the shards in .* are packed at 64"):
        TrainLoader(recipe(shards_64, phases))
    loader = TrainLoader(recipe(shards_64, [{**phases[0], "shards": str(shards_128)}]))
    assert loader.next_batch(2).input_ids.shape == (2, 128)
    with pytest.raises(UsageError, match="packed shards not found"):
        TrainLoader(recipe(tmp_path / "nowhere"))
    (tmp_path / "half").mkdir()
    with pytest.raises(UsageError, match=r"_SUCCESS is missing"):
        TrainLoader(recipe(tmp_path / "half"))


def test_rows_of_another_length_in_a_shards_directory_are_named_before_training(shards_64, shards_128, tmp_path):

    from languages.mixture import read_packed_shards

    mixed = tmp_path / "mixed"
    shutil.copytree(shards_64, mixed)
    language = sorted(p.parent.parent.name for p in mixed.glob("*/train/part-*.parquet"))[0]
    for part in (shards_128 / language / "train").glob("part-*.parquet"):
        shutil.copy(part, mixed / language / "train" / f"part-9{part.name[5:]}")  # beside the 64-token parts
    phases = [{"name": "p", "languages": [language], "temperature": 0.7, "budget": 1024, "mask_rate": 0.3,
               "seq_len": 64}]
    with pytest.raises(UsageError, match=r"part-9.*rows of 64 as the shards' manifest says"):
        TrainLoader(recipe(mixed, phases)).next_batch(2)
    with pytest.raises(UsageError, match=r"part-9.*rows of 64"):  # and the mixture job, before its Beam run
        read_packed_shards(mixed)


def test_materialised_mixture_is_read_in_order(shards_64, tmp_path):
    from languages.mixture import plan_phase, read_packed_shards, run_mixture
    from languages.schedule import Phase

    shards = read_packed_shards(shards_64)
    phase = Phase("mix", ("eng_Latn", "fra_Latn", "cmn_Hani"), 0.5, budget=4096)
    plan = plan_phase(phase, shards.counts, shards.available_rows(), shards.seq_len, seed=0)
    run_mixture(shards, [phase], [plan], tmp_path / "mixtures")
    phases = [{"name": "mix", "mixture": str(tmp_path / "mixtures" / "mix"), "temperature": 0.5, "budget": 4096,
               "mask_rate": 0.3, "seq_len": 64}]
    loader = TrainLoader(recipe(shards_64, phases))
    # The shards the mixture was drawn from still name the tokenizer (recorded in checkpoints) and its vocabulary.
    packed_tokenizer = json.loads((shards_64 / "manifest.json").read_text(encoding="utf-8"))["tokenizer"]
    assert loader.tokenizer == packed_tokenizer and loader.vocab_size == packed_tokenizer["vocab_size"]
    steps = batches(loader, 8)  # 8 × 8 rows × 64 = 4096 tokens: the phase's whole budget
    assert loader.finished
    languages = Counter(language for batch in steps for language in batch.languages)
    assert set(languages) <= {"eng_Latn", "fra_Latn", "cmn_Hani"} and sum(languages.values()) == 64
    import pyarrow.parquet as pq

    first_file = sorted((tmp_path / "mixtures" / "mix" / "train").glob("part-*.parquet"))[0]
    first_rows = pq.read_table(first_file).column("input_ids").to_pylist()[:8]
    assert (steps[0].input_ids == np.array(first_rows)).all()


def test_shards_packed_under_labels_the_registry_has_since_merged_or_dropped_read_the_same_everywhere(
        shards_64, tmp_path, caplog):
    """Mixtures and the loader open shards through one reader: a directory named by an older spelling of a label
    (`deu` for `deu_Latn`) is read under today's label, an unknown one is left out with a warning, in both."""

    from languages.mixture import read_packed_shards
    from training.data import LoaderShards

    renamed = tmp_path / "renamed"
    shutil.copytree(shards_64, renamed)
    (renamed / "deu_Latn").rename(renamed / "deu")
    shutil.copytree(renamed / "fra_Latn", renamed / "xx_Nope")
    counts_file = renamed / "token_counts.csv"
    text = counts_file.read_text(encoding="utf-8").replace("\ndeu_Latn,", "\ndeu,")
    counts_file.write_text(text + "xx_Nope,640\n", encoding="utf-8")

    original_rows = read_packed_shards(shards_64).available_rows()
    with caplog.at_level(logging.WARNING):
        rows = read_packed_shards(renamed).available_rows()
        loader_shards = LoaderShards.open(renamed)
    assert rows == original_rows and rows["deu_Latn"] > 0
    assert loader_shards.table("deu_Latn").num_rows == original_rows["deu_Latn"]
    assert "xx_Nope" not in loader_shards.counts and "registry does not know: xx_Nope" in caplog.text
    phases = [{"name": "p", "languages": ["deu_Latn"], "temperature": 0.7, "budget": 1024, "mask_rate": 0.3,
               "seq_len": 64}]
    assert set(batches(TrainLoader(recipe(renamed, phases)), 2)[0].languages) == {"deu_Latn"}

    shutil.rmtree(renamed / "fra_Latn")  # counted in token_counts.csv, but its rows are gone
    for read_rows in (read_packed_shards, lambda path: LoaderShards.open(path).table("fra_Latn")):
        with pytest.raises(UsageError, match=r"counts train tokens for fra_Latn, but there are no part-\*\.parquet "
                                             r"files in fra_Latn/train/"):
            read_rows(renamed)
    assert LoaderShards.open(renamed).vocab_size  # what a mixture phase reads of its shards still opens


def test_a_shard_cut_short_is_named_by_the_mixture_job_and_the_loader(shards_64, tmp_path):

    from languages.mixture import read_packed_shards

    damaged = tmp_path / "damaged"
    shutil.copytree(shards_64, damaged)
    part = sorted((damaged / "eng_Latn" / "train").glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:200])
    with pytest.raises(UsageError, match=r"eng_Latn/train/part-.*not a readable Parquet file"):
        read_packed_shards(damaged)
    phases = [{"name": "p", "languages": ["eng_Latn"], "temperature": 0.7, "budget": 1024, "mask_rate": 0.3,
               "seq_len": 64}]
    with pytest.raises(UsageError, match=r"eng_Latn/train/part-.*not a readable Parquet file"):
        TrainLoader(recipe(damaged, phases))
