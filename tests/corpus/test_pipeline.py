"""The Beam pipeline end to end on the shipped WARC files: languages, stats, dedup, determinism, bad input, rebuilds.

Four small builds (each ~10 s on the DirectRunner) share module-scoped fixtures.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from corpus import transforms
from corpus.pipeline import BuildConfig, run_build
from mmbert.cli import main
from mmbert.errors import UsageError
from mmbert.paths import DATA_DIR

WARC = DATA_DIR / "warc"
MAIN_INPUTS = [str(WARC / "udhr.warc.gz"), str(WARC / "warcfile.warc.gz"), str(WARC / "clipped.warc.gz")]


def _duplicates_jsonl(path, udhr_texts) -> str:
    """The English UDHR (also a page in udhr.warc.gz) as two exact copies (modulo case/spacing) and one near copy."""
    english = "\n".join(udhr_texts["eng_Latn"])
    words = english.split(" ")
    near = " ".join("freedom" if i % 300 == 7 else w for i, w in enumerate(words))
    rows = [{"id": "dup-0", "text": english}, {"id": "dup-1", "text": english.replace(" ", "  ").replace(".", " !")},
            {"id": "dup-2", "text": english}, {"id": "dup-3", "text": near}]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return str(path)


def _tables(root) -> dict:
    return {os.path.relpath(f, root): pq.read_table(f).to_pylist()
            for f in sorted(glob.glob(f"{root}/**/*.parquet", recursive=True))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, udhr_texts):
    return MAIN_INPUTS + [_duplicates_jsonl(tmp_path_factory.mktemp("in") / "dups.jsonl", udhr_texts)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, inputs):
    """The main build, through the command line."""
    output = str(tmp_path_factory.mktemp("build") / "corpus")
    assert main(["corpus", "build", "--input", *inputs, "--output", output, "--write-removed"]) == 0
    with open(f"{output}/stats.json", encoding="utf-8") as handle:
        return output, json.load(handle)


def test_transforms_on_real_warc():
    def check(labels):
        assert len(set(labels)) >= 60, sorted(set(labels))
        assert {"eng_Latn", "cmn_Hani", "tha_Thai", "arb_Arab", "rus_Cyrl"} <= set(labels)

    with BeamTestPipeline() as pipeline:
        records = pipeline | transforms.ReadInputs([str(WARC / "udhr.warc.gz")])
        documents = records.records | transforms.ExtractText()
        identified = documents.documents | transforms.IdentifyLanguage(min_language_score=0.3)
        assert_that(identified.documents | beam.Map(lambda d: d["language"]), check)


def test_removals_are_live_beam_counters():
    from apache_beam.metrics.metric import MetricsFilter

    pipeline = BeamTestPipeline()
    read = pipeline | transforms.ReadInputs([str(WARC / "warcfile.warc.gz"), str(WARC / "clipped.warc.gz")])
    read.records | transforms.ExtractText()
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    assert counters["read.not_response"] == 34 and counters["read.truncated_record"] == 1
    assert counters["read.records"] == 16


def test_build_produces_dozens_of_languages(built):
    output, stats = built
    labels = sorted(p for p in os.listdir(output) if not p.startswith(("_", ".")) and os.path.isdir(f"{output}/{p}"))
    assert len(labels) >= 40 and stats["totals"]["languages_out"] == len(labels)
    assert os.path.exists(f"{output}/_SUCCESS") and not glob.glob(f"{output}/_stats*")
    columns = pq.read_schema(glob.glob(f"{output}/fra_Latn/part-*.parquet")[0]).names
    for column in ("id", "text", "url", "date", "language", "language_score", "cluster_size", "words"):
        assert column in columns
    import datasets

    french = datasets.load_dataset("parquet", data_dir=f"{output}/fra_Latn", split="train")
    assert french[0]["language"] == "fra_Latn" and "Déclaration universelle" in french[0]["text"]
    with open(f"{output}/counts.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["language", "tokens"] and len(rows) == len(labels) + 1
    assert all(int(tokens) == stats["languages"][label]["bytes_out"] for label, tokens in rows[1:])


def test_stats_count_every_removal(built):
    output, stats = built
    before = stats["removed_before_language_id"]
    assert before["truncated_record"]["documents"] == 1  # clipped.warc.gz
    assert before["not_response"]["documents"] == 34  # the Common Crawl excerpt's request/metadata/warcinfo records
    chinese = stats["languages"]["cmn_Hani"]
    removed = sum(r["documents"] for step in chinese["removed"].values() for r in step.values())
    assert chinese["documents_in"] == chinese["documents_out"] + removed
    assert set(chinese["removed"]) <= {"lid", "filters", "dedup_exact", "dedup_minhash"}
    totals = stats["totals"]  # records removed before language ID are in the totals' "in" too
    assert totals["documents_in"] == totals["documents_out"] + sum(totals["removed"].values())
    assert stats["parameters"]["minhash"] == {"ngram": 5, "bands": 14, "rows": 8, "seed": 1, "threshold": 0.7}
    low = pq.read_table(glob.glob(f"{output}/_removed/lid_low_confidence/*.parquet")[0]).to_pylist()
    assert low and all(row["reason"] == "lid_low_confidence" and row["language_score"] is not None for row in low)


def test_a_reason_from_two_steps_before_language_id_adds_up():
    from corpus.stats import assemble

    rows = [(("", "read", "empty_text"), (2, 0, 0)), (("", "extract", "empty_text"), (1, 44, 0)),
            (("fra_Latn", "in", ""), (5, 500, 80)), (("fra_Latn", "out", ""), (5, 500, 80))]
    for ordered in (rows, rows[::-1]):
        stats = assemble(ordered, {})
        assert stats["removed_before_language_id"] == {"empty_text": {"documents": 3, "bytes": 44, "words": 0}}
        assert stats["totals"]["removed"] == {"empty_text": 3}


def test_duplicates_removed_with_cluster_size(built):
    output, stats = built
    english = [row for f in glob.glob(f"{output}/eng_Latn/*.parquet") for row in pq.read_table(f).to_pylist()]
    assert not [row["id"] for row in english if row["id"].startswith("dup-")]
    udhr = [row for row in english if row["url"].endswith("/udhr_eng.html")]
    # Itself + the 3 exact copies (folded into dup-0, which it absorbed) + the near copy when it absorbed that one
    # directly rather than through dup-0 (cluster sizes count direct absorptions, see MinHashDedup).
    assert len(udhr) == 1 and udhr[0]["cluster_size"] in (4, 5)
    removed = stats["languages"]["eng_Latn"]["removed"]
    assert removed["dedup_exact"]["exact_duplicate"]["documents"] == 2
    assert removed["dedup_minhash"]["near_duplicate"]["documents"] == 2


def test_two_workers_give_the_same_output(built, inputs, tmp_path):
    output, stats = built
    other = str(tmp_path / "corpus")
    stats2 = run_build(inputs, other, BuildConfig(write_removed=True, num_workers=2))
    with open(f"{other}/stats.json", encoding="utf-8") as handle:
        assert json.load(handle) == stats2
    assert _tables(other) == _tables(output)
    assert stats2 == stats  # parameters too: the worker count is not recorded, since nothing depends on it


def test_awkward_inputs_never_crash(tmp_path):
    data = (WARC / "udhr.warc.gz").read_bytes()
    (tmp_path / "cut.warc.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.warc.gz").write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(5000))
    (tmp_path / "empty.warc").write_bytes(b"")
    inputs = [str(WARC / name) for name in ("clipped.warc.gz", "clueweb-quirk.warc.gz", "block-sized-records.warc.gz")]
    inputs += [str(tmp_path / name) for name in ("cut.warc.gz", "noise.warc.gz", "empty.warc")]
    stats = run_build(inputs, str(tmp_path / "out"), BuildConfig(max_page_bytes=30_000))
    before = stats["removed_before_language_id"]
    assert before["truncated_record"]["documents"] >= 1 and before["not_response"]["documents"] >= 4
    assert before["too_large"]["documents"] >= 1
    assert stats["totals"]["documents_in"] > 20 and os.path.exists(tmp_path / "out" / "_SUCCESS")


def test_languages_rebuild_replaces_only_those(built, inputs, tmp_path):
    output, stats = built
    copy = str(tmp_path / "corpus")
    shutil.copytree(output, copy)
    before = _tables(copy)
    rebuilt = run_build(inputs, copy, BuildConfig(languages=("cmn_Hani",), min_language_score=0.0, write_removed=True))
    after = _tables(copy)
    unchanged = {k for k in before if not k.startswith("cmn_Hani") and "/cmn_Hani-" not in k}
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert rebuilt["languages"]["cmn_Hani"]["documents_out"] >= stats["languages"]["cmn_Hani"]["documents_out"]
    assert "lid_low_confidence" not in rebuilt["languages"]["cmn_Hani"]["removed"].get("lid", {})
    assert {k: v for k, v in rebuilt["languages"].items() if k != "cmn_Hani"} == \
        {k: v for k, v in stats["languages"].items() if k != "cmn_Hani"}
    assert rebuilt["parameters"]["last_rebuild"]["languages"] == ["cmn_Hani"]


def test_cli_usage_errors_write_nothing(built, tmp_path, capsys):
    output, _ = built
    target = tmp_path / "new"
    assert main(["corpus", "build", "--input", str(tmp_path / "none*.warc.gz"), "--output", str(target)]) == 2
    assert "matches no file" in capsys.readouterr().err and not target.exists()
    assert main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", output]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", str(target), "--languages", "xx_Nope"]) == 2
    assert main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", str(target), "--lid-model", "/no/model"]) == 2
    (tmp_path / "model.bin").write_bytes(b"not a fastText model")
    assert main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", str(target), "--lid-model",
                 str(tmp_path / "model.bin")]) == 2
    assert "is not a fastText model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check: the MinHash seed cannot be negative
        main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", str(target), "--seed", "-1"])
    assert exit_info.value.code == 2 and "--seed: must be >= 0" in capsys.readouterr().err
    with pytest.raises(UsageError, match="seed -1"):  # and the API's
        run_build([MAIN_INPUTS[0]], str(target), BuildConfig(minhash=transforms.dedup.MinHashConfig(seed=-1)))
    incomplete = tmp_path / "half"
    (incomplete / "fra_Latn").mkdir(parents=True)
    assert main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", str(incomplete), "--languages", "fra"]) == 2
    assert main(["corpus", "stats", str(incomplete)]) == 2
    assert not target.exists()
    capsys.readouterr()
    # A remote output that cannot even be listed (here: no filesystem for the scheme) stops before any work.
    assert main(["corpus", "build", "--input", MAIN_INPUTS[0], "--output", "nosuchscheme://bucket/out"]) == 2
    assert "cannot list output nosuchscheme://bucket/out" in capsys.readouterr().err


def test_stats_and_thresholds_commands(built, tmp_path, capsys):
    output, _ = built
    plot = tmp_path / "stats.png"
    assert main(["corpus", "stats", output, "--plot", str(plot), "--top", "10"]) == 0
    printed = capsys.readouterr().out
    biggest = max(built[1]["languages"].items(), key=lambda kv: kv[1]["bytes_out"])[0]
    assert biggest in printed and "languages" in printed and "removed (documents)" in printed
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = tmp_path / "thresholds.csv"
    assert main(["corpus", "thresholds", output, "--output", str(table), "--min-documents", "3"]) == 0
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(0.3 <= float(row["language_score"]) <= 0.9 for row in rows)
    assert "cmn_Hani" in {row["language"] for row in rows}
    foreign = tmp_path / "foreign"  # finished, but by another tool: no stats.json
    foreign.mkdir()
    (foreign / "_SUCCESS").touch()
    capsys.readouterr()
    assert main(["corpus", "stats", str(foreign)]) == 2 and "has no stats.json" in capsys.readouterr().err
    (foreign / "stats.json").write_text("{cut sho")
    for command in ("stats", "thresholds"):
        assert main(["corpus", command, str(foreign)]) == 2
        assert "stats.json is not readable JSON" in capsys.readouterr().err
    damaged = tmp_path / "damaged"  # a corpus part cut short: named, not an Arrow traceback
    shutil.copytree(output, damaged)
    part = sorted(damaged.glob("*/part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    assert main(["corpus", "thresholds", str(damaged)]) == 2
    assert "not a readable corpus part" in capsys.readouterr().err


def test_thresholds_are_keyed_as_the_pipeline_looks_them_up():
    from corpus.pipeline import registry_thresholds

    assert registry_thresholds({"en": 0.9, "fra": 0.5, "deu_Latn": 0.4}) == {"eng_Latn": 0.9, "fra_Latn": 0.5,
                                                                           "deu_Latn": 0.4}
    with pytest.raises(UsageError, match="eng_Latn two different scores"):
        registry_thresholds({"en": 0.9, "eng_Latn": 0.5})


def test_inputs_inside_the_output_are_refused_not_deleted(tmp_path, monkeypatch, capsys):
    out = tmp_path / "work"
    out.mkdir()
    shutil.copy(WARC / "clipped.warc.gz", out / "in.warc.gz")
    assert main(["corpus", "build", "--input", str(out / "in.warc.gz"), "--output", str(out), "--overwrite"]) == 2
    assert "is inside --output" in capsys.readouterr().err and (out / "in.warc.gz").exists()
    monkeypatch.chdir(out)
    assert main(["corpus", "build", "--input", "in.warc.gz", "--output", ".", "--overwrite"]) == 2
    assert (out / "in.warc.gz").exists()


def test_conflicting_or_unreadable_threshold_tables_are_usage_errors(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("language,language_score\neng,0.5\neng_Latn,0.6\n")
    args = ["corpus", "build", "--input", str(WARC / "clipped.warc.gz"), "--output", str(tmp_path / "o")]
    assert main([*args, "--language-thresholds", str(table)]) == 2
    assert "t.csv:3: a second, different score for eng_Latn" in capsys.readouterr().err
    table.write_bytes(b"\xff\xfelanguage,language_score\n")
    assert main([*args, "--language-thresholds", str(table)]) == 2
    assert "is not UTF-8" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_sigterm_removes_the_half_written_output(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    build = subprocess.Popen([sys.executable, "-m", "mmbert", "corpus", "build", "--input", *MAIN_INPUTS,
                              "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*.tmp")) and build.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the staging directory exists: the build is under way
    build.send_signal(signal.SIGTERM)
    _, err = build.communicate(timeout=120)
    assert build.returncode == 143 and err.rstrip().endswith("terminated"), err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_current_directory_can_be_the_output(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    out.mkdir()
    monkeypatch.chdir(out)
    assert main(["corpus", "build", "--input", str(WARC / "clipped.warc.gz"), "--output", "."]) == 0
    assert (out / "_SUCCESS").exists() and (out / "stats.json").exists()


def test_pipeline_options_default_to_direct_runner_and_let_user_flags_win():
    from mmbert.beam import pipeline_options

    local = pipeline_options([], 2).get_all_options()
    assert (local["runner"], local["direct_num_workers"], local["direct_running_mode"]) == \
        ("DirectRunner", 2, "multi_processing")
    assert pipeline_options([], 1).get_all_options()["direct_running_mode"] == "in_memory"
    remote = pipeline_options(["--runner", "FlinkRunner", "--direct_num_workers=3"], 2,
                              running_mode="multi_threading").get_all_options()
    assert (remote["runner"], remote["direct_num_workers"], remote["direct_running_mode"]) == \
        ("FlinkRunner", 3, "multi_threading")
