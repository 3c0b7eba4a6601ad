"""The metric functions on hand-worked examples."""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.metrics import (accuracy, mean_pool, pseudo_perplexity, retrieval_accuracy,
                                token_log_likelihoods)


def test_identical_embeddings_retrieve_perfectly():
    embeddings = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    assert retrieval_accuracy(embeddings, embeddings.clone()) == (1.0, 1.0)


def test_retrieval_by_hand():
    # Cosines, source → target: row 0 → (1.0, 0, 0.98), row 1 → (0, 1, 0.20), row 2 → (0.71, 0.71, 0.83): all right.
    # Target → source: target 2 = (1, 0.2) is nearer source 0 (0.98) than its own source 2 (0.83): 2 of 3.
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.2]])
    forward, backward = retrieval_accuracy(source, target)
    assert forward == 1.0
    assert backward == pytest.approx(2 / 3)


def test_a_repeated_sentence_is_found_through_either_copy():
    # A set holding each pair twice (two files of one pair, or a repeated sentence): identical texts embed
    # identically, argmax picks the first copy, and by row number alone a perfect encoder scored 0.5.
    embeddings = torch.randn(10, 16, generator=torch.Generator().manual_seed(2))
    doubled = torch.cat([embeddings, embeddings])
    texts = [f"sentence {i}" for i in range(10)] * 2
    assert retrieval_accuracy(doubled, doubled.clone()) == (0.5, 0.5)
    assert retrieval_accuracy(doubled, doubled.clone(), texts, [t.upper() for t in texts]) == (1.0, 1.0)


def test_random_embeddings_retrieve_at_chance():
    generator = torch.Generator().manual_seed(1)
    n = 400
    forward, backward = retrieval_accuracy(torch.randn(n, 64, generator=generator),
                                           torch.randn(n, 64, generator=generator))
    assert forward < 5 / n and backward < 5 / n  # chance is 1/n; 5/n is far in the tail


def test_retrieval_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        retrieval_accuracy(torch.zeros(3, 4), torch.zeros(2, 4))


def test_uniform_predictions_have_pseudo_perplexity_of_the_vocabulary_size():
    vocab = 1000
    log_likelihoods, correct = token_log_likelihoods(torch.zeros(7, vocab), torch.tensor([5, 6, 7, 8, 9, 10, 11]))
    assert torch.allclose(log_likelihoods, torch.full((7,), -math.log(vocab)))
    assert pseudo_perplexity(log_likelihoods) == pytest.approx(vocab, rel=1e-6)  # float32 log-softmax
    assert not correct.any()  # ties go to id 0, never a target here


def test_pseudo_perplexity_past_a_doubles_range_is_infinite_not_an_error():
    assert pseudo_perplexity(torch.tensor([-800.0, -900.0])) == math.inf
    assert pseudo_perplexity(torch.tensor([-700.0])) == pytest.approx(math.exp(700))


def test_pseudo_perplexity_and_accuracy_by_hand():
    # Two positions: p(true) = 1/2 and 1/8 → PPPL = exp(-(ln 1/2 + ln 1/8) / 2) = sqrt(16) = 4.
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.125, 0.75, 0.125]]))
    log_likelihoods, correct = token_log_likelihoods(logits, torch.tensor([0, 2]))
    assert pseudo_perplexity(log_likelihoods) == pytest.approx(4.0)
    assert correct.tolist() == [True, False]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 0])) == 0.5
    with pytest.raises(ValueError):
        accuracy(torch.tensor([]), torch.tensor([]))


