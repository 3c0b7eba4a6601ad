"""`mmbert eval` end to end on tiny real models and the real UDHR data, `compare`, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from evaluation.results import COLUMNS
from mmbert.cli import main

LANGUAGES = "eng_Latn,fra_Latn,rus_Cyrl,cmn_Hani,arb_Arab,zul_Latn"  # zul_Latn: in no data set here


def read_rows(directory: Path) -> list[dict]:
    with (directory / "results.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def value(rows, task, language, metric) -> float:
    [row] = [r for r in rows if (r["task"], r["language"], r["metric"]) == (task, language, metric)]
    assert row["status"] == "ok", row
    return float(row["value"])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_checkpoint, tiny_xlmr, udhr_shards):
    """Both tiny models scored on every task; the two result directories."""
    root = tmp_path_factory.mktemp("eval")
    outputs = []
    for name, model in (("checkpoint", tiny_checkpoint), ("xlmr", tiny_xlmr)):
        output = root / name
        naming = ["--name", "xlmr-tiny"] if name == "xlmr" else []  # the checkpoint keeps its directory's name
        assert main(["eval", "--model", str(model), "--shards", str(udhr_shards), "--languages", LANGUAGES,
                     "--mlm-positions", "30", "--max-length", "128", "--output", str(output), *naming]) == 0
        outputs.append(output)
    return outputs


@pytest.mark.slow  # shares the two end-to-end runs (about 30 s of CPU)
def test_every_task_is_scored_per_language(evaluated):
    rows = read_rows(evaluated[0])
    assert {r["model"] for r in rows} == {"step-00000010"}
    assert {r["task"] for r in rows} == {"mlm", "retrieval", "classification", "fertility"}
    for language in ("fra_Latn", "rus_Cyrl", "cmn_Hani", "arb_Arab"):
        assert 0 <= value(rows, "mlm", language, "accuracy") <= 1
        assert value(rows, "mlm", language, "pseudo_perplexity") > 1
        assert 0 <= value(rows, "retrieval", language, "accuracy_to_eng_Latn") <= 1
        assert 0 <= value(rows, "classification", language, "accuracy") <= 1
        assert 0 <= value(rows, "classification", language, "zero_shot_accuracy") <= 1
        assert value(rows, "fertility", language, "tokens_per_word") > 0
    assert value(rows, "mlm", "eng_Latn", "accuracy") >= 0
    n = {(r["task"], r["language"], r["metric"]): int(r["n"]) for r in rows}
    assert n[("retrieval", "fra_Latn", "accuracy")] == 31  # preamble + 30 articles
    assert n[("mlm", "fra_Latn", "accuracy")] == 30  # --mlm-positions


@pytest.mark.slow  # shares the two end-to-end runs (about 30 s of CPU)
def test_languages_without_data_are_skipped_rows_never_zeros(evaluated):
    rows = read_rows(evaluated[0])
    zulu = [r for r in rows if r["language"] == "zul_Latn"]
    assert {r["task"] for r in zulu} == {"mlm", "retrieval", "classification", "fertility"}
    assert all(r["status"].startswith("skipped: ") and r["value"] == "" for r in zulu)
    [pivot] = [r for r in rows if (r["task"], r["language"]) == ("retrieval", "eng_Latn")]
    assert pivot["status"] == "skipped: the pivot language of every pair"


@pytest.mark.slow  # shares the two end-to-end runs (about 30 s of CPU)
def test_reports_and_plots(evaluated):
    output = evaluated[0]
    report = (output / "report.md").read_text(encoding="utf-8")
    assert "## mlm" in report and "## retrieval" in report and "| fra_Latn |" in report
    assert "zul_Latn: no held-out shards" in report
    for stem in ("retrieval-accuracy", "mlm-pseudo_perplexity", "classification-zero_shot_accuracy",
                 "fertility-tokens_per_word"):
        for kind in ("by-language", "by-phase", "vs-data"):
            assert (output / f"{stem}-{kind}.png").read_bytes().startswith(b"\x89PNG"), f"{stem}-{kind}"
        assert f"![{stem}-by-phase.png]" in report
    document = json.loads((output / "results.json").read_text(encoding="utf-8"))
    assert len(document["results"]) == len(read_rows(output))


@pytest.mark.slow  # shares the two end-to-end runs (about 30 s of CPU)
def test_the_two_models_differ_and_compare_sets_them_side_by_side(evaluated, tmp_path):
    first, second = (read_rows(output) for output in evaluated)
    assert {r["model"] for r in second} == {"xlmr-tiny"}
    # Same tokenizer, so fertility agrees exactly; the random models do not.
    assert value(first, "fertility", "fra_Latn", "tokens_per_word") == value(second, "fertility", "fra_Latn",
                                                                            "tokens_per_word")
    assert value(first, "mlm", "fra_Latn", "pseudo_perplexity") != value(second, "mlm", "fra_Latn",
                                                                        "pseudo_perplexity")
    output = tmp_path / "compare"
    assert main(["eval", "compare", *map(str, evaluated), "--output", str(output)]) == 0
    with (output / "compare.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["task", "language", "metric", "step-00000010", "xlmr-tiny"]
    [row] = [r for r in table if (r["task"], r["language"], r["metric"]) == ("mlm", "rus_Cyrl", "accuracy")]
    assert float(row["xlmr-tiny"]) == value(second, "mlm", "rus_Cyrl", "accuracy")
    assert "| retrieval | accuracy | 4 |" in (output / "compare.md").read_text(encoding="utf-8")
    assert (output / "compare-retrieval-accuracy.png").read_bytes().startswith(b"\x89PNG")


def test_a_uniform_model_has_the_vocabulary_size_as_pseudo_perplexity(uniform_modernbert, udhr_shards):
    from evaluation.mlm import evaluate_mlm
    from evaluation.models import open_model

    with open_model(uniform_modernbert) as model:
        results = evaluate_mlm(model, udhr_shards, ["fra_Latn", "cmn_Hani"], positions=20, seed=0)
    by_metric = {(r.language, r.metric): r.value for r in results}
    for language in ("fra_Latn", "cmn_Hani"):
        assert by_metric[(language, "pseudo_perplexity")] == pytest.approx(256_000, rel=1e-4)
        assert by_metric[(language, "accuracy")] == 0.0


def test_heldout_pieces_keep_document_boundaries_and_masks_avoid_special_tokens(udhr_shards):
    from evaluation.mlm import read_heldout_pieces, sample_positions
    from tokenizer.special_tokens import CLS_ID, SEP_ID, SPECIAL_TOKENS

    pieces = read_heldout_pieces(udhr_shards, "fra_Latn")
    manifest = json.loads((udhr_shards / "manifest.json").read_text(encoding="utf-8"))
    assert sum(len(p) for p in pieces) == manifest["languages"]["fra_Latn"]["heldout_tokens"]
    assert all(CLS_ID not in p[1:].tolist() and SEP_ID not in p[:-1].tolist() for p in pieces)  # one document each
    special = set(SPECIAL_TOKENS.values())
    chosen = sample_positions(pieces, special, 25, seed=0, language="fra_Latn")
    assert len(chosen) == 25 and all(int(pieces[p][i]) not in special for p, i in chosen)
    assert chosen == sample_positions(pieces, special, 25, seed=0, language="fra_Latn")
    assert chosen != sample_positions(pieces, special, 25, seed=1, language="fra_Latn")


# Bad input: exit status 2, a message naming the problem, no output directory.

def run_failing(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_missing_model_directory(tmp_path, capsys):
    error = run_failing(["eval", "--model", str(tmp_path / "nope"), "--output", str(tmp_path / "out")], capsys)
    assert "model directory not found" in error and "nope" in error
    assert not (tmp_path / "out").exists()


def test_a_max_length_without_room_for_text(tmp_path, tiny_xlmr, capsys):
    error = run_failing(["eval", "--model", str(tiny_xlmr), "--tasks", "retrieval", "--max-length", "2",
                         "--output", str(tmp_path / "out")], capsys)
    assert "--max-length must be at least 3" in error and not (tmp_path / "out").exists()


def test_directory_that_is_no_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    error = run_failing(["eval", "--model", str(tmp_path / "empty"), "--output", str(tmp_path / "out")], capsys)
    assert "neither a project checkpoint" in error


def test_bitext_without_four_columns(tmp_path, tiny_xlmr, capsys):
    (tmp_path / "bitext").mkdir()
    (tmp_path / "bitext" / "fra-eng.tsv").write_text("fra\teng\tBonjour\tHello\nfra\teng\tSalut\n", encoding="utf-8")
    error = run_failing(["eval", "--model", str(tiny_xlmr), "--tasks", "retrieval", "--retrieval-data",
                         str(tmp_path / "bitext"), "--output", str(tmp_path / "out")], capsys)
    assert "fra-eng.tsv:2: expected 4 tab-separated columns" in error
    assert not (tmp_path / "out").exists()


def test_a_hidden_layer_the_model_lacks(tmp_path, tiny_xlmr, capsys):
    error = run_failing(["eval", "--model", str(tiny_xlmr), "--tasks", "retrieval", "--retrieval-layer", "40",
                         "--output", str(tmp_path / "out")], capsys)
    assert "layer 40 does not exist" in error and "0 (embeddings) to" in error
    assert not (tmp_path / "out").exists()


def test_classification_file_without_a_label_column(tmp_path, tiny_xlmr, capsys):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "Bonjour", "language": "fra", "split": "train"}\n'
                    '{"text": "Hello", "language": "eng", "split": "test"}\n', encoding="utf-8")
    error = run_failing(["eval", "--model", str(tiny_xlmr), "--tasks", "classification", "--classification-data",
                         str(path), "--output", str(tmp_path / "out")], capsys)
    assert "missing column(s) label" in error


@pytest.mark.parametrize("arguments, message", [
    (["--tasks", "mlm"], "--tasks mlm needs --shards"),
    (["--tasks", "mlm,parsing"], "unknown task(s) parsing"),
    (["--languages", "xx_Nope"], "--languages"),
    (["--tasks", "mlm", "--shards", "{tmp}"], "not a finished packed-shards directory: _SUCCESS is missing"),
    (["--tasks", "retrieval", "--retrieval-data", "{tmp}/absent"], "retrieval data directory not found"),
    (["--schedule", "{tmp}/absent.yaml"], "schedule file not found"),
])
def test_unusable_arguments(arguments, message, tmp_path, tiny_xlmr, capsys):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    error = run_failing(["eval", "--model", str(tiny_xlmr), *arguments, "--output", str(tmp_path / "out")], capsys)
    assert message in error
    assert not (tmp_path / "out").exists()


def test_existing_output_is_kept(tmp_path, tiny_xlmr, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.md").write_text("an earlier run's\n", encoding="utf-8")
    error = run_failing(["eval", "--model", str(tiny_xlmr), "--output", str(tmp_path / "out")], capsys)
    assert "already exists" in error


def test_compare_bad_input(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.csv").write_text("model,task,value\nm,mlm,1\n", encoding="utf-8")
    assert "two or more" in run_failing(["eval", "compare", str(tmp_path / "a"), "--output", str(tmp_path / "o")],
                                        capsys)
    assert "no results.csv in" in run_failing(
        ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "o")], capsys)
    assert "missing column(s) language, metric, n, status" in run_failing(
        ["eval", "compare", str(tmp_path / "b"), str(tmp_path / "b"), "--output", str(tmp_path / "o")], capsys)
    assert not (tmp_path / "o").exists()


def test_compare_tells_apart_runs_with_the_same_model_and_directory_names(tmp_path, capsys):
    # Two `mmbert run` outputs: both evaluate their export `model` into `eval`.
    for run, value in (("a", 0.25), ("b", 0.75)):
        (tmp_path / run / "eval").mkdir(parents=True)
        (tmp_path / run / "eval" / "results.csv").write_text(
            f"model,task,language,metric,value,n,status\nmodel,mlm,fra_Latn,accuracy,{value},4,ok\n", encoding="utf-8")
    first, second = str(tmp_path / "a" / "eval"), str(tmp_path / "b" / "eval")
    assert main(["eval", "compare", first, second, "--output", str(tmp_path / "o")]) == 0
    with (tmp_path / "o" / "compare.csv").open(encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row[f"model ({first})"], row[f"model ({second})"]) == ("0.25", "0.75")
    error = run_failing(["eval", "compare", first, first, "--output", str(tmp_path / "o2")], capsys)
    assert "the same result directory is given twice" in error and not (tmp_path / "o2").exists()


def test_help_explains_both_commands(capsys):
    for argv in (["eval", "--help"], ["eval", "compare", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        assert "example" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value", [("--learning-rate", "0"), ("--batch-size", "0"), ("--epochs", "-1"),
                                         ("--mlm-positions", "0")])
def test_non_positive_settings_are_refused_by_the_parser(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", str(tmp_path), "--output", str(tmp_path / "out"), flag, value])
    assert exit_info.value.code == 2 and f"{flag}: must be" in capsys.readouterr().err


def test_a_negative_seed_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # numpy's generator takes no negative seed: refused up front
        main(["eval", "--model", str(tmp_path), "--output", str(tmp_path / "out"), "--seed", "-1"])
    assert exit_info.value.code == 2 and "--seed: must be >= 0" in capsys.readouterr().err


def test_a_languages_option_naming_none_is_refused_not_read_as_every_language(tmp_path, tiny_xlmr, capsys):
    error = run_failing(["eval", "--model", str(tiny_xlmr), "--output", str(tmp_path / "out"), "--languages", ","],
                        capsys)
    assert "--languages names no language" in error and not (tmp_path / "out").exists()


def test_an_output_that_holds_what_eval_reads_is_refused_even_with_overwrite(tmp_path, tiny_xlmr, capsys):
    import shutil

    model = tmp_path / "models" / "xlmr"
    shutil.copytree(tiny_xlmr, model)
    for output in (model, tmp_path / "models"):
        error = run_failing(["eval", "--model", str(model), "--output", str(output), "--overwrite"], capsys)
        assert "must not be or hold the --model it reads" in error
    assert (model / "config.json").is_file()
    for run, value in (("a", 0.25), ("b", 0.75)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "results.csv").write_text(
            f"model,task,language,metric,value,n,status\nm,mlm,fra_Latn,accuracy,{value},4,ok\n", encoding="utf-8")
    error = run_failing(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--output",
                         str(tmp_path / "a"), "--overwrite"], capsys)
    assert "must not be or hold the results directory it reads" in error and (tmp_path / "a" / "results.csv").exists()


def test_eval_reads_held_out_shards_under_todays_labels(udhr_shards, tmp_path):
    """A directory packed under an older spelling (`fra` for `fra_Latn`) is scored under the registry label, as
    training and mixtures read it."""
    import shutil

    from evaluation.mlm import heldout_languages, read_heldout_pieces

    renamed = tmp_path / "shards"
    shutil.copytree(udhr_shards, renamed)
    (renamed / "fra_Latn").rename(renamed / "fra")  # as pack would have named and listed it
    for name in ("token_counts.csv", "manifest.json"):
        (renamed / name).write_text((renamed / name).read_text(encoding="utf-8").replace("fra_Latn", "fra"),
                                    encoding="utf-8")
    assert "fra_Latn" in heldout_languages(renamed) and "fra" not in heldout_languages(renamed)
    original = read_heldout_pieces(udhr_shards, "fra_Latn")
    assert [p.tolist() for p in read_heldout_pieces(renamed, "fra_Latn")] == [p.tolist() for p in original]
    shutil.rmtree(renamed / "fra" / "train")  # held-out rows alone are enough to score
    assert "fra_Latn" in heldout_languages(renamed)


def test_settings_that_change_scores_are_recorded_and_compare_warns_when_they_differ(tmp_path, tiny_xlmr, capsys):
    common = ["eval", "--model", str(tiny_xlmr), "--languages", "fra_Latn", "--max-length", "64"]
    assert main([*common, "--tasks", "retrieval,classification", "--retrieval-layer", "1", "--finetune-encoder",
                 "--epochs", "1", "--learning-rate", "1e-4", "--name", "tuned", "--output", str(tmp_path / "a")]) == 0
    assert main([*common, "--tasks", "retrieval", "--retrieval-layer", "2", "--name", "frozen",
                 "--output", str(tmp_path / "b")]) == 0
    first, second = (json.loads((tmp_path / d / "results.json").read_text(encoding="utf-8"))["settings"]
                     for d in ("a", "b"))
    assert (first["retrieval layer"], first["max length"], first["fine-tuning epochs"],
            first["fine-tuning learning rate"]) == (1, 64, 1, 1e-4)
    assert second["retrieval layer"] == "last" and "fine-tuning epochs" not in second  # 2 of 2 layers: the last
    report = (tmp_path / "a" / "report.md").read_text(encoding="utf-8")
    assert "- retrieval layer: 1\n" in report and "- max length: 64\n" in report
    assert "- fine-tuning epochs: 1\n" in report and "- fine-tuning learning rate: 0.0001\n" in report
    capsys.readouterr()

    assert main(["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "c")]) == 0
    error = capsys.readouterr().err
    assert error.startswith("warning: the result sets were made with different settings (") and error.count("\n") == 1
    assert "retrieval layer" in error and "fine-tuning epochs" in error
    text = (tmp_path / "c" / "compare.md").read_text(encoding="utf-8")
    assert "## Settings that differ" in text and "| retrieval layer | 1 | last |" in text
    assert "| fine-tuning epochs | 1 | – |" in text and "| max length |" not in text
