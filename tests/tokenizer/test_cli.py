"""Every `mmbert tokenizer` command explains itself with an example, and the group stays quick to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmbert.cli import main


@pytest.mark.parametrize("command", ["fetch-gemma2", "pack", "train", "fertility"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"mmbert tokenizer {command}" in out


def test_group_without_command_prints_its_help(capsys):
    assert main(["tokenizer"]) == 2  # as a bare `mmbert`: nothing was done
    assert "fetch-gemma2" in capsys.readouterr().out


def test_cli_module_imports_no_heavy_library():
    code = "import sys, tokenizer.cli; print(sorted({'apache_beam', 'torch', 'transformers', 'tokenizers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_says_when_the_sample_gives_fewer_tokens_than_asked(udhr_corpus_dir, tmp_path, capsys):
    assert main(["tokenizer", "train", "--corpus", str(udhr_corpus_dir), "--languages", "eng_Latn",
                 "--max-mb", "0.005", "--vocab-size", "20000", "--output", str(tmp_path / "tok")]) == 0
    captured = capsys.readouterr()
    assert "20000 tokens were asked for" in captured.err and "-token tokenizer" in captured.out