def test_phases_group_languages_as_training_ranked_them(tmp_path):
    # `top: N` ranks by the shards' token counts, as the training loader and `languages mix` do; without counts, by
    # FineWeb-2's words (where neither Burmese nor Lao is among the top 2).
    from evaluation.report import phase_of_languages, shard_token_counts

    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("phases:\n  - {name: first, temperature: 0.7, top: 2}\n"
                        "  - {name: all, temperature: 0.3, top: 100000}\n")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "token_counts.csv").write_text("language,tokens\nmya_Mymr,900\nlao_Laoo,800\n"
                                                          "rus_Cyrl,10\n")
    counts = shard_token_counts(tmp_path / "shards")
    phase_of, names = phase_of_languages(str(schedule), counts)
    assert names == ["first", "all"]
    assert (phase_of["mya_Mymr"], phase_of["lao_Laoo"], phase_of["rus_Cyrl"]) == ("first", "first", "all")
    assert phase_of_languages(str(schedule))[0]["mya_Mymr"] == "all"
    assert shard_token_counts(tmp_path / "nowhere") is None


def test_reports_average_perplexities_geometrically_and_accuracies_arithmetically(tmp_path):
    from evaluation.report import write_comparison, write_report
    from evaluation.results import Result

    def run(model, ppl_scale):
        return [Result(model, "mlm", language, metric, value * (ppl_scale if metric == "pseudo_perplexity" else 1), 50)
                for language, ppl, acc in (("fra_Latn", 10.0, 0.5), ("deu_Latn", 1000.0, 0.1))
                for metric, value in (("pseudo_perplexity", ppl), ("accuracy", acc))]

    write_report(run("a", 1), tmp_path, "a", {}, [])
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "- geometric mean pseudo_perplexity over 2 languages: 100\n" in report  # not 505
    assert "- mean accuracy over 2 languages: 0.3\n" in report
    write_comparison([run("a", 1), run("b", 2)], tmp_path)
    assert "| mlm | pseudo_perplexity | 2 | 100 | 200 |" in (tmp_path / "compare.md").read_text(encoding="utf-8")


def test_the_report_s_n_column_is_the_first_metric_s(tmp_path):
    """Fertility's n is words for tokens_per_word and tokens for bytes_per_token: the table shows the first's."""
    from evaluation.report import write_report
    from evaluation.results import Result

    rows = [Result("m", "fertility", "fra_Latn", "tokens_per_word", 1.5, 200),
            Result("m", "fertility", "fra_Latn", "bytes_per_token", 3.0, 300)]
    write_report(rows, tmp_path, "m", {}, [])
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "| language | tokens_per_word | bytes_per_token | n (tokens_per_word) |" in report
    assert "| fra_Latn | 1.5 | 3 | 200 |" in report


def test_compare_lists_settings_and_n_that_differ(tmp_path):
    from evaluation.report import differing_settings, write_comparison
    from evaluation.results import Result

    def run(model, fra_n):
        return [Result(model, "mlm", "fra_Latn", "accuracy", 0.5, fra_n), Result(model, "mlm", "deu_Latn", "accuracy",
                                                                              0.4, 50)]

    settings = [{"model": "a", "model path": "/a", "seed": 0, "max length": 512, "retrieval layer": "last"},
                {"model": "b", "model path": "/b", "seed": 0, "max length": 128},
                None]  # a results directory without results.json
    assert differing_settings(settings) == {"max length": ["512", "128", "?"], "retrieval layer": ["last", "–", "?"]}
    assert differing_settings([settings[0], {**settings[0], "model": "c", "model path": "/c"}]) == {}
    write_comparison([run("a", 50), run("b", 100), run("c", 50)], tmp_path, settings)
    text = (tmp_path / "compare.md").read_text(encoding="utf-8")
    assert "## Settings that differ" in text and "| max length | 512 | 128 | ? |" in text
    assert "| retrieval layer | last | – | ? |" in text and "model path" not in text
    assert "No settings recorded (no results.json) for c" in text
    assert "## Scores over a different n" in text and "| mlm | fra_Latn | accuracy | 50 | 100 | 50 |" in text
    assert "deu_Latn | accuracy | 50" not in text  # the same n everywhere: not flagged
    write_comparison([run("a", 50), run("b", 50)], tmp_path, settings[:1] * 2)
    text = (tmp_path / "compare.md").read_text(encoding="utf-8")
    assert "Settings that differ" not in text and "different n" not in text
