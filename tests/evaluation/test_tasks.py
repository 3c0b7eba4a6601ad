"""The task functions on tiny real models: exact masked-token logits, retrieval and classification inputs."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from evaluation.classification import evaluate_classification, read_classification_data
from evaluation.models import open_model
from evaluation.retrieval import DEFAULT_DATA, evaluate_retrieval, read_bitext
from mmbert.errors import UsageError


@pytest.fixture(scope="module")
def articles() -> dict[str, list[str]]:
    """Label → preamble + articles 1–30, from the shipped UDHR bitext (English from the French file)."""
    bitext = read_bitext(DEFAULT_DATA)
    found = {language: [source for source, _ in pairs] for (language, _), pairs in bitext.items()}
    found["eng_Latn"] = [target for _, target in bitext[("fra_Latn", "eng_Latn")]]
    return found


@pytest.fixture(params=["tiny_modernbert", "tiny_xlmr"])
def model_dir(request):
    return request.getfixturevalue(request.param)


def test_masked_token_logits_equal_the_full_forward(model_dir):
    with open_model(model_dir) as model:
        sequences = [model.wrap(ids) for ids in model.token_ids(["Tous les êtres humains naissent libres.",
                                                                 "人人生而自由"])]
        input_ids, attention_mask = model.pad(sequences)
        positions = torch.tensor([3, 2])
        with torch.no_grad():
            full = model.mlm(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
            asked = model.masked_token_logits(input_ids, attention_mask, positions)
    assert asked.shape == (2, 256_000)
    torch.testing.assert_close(asked, full[torch.arange(2), positions], rtol=1e-4, atol=1e-5)


def test_a_bitext_of_identical_sentences_is_retrieved_perfectly(tmp_path, tiny_xlmr, articles):
    french = articles["fra_Latn"][1:]
    (tmp_path / "same.tsv").write_text("".join(f"fr\tfra\t{t}\t{t}\n" for t in french), encoding="utf-8")
    bitext = read_bitext(tmp_path)
    assert list(bitext) == [("fra_Latn", "fra_Latn")]
    with open_model(tiny_xlmr) as model:
        results = evaluate_retrieval(model, bitext, None)
    # the headline `accuracy` is against English only; against another language it carries that language's name
    assert {(r.metric, r.value) for r in results} == {("accuracy_to_fra_Latn", 1.0), ("accuracy_from_fra_Latn", 1.0),
                                                     ("accuracy_fra_Latn", 1.0), ("truncated_inputs_fra_Latn", 0.0)}
    # a second file of the same pair (other label spellings) pools into one set of repeated sentences: still 1.0
    (tmp_path / "again.tsv").write_text("".join(f"fr-FR\tfr\t{t}\t{t}\n" for t in french), encoding="utf-8")
    with open_model(tiny_xlmr) as model:
        results = evaluate_retrieval(model, read_bitext(tmp_path), None)
    assert {(r.metric, r.value, r.n) for r in results if r.metric == "accuracy_fra_Latn"} == {
        ("accuracy_fra_Latn", 1.0, 2 * len(french))}


def test_classification_from_a_datasets_directory_with_text_pairs(tmp_path, tiny_xlmr, articles):
    """A pair task (does the second text continue the first?) from real UDHR articles, saved as a DatasetDict."""
    import datasets

    def rows(language, sections):
        texts = articles[language][sections]
        halves = [(t[: len(t) // 2], t[len(t) // 2:]) for t in texts]
        matched = [{"text": a, "text_pair": b, "label": "continues"} for a, b in halves]
        shuffled = [{"text": a, "text_pair": halves[(i + 1) % len(halves)][1], "label": "other"}
                    for i, (a, _) in enumerate(halves)]
        return [{**row, "language": language} for row in matched + shuffled]

    dataset = datasets.DatasetDict({
        "train": datasets.Dataset.from_list(rows("eng_Latn", slice(1, 21))),
        "test": datasets.Dataset.from_list(rows("eng_Latn", slice(21, 31)) + rows("deu_Latn", slice(21, 31))),
    })
    dataset.save_to_disk(str(tmp_path / "pairs"))
    examples = read_classification_data(tmp_path / "pairs")
    assert examples[0].text_pair and {e.split for e in examples} == {"train", "test"}
    with open_model(tiny_xlmr) as model:
        results = evaluate_classification(model, examples, ["eng_Latn", "deu_Latn", "fra_Latn"], seed=0)
    by_key = {(r.language, r.metric): r for r in results}
    assert by_key[("deu_Latn", "accuracy")].n == 20 and 0 <= by_key[("deu_Latn", "accuracy")].value <= 1
    assert by_key[("fra_Latn", "accuracy")].status == "skipped: no test examples in this language"
    assert ("eng_Latn", "zero_shot_accuracy") not in by_key  # one training language: nothing to transfer from


def test_classification_csv_needs_a_split(tmp_path):
    (tmp_path / "data.csv").write_text("text,label,language\nBonjour,a,fra\n", encoding="utf-8")
    with pytest.raises(UsageError, match="no `split` column"):
        read_classification_data(tmp_path / "data.csv")
    (tmp_path / "data.csv").write_text("text,label,language,split\nBonjour,a,fra,train\n,b,fra,test\n",
                                       encoding="utf-8")
    with pytest.raises(UsageError, match="test row 0 lacks a text"):
        read_classification_data(tmp_path / "data.csv")


def test_bfloat16_scoring_stays_close_to_float32(tiny_modernbert, articles):
    texts = articles["fra_Latn"][1:5]
    with open_model(tiny_modernbert) as model:
        exact = model.embed(texts)
    with open_model(tiny_modernbert, precision="bfloat16") as model:
        assert next(model.encoder.parameters()).dtype == torch.bfloat16
        rounded = model.embed(texts)
    assert rounded.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(exact, rounded).min() > 0.99


def test_a_run_directory_resolves_to_its_latest_checkpoint(tmp_path, tiny_checkpoint):
    from evaluation.models import resolve_model_path

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / tiny_checkpoint.name).symlink_to(tiny_checkpoint)
    (run / "checkpoints" / "latest").write_text(tiny_checkpoint.name + "\n", encoding="utf-8")
    assert resolve_model_path(run) == (run / "checkpoints" / tiny_checkpoint.name, "checkpoint")
    latest = run / "checkpoints" / "latest"  # the file `mmbert run` and `mmbert export` take
    assert resolve_model_path(latest) == (run / "checkpoints" / tiny_checkpoint.name, "checkpoint")
    (run / "checkpoints" / "latest").unlink()  # no pointer (or a stale one): the newest complete checkpoint
    assert resolve_model_path(run) == (run / "checkpoints" / tiny_checkpoint.name, "checkpoint")
    (tiny_checkpoint.parent / "broken").mkdir()
    (tiny_checkpoint.parent / "broken" / "checkpoint.json").write_text("{}", encoding="utf-8")
    with pytest.raises(UsageError, match="checkpoint without model.safetensors"):
        resolve_model_path(tiny_checkpoint.parent / "broken")


def test_fine_tuning_the_encoder_changes_a_copy_and_scores_every_language(tiny_xlmr, articles):
    from evaluation.classification import Example
    from evaluation.udhr import TEST_ARTICLES, TOPIC_OF_ARTICLE

    examples = [Example(text, None, TOPIC_OF_ARTICLE[n], language, "test" if n in TEST_ARTICLES else "train")
                for language in ("eng_Latn", "fra_Latn") for n, text in enumerate(articles[language])]
    with open_model(tiny_xlmr, max_length=64) as model:
        before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
        results = evaluate_classification(model, examples, None, seed=0, train_encoder=True, epochs=1,
                                          learning_rate=1e-3)
        after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model under test is left as it was
    assert {(r.language, r.metric) for r in results if r.ok} == {
        (language, metric) for language in ("eng_Latn", "fra_Latn")
        for metric in ("accuracy", "zero_shot_accuracy", "majority_baseline")}
    # the baseline always answers the most frequent training topic
    train_topics = Counter(TOPIC_OF_ARTICLE[n] for n in range(len(articles["eng_Latn"])) if n not in TEST_ARTICLES)
    top = min(topic for topic, count in train_topics.items() if count == max(train_topics.values()))
    expected = sum(TOPIC_OF_ARTICLE[n] == top for n in TEST_ARTICLES) / len(TEST_ARTICLES)
    assert [r.value for r in results if r.metric == "majority_baseline"] == [pytest.approx(expected)] * 2
    assert all(r.n == len(TEST_ARTICLES) for r in results)


def test_a_tokenizer_spec_overrides_the_directory_s_own(tiny_modernbert, gemma2_tokenizer_json):
    from tokenizer.special_tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID

    with open_model(tiny_modernbert, tokenizer=str(gemma2_tokenizer_json)) as model:
        assert (model.cls_id, model.sep_id, model.pad_id, model.tokenizer.mask_token_id) == (CLS_ID, SEP_ID, PAD_ID,
                                                                                              MASK_ID)
        assert model.wrap(model.token_ids(["Hello world"])[0]) == [CLS_ID, 4521, 2134, SEP_ID]


def test_a_long_first_text_leaves_room_for_the_second(tiny_xlmr, articles):
    """Two premises alike, hypotheses different: cut longest-first, the inputs stay different and whole pairs."""
    from evaluation.classification import Example, encode_examples

    premise = " ".join(articles["eng_Latn"][:3])  # hundreds of tokens
    hypotheses = ["Everyone is born free.", "Nobody shall be held in slavery."]
    examples = [Example(premise, hypothesis, "yes", "eng_Latn", "test") for hypothesis in hypotheses]
    with open_model(tiny_xlmr, max_length=32) as model:
        first, second = encode_examples(model, examples)
        hypothesis_ids = model.token_ids(hypotheses)
        for sequence, ids in zip((first, second), hypothesis_ids):
            assert len(sequence) == 32 and sequence[0] == model.cls_id and sequence[-1] == model.sep_id
            assert sequence.count(model.sep_id) == 2
            assert sequence[-1 - len(ids):-1] == ids  # the short hypothesis is whole; the premise was cut
        assert first != second
        assert model.wrap([7] * 5, [8] * 4) == [model.cls_id, *[7] * 5, model.sep_id, *[8] * 4, model.sep_id]


def test_retrieval_counts_the_inputs_cut_at_max_length(tiny_xlmr, gemma2_tokenizer_json):
    from tokenizers import Tokenizer

    bitext = {key: pairs for key, pairs in read_bitext(DEFAULT_DATA).items() if key == ("fra_Latn", "eng_Latn")}
    gemma = Tokenizer.from_file(str(gemma2_tokenizer_json))
    texts = [text for pair in bitext[("fra_Latn", "eng_Latn")] for text in pair]
    longer = sum(len(gemma.encode(text, add_special_tokens=False).ids) > 62 for text in texts)
    assert 0 < longer < len(texts)  # French and English articles on both sides of 62 tokens
    with open_model(tiny_xlmr, max_length=64) as model:
        [row] = [r for r in evaluate_retrieval(model, bitext, None) if r.metric == "truncated_inputs"]
    assert (row.value, row.n) == (longer / len(texts), len(texts))
