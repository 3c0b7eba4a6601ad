"""MinHash-LSH dedup measured against exact Jaccard on generated near-duplicates, and the exact-dedup key.

Bars held (FineWeb-2's 14 bands × 8 rows, word 5-grams, confirmation at estimated Jaccard 0.7):
  recall ≥ 0.9 over pairs with exact Jaccard ≥ 0.8 (one of the two is removed),
  no merge at all for pairs with exact Jaccard < 0.5, and none between unrelated documents.
"""

from __future__ import annotations

import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from corpus import transforms
from corpus.dedup import (MinHashConfig, band_keys, estimated_jaccard, exact_hash, jaccard, minhash_signature,
                          normalize_text, shingle_hashes)

LANGUAGE = "eng_Latn"


def _vocabulary(rng: random.Random, size: int = 20000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def _variant(words: list[str], edits: int, rng: random.Random, vocabulary: list[str]) -> list[str]:
    words = list(words)
    for position in rng.sample(range(len(words)), edits):
        words[position] = rng.choice(vocabulary)
    return words


@pytest.fixture(scope="module")
def near_duplicate_pairs():
    """(base document, variant document, exact Jaccard of their 5-gram sets), with Jaccard spread over 0.2–1."""
    rng = random.Random(7)
    vocabulary = _vocabulary(rng)
    pairs = []
    for index in range(160):
        base = [rng.choice(vocabulary) for _ in range(300)]
        edits = [1, 2, 3, 4, 5, 6, 8, 10, 14, 18, 24, 30, 40, 55][index % 14]
        variant = _variant(base, edits, rng, vocabulary)
        a, b = " ".join(base), " ".join(variant)
        similarity = jaccard(set(shingle_hashes(a, LANGUAGE, 5)), set(shingle_hashes(b, LANGUAGE, 5)))
        pairs.append(({"id": f"doc{index:04d}a", "text": a}, {"id": f"doc{index:04d}b", "text": b}, similarity))
    return pairs


def test_generated_pairs_cover_both_sides_of_the_bars(near_duplicate_pairs):
    similarities = [j for _, _, j in near_duplicate_pairs]
    assert sum(j >= 0.8 for j in similarities) >= 40
    assert sum(j < 0.5 for j in similarities) >= 30


def test_estimated_jaccard_tracks_exact_jaccard(near_duplicate_pairs):
    errors = [abs(estimated_jaccard(minhash_signature(a["text"], LANGUAGE), minhash_signature(b["text"], LANGUAGE)) - j)
              for a, b, j in near_duplicate_pairs]
    assert np.mean(errors) < 0.05  # the standard error of 112 minima is ≤ 0.047


def test_minhash_dedup_recall_and_precision_against_exact_jaccard(near_duplicate_pairs):
    documents = []
    for a, b, _ in near_duplicate_pairs:
        documents += [dict(a, language=LANGUAGE, words=300), dict(b, language=LANGUAGE, words=300)]

    def check(survivors):
        kept = {d["id"] for d in survivors}
        high = [(a, b) for a, b, j in near_duplicate_pairs if j >= 0.8]
        low = [(a, b) for a, b, j in near_duplicate_pairs if j < 0.5]
        recall = sum(not (a["id"] in kept and b["id"] in kept) for a, b in high) / len(high)
        assert recall >= 0.9, f"recall {recall:.3f} for Jaccard ≥ 0.8"
        merged_low = [(a["id"], b["id"]) for a, b in low if not (a["id"] in kept and b["id"] in kept)]
        assert not merged_low, f"merged below Jaccard 0.5: {merged_low}"
        # The smaller id of every pair survives: no unrelated base document is ever merged.
        assert all(a["id"] in kept for a, _, _ in near_duplicate_pairs)
        merged = {d["id"]: d["cluster_size"] for d in survivors}
        assert all(merged[a["id"]] == (1 if b["id"] in kept else 2) for a, b, _ in near_duplicate_pairs)

    with BeamTestPipeline() as pipeline:
        survivors = (pipeline | beam.Create(documents) | transforms.MinHashDedup(MinHashConfig())).documents
        assert_that(survivors, check)


def test_minhash_dedup_keeps_documents_that_only_share_an_id(near_duplicate_pairs):
    # Two JSONL shards both numbered from "0": shard one holds A and a near copy of A (ids 0, 1), shard two an
    # unrelated text under id 1. Only the near copy goes, in either input order.
    (a, near_a, _), (unrelated, _, _) = [pair for pair in near_duplicate_pairs if pair[2] >= 0.8][:2]
    documents = [dict(a, id="0"), dict(near_a, id="1"), dict(unrelated, id="1")]
    documents = [dict(d, language=LANGUAGE, words=300) for d in documents]

    def check(survivors):
        assert sorted((d["id"], d["text"][:40], d["cluster_size"]) for d in survivors) == sorted(
            [("0", a["text"][:40], 2), ("1", unrelated["text"][:40], 1)])

    for ordered in (documents, documents[::-1]):
        with BeamTestPipeline() as pipeline:
            survivors = (pipeline | beam.Create(ordered) | transforms.MinHashDedup(MinHashConfig())).documents
            assert_that(survivors, check)


def test_two_confirmed_near_duplicates_never_both_survive_a_bucket():
    # B and C are confirmed similar and share bands; A (the smallest id) shares each of those bands but is similar to
    # neither. Compared with the bucket's smallest member only, B and C both survived. Trial 1743 of this seeded
    # recipe is such a triple (premise checked below); the earlier trials only advance the generator.
    rng = random.Random(11)
    vocabulary = _vocabulary(rng)
    for _ in range(1744):
        base = [rng.choice(vocabulary) for _ in range(300)]
        b = _variant(base, 6, rng, vocabulary)
        c, a = _variant(b, 7, rng, vocabulary), _variant(b, 9, rng, vocabulary)
    texts = {"doc-a": " ".join(a), "doc-b": " ".join(b), "doc-c": " ".join(c)}
    signatures = {key: minhash_signature(text, LANGUAGE) for key, text in texts.items()}
    keys = {key: band_keys(signature) for key, signature in signatures.items()}
    shared = [band for band in range(14) if keys["doc-b"][band] == keys["doc-c"][band]]
    assert shared and all(keys["doc-a"][band] == keys["doc-b"][band] for band in shared)
    assert estimated_jaccard(signatures["doc-b"], signatures["doc-c"]) >= 0.7
    assert max(estimated_jaccard(signatures["doc-a"], signatures[key]) for key in ("doc-b", "doc-c")) < 0.7
    documents = [{"id": key, "text": text, "language": LANGUAGE, "words": 300} for key, text in texts.items()]

    def check(survivors):
        assert sorted((d["id"], d["cluster_size"]) for d in survivors) == [("doc-a", 1), ("doc-b", 2)]

    with BeamTestPipeline() as pipeline:
        survivors = (pipeline | beam.Create(documents) | transforms.MinHashDedup(MinHashConfig())).documents
        assert_that(survivors, check)


def test_a_bucket_compares_with_its_first_kept_members_only():
    # Signatures by hand: a, b, c share nothing beyond the bucket's band; d is c's near-copy. Every kept member is
    # compared with, so d goes; capped at two compared members (a, b), d is compared with those only and stays.
    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 2**63, 112, dtype=np.uint64) for _ in range(3))
    d = c.copy()
    d[:10] += np.uint64(1)
    members = [((key, 0), signature.tobytes(), 1) for key, signature in zip("abcd", (a, b, c, d))]
    bucket = (("eng_Latn", 0, 7), members[::-1])  # any order: members are taken by key

    def duplicates(dofn):
        return [out.value[0][1] for out in dofn.process(bucket) if isinstance(out, beam.pvalue.TaggedOutput)]

    assert duplicates(transforms._BucketDuplicates(0.7)) == [("d", 0)]
    capped = transforms._BucketDuplicates(0.7)
    capped.MAX_COMPARED = 2
    assert duplicates(capped) == []


