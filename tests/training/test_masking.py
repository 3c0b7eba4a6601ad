"""MLM masking invariants on real packed rows of UDHR text."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tokenizer.special_tokens import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS
from training.masking import IGNORE_INDEX, mask_batch

VOCAB = 256_000


@pytest.fixture(scope="module")
def rows(shards_64) -> np.ndarray:
    """Real packed rows of several languages, with [CLS]/[SEP] boundaries and a padded last row."""
    tables = [pq.read_table(next((shards_64 / language / "train").glob("part-*.parquet")))
              for language in ("eng_Latn", "cmn_Hani", "arb_Arab", "hin_Deva")]
    ids = [np.array(row) for table in tables for row in table.column("input_ids").to_pylist()]
    rows = np.stack(ids)
    assert (rows == PAD_ID).any() and (rows == CLS_ID).any()  # the invariants below are tested on real boundaries
    return rows


def seeds(n: int, salt: int = 0) -> list[tuple[int, ...]]:
    return [(7, salt, i) for i in range(n)]


def test_special_tokens_and_padding_are_never_predicted_or_replaced(rows):
    inputs, labels = mask_batch(rows, 0.5, seeds(len(rows)), VOCAB)
    special = np.isin(rows, list(SPECIAL_TOKENS.values()))
    assert (labels.numpy()[special] == IGNORE_INDEX).all()
    assert (inputs.numpy()[special] == rows[special]).all()
    # Random replacements never produce a special token other than <mask> itself.
    changed = (inputs.numpy() != rows) & (inputs.numpy() != MASK_ID)
    assert not np.isin(inputs.numpy()[changed], [PAD_ID, CLS_ID, SEP_ID]).any()


@pytest.mark.parametrize("rate", [0.3, 0.15, 0.05])
def test_rate_and_80_10_10_split(rows, rate):
    many = np.concatenate([rows] * 20)
    inputs, labels = mask_batch(many, rate, seeds(len(many)), VOCAB)
    inputs, labels = inputs.numpy(), labels.numpy()
    maskable = ~np.isin(many, list(SPECIAL_TOKENS.values()))
    predicted = labels != IGNORE_INDEX
    assert abs(predicted.sum() / maskable.sum() - rate) < 0.1 * rate
    assert (labels[predicted] == many[predicted]).all()  # labels are the original tokens
    assert (inputs[~predicted] == many[~predicted]).all()  # nothing outside the predicted set changes
    as_mask = (inputs[predicted] == MASK_ID).mean()
    kept = (inputs[predicted] == many[predicted]).mean()
    randomised = 1 - as_mask - kept
    assert abs(as_mask - 0.8) < 0.03 and abs(kept - 0.1) < 0.03 and abs(randomised - 0.1) < 0.03


def test_deterministic_per_row_seed_whatever_the_batch(rows):
    a_inputs, a_labels = mask_batch(rows, 0.3, seeds(len(rows)), VOCAB)
    again_inputs, again_labels = mask_batch(rows, 0.3, seeds(len(rows)), VOCAB)
    assert (a_inputs == again_inputs).all() and (a_labels == again_labels).all()
    # A row masked alone (another process, another micro-batch) is masked exactly as in the whole batch.
    half = len(rows) // 2
    b_inputs, b_labels = mask_batch(rows[half:], 0.3, seeds(len(rows))[half:], VOCAB)
    assert (b_inputs == a_inputs[half:]).all() and (b_labels == a_labels[half:]).all()
    other_inputs, _ = mask_batch(rows, 0.3, seeds(len(rows), salt=1), VOCAB)
    assert not (other_inputs == a_inputs).all()


def test_bad_arguments_are_refused(rows):
    with pytest.raises(ValueError, match="one seed per row"):
        mask_batch(rows, 0.3, seeds(len(rows) - 1), VOCAB)
    with pytest.raises(ValueError, match="mask_rate"):
        mask_batch(rows, 1.5, seeds(len(rows)), VOCAB)
