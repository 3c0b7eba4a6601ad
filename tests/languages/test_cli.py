"""The `mmbert languages` command-line contract, run as a user would."""

import json
import subprocess
import sys

import pytest


def mmbert(*args):
    return subprocess.run([sys.executable, "-m", "mmbert", *args], capture_output=True, text=True)


def test_help_explains_itself_with_examples():
    for args in ([], ["languages"], ["languages", "list"], ["languages", "sample"]):
        result = mmbert(*args, "--help")
        assert result.returncode == 0 and "example" in result.stdout, args


def test_list_phases_as_json():
    decay = json.loads(mmbert("languages", "list", "--phase", "decay", "--format", "json").stdout)
    assert len(decay) >= 1800
    assert {"code", "iso639_3", "script", "name"} <= set(decay[0])
    pretrain = json.loads(mmbert("languages", "list", "--phase", "pretrain", "--format", "json").stdout)
    assert len(pretrain) == 74 and "code" in {row["code"] for row in pretrain}


def test_sample_pretrain_on_fineweb2_counts(tmp_path):
    counts = tmp_path / "counts.csv"
    assert mmbert("languages", "counts", "--output", str(counts)).returncode == 0
    plot = tmp_path / "mix.png"
    result = mmbert("languages", "sample", "--counts", str(counts), "--phase", "pretrain", "--budget", "1e9",
                    "--max-epochs", "100", "--format", "json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    mix = json.loads(result.stdout)
    assert sum(entry["tokens"] for entry in mix.values()) == 10**9
    assert sum(entry["probability"] for entry in mix.values()) == pytest.approx(1.0)
    assert mix["rus_Cyrl"]["probability"] > mix["afr_Latn"]["probability"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_ranks_top_n_phases_by_the_counts_given(tmp_path):
    # As `languages mix` and the training loader do: English has no words in FineWeb-2's table (FineWeb-2 has no
    # English), but tops these counts.
    counts = tmp_path / "counts.csv"
    counts.write_text("language,tokens\neng_Latn,1000000000\nfra_Latn,5000\nswh_Latn,10\n")
    schedule = tmp_path / "top2.yaml"
    schedule.write_text("phases:\n  - {name: two, temperature: 0.7, top: 2}\n")
    result = mmbert("languages", "sample", "--counts", str(counts), "--schedule", str(schedule), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["two"]) == {"eng_Latn", "fra_Latn"}


@pytest.mark.parametrize("content, message", [
    ("language,tokens\nfra,10\nxyz,3\n", "xyz"),
    ("lang,n\nfra,10\n", "header"),
    ("language,tokens\nfra,-1\n", ">= 0"),
])
def test_sample_bad_counts_exit_2(tmp_path, content, message):
    counts = tmp_path / "counts.csv"
    counts.write_text(content)
    result = mmbert("languages", "sample", "--counts", str(counts), "--phase", "pretrain")
    assert result.returncode == 2 and message in result.stderr


def test_sample_unknown_codes_can_be_ignored_and_missing_file_fails(tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text("language,tokens\nfra,10\nxyz,3\n")
    assert mmbert("languages", "sample", "--counts", str(counts), "--phase", "pretrain", "--ignore-unknown").returncode == 0
    result = mmbert("languages", "sample", "--counts", str(tmp_path / "none.csv"))
    assert result.returncode == 2 and "not found" in result.stderr


def test_normalize_command():
    result = mmbert("languages", "normalize", "__label__zh", "sr-Latn", "ara")
    assert result.stdout.split() == ["__label__zh", "cmn_Hani", "sr-Latn", "srp_Latn", "ara", "arb_Arab"]
    assert mmbert("languages", "normalize", "xyz").returncode == 2


@pytest.mark.parametrize("flag, value, message", [
    ("--budget", "nan", "expected a number of tokens"), ("--budget", "inf", "expected a number of tokens"),
    ("--budget", "0", "at least 1"),
    ("--max-epochs", "inf", "argument --max-epochs: must be > 0"), ("--max-epochs", "-1", "must be > 0"),
])
def test_sample_non_finite_numbers_exit_2(tmp_path, flag, value, message):
    counts = tmp_path / "counts.csv"
    counts.write_text("language,tokens\nfra,10\n")
    result = mmbert("languages", "sample", "--counts", str(counts), "--phase", "pretrain", "--budget", "100",
                    flag, value)
    assert result.returncode == 2 and message in result.stderr


def test_sample_takes_budgets_in_tokens_and_names_data_no_phase_samples(tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text("language,tokens\nfra_Latn,600\nsrp_Latn,300\nnds_Latn,100\n")
    result = mmbert("languages", "sample", "--counts", str(counts), "--phase", "pretrain", "--budget", "1.5K",
                    "--format", "json")
    assert result.returncode == 0, result.stderr
    tokens = {label: entry.get("tokens") for label, entry in json.loads(result.stdout).items()}
    assert tokens["fra_Latn"] == 1500  # the only pretrain language with data takes the whole 1.5K
    assert "2 languages" in result.stderr and "400 tokens" in result.stderr and "srp_Latn" in result.stderr


def test_sample_names_languages_without_data_and_says_what_the_caps_leave(tmp_path):
    counts = tmp_path / "counts.csv"
    counts.write_text("language,tokens\nfra_Latn,100\ndeu_Latn,300\n")
    schedule = tmp_path / "phases.yaml"
    schedule.write_text("phases:\n  - {name: p, temperature: 0.5, languages: [fra_Latn, deu_Latn, ita_Latn]}\n"
                        "  - {name: empty, temperature: 0.5, languages: [spa_Latn]}\n")
    result = mmbert("languages", "sample", "--counts", str(counts), "--schedule", str(schedule), "--phase", "p",
                    "--budget", "1000", "--max-epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "1 of 3 languages have no data" in result.stderr and "ita_Latn" in result.stderr
    assert "leave 200 of 1,000 tokens unfilled" in result.stderr  # 2 x (100 + 300) = 800 at most
    assert result.stdout.splitlines()[-1].split()[::3] == ["total", "800"]
    # a phase none of whose languages has data samples nothing, and says so (`mix` and `train` refuse it; here it
    # is a report, which `mmbert run` draws for mmBERT's phases whatever the corpus holds)
    result = mmbert("languages", "sample", "--counts", str(counts), "--schedule", str(schedule), "--phase", "empty",
                    "--budget", "1000")
    assert result.returncode == 0 and "warning: phase empty: none of its 1 languages has data" in result.stderr