def test_exact_copies_with_one_id_keep_the_same_url_in_any_order():
    # The same id and text from two shards (ids numbered from 0 in each): which url survives must not depend on the
    # order the copies arrive in, i.e. on the number of workers.
    copies = [{"id": "0", "text": "the same text", "url": url, "language": LANGUAGE, "words": 3}
              for url in ("http://b.example/", "http://a.example/")]

    def check(survivors):
        assert [(d["url"], d["cluster_size"]) for d in survivors] == [("http://a.example/", 2)]

    for ordered in (copies, copies[::-1]):
        with BeamTestPipeline() as pipeline:
            assert_that((pipeline | beam.Create(ordered) | transforms.ExactDedup()).documents, check)


def test_exact_dedup_keeps_smallest_id_and_counts_copies():
    documents = [{"id": "b", "text": "Hello,  World! The same text.", "language": LANGUAGE, "words": 5},
                 {"id": "a", "text": "hello world the same text", "language": LANGUAGE, "words": 5},
                 {"id": "c", "text": "hello world the same text", "language": "fra_Latn", "words": 5},
                 {"id": "d", "text": "something else entirely", "language": LANGUAGE, "words": 3}]

    def check(survivors):
        assert sorted((d["id"], d["cluster_size"]) for d in survivors) == [("a", 2), ("c", 1), ("d", 1)]

    with BeamTestPipeline() as pipeline:
        result = pipeline | beam.Create(documents) | transforms.ExactDedup()
        assert_that(result.documents, check)


def test_normalisation_and_signature_are_deterministic():
    assert normalize_text("Hello,  WORLD!\n2024 — ok") == "hello world 0 ok"
    assert exact_hash("Hello, World") == exact_hash("hello world!") != exact_hash("hello there")
    text = "one two three four five six seven eight nine ten"
    first = minhash_signature(text, LANGUAGE)
    assert first.dtype == np.uint64 and first.shape == (112,)
    assert np.array_equal(first, minhash_signature(text, LANGUAGE))
    assert not np.array_equal(first, minhash_signature(text, LANGUAGE, MinHashConfig(seed=2)))
    assert len(band_keys(first)) == 14 and len(set(band_keys(first))) == 14


def test_unspaced_scripts_get_word_ngrams():
    thai = "ภาษาไทยเป็นภาษาที่สวยงามและมีประวัติศาสตร์ยาวนาน"
    assert len(shingle_hashes(thai, "tha_Thai", 5)) > 1  # ICU words, not one giant "word"


def test_estimated_jaccard_of_a_stack_is_each_pairs_estimate(near_duplicate_pairs):
    signatures = [minhash_signature(doc["text"], LANGUAGE) for pair in near_duplicate_pairs[:4] for doc in pair[:2]]
    stack = np.stack(signatures[1:])
    assert estimated_jaccard(stack, signatures[0]).tolist() == [estimated_jaccard(s, signatures[0])
                                                                for s in signatures[1:]]
