"""The special tokens of the encoder, in one place: the Gemma 2 vocabulary's ids, used the way mmBERT uses them.

mmBERT keeps Gemma 2's first five ids and gives them encoder roles: every document is `[CLS] … [SEP]` with
[CLS] = `<bos>` and [SEP] = `<eos>`, masked positions hold `<mask>`, and padding is `<pad>`. Training, packing,
export and evaluation import these names instead of repeating the numbers.
"""

from __future__ import annotations

PAD_ID = 0  # <pad>
EOS_ID = 1  # <eos>
SEP_ID = EOS_ID  # [SEP] closes every document
BOS_ID = 2  # <bos>
CLS_ID = BOS_ID  # [CLS] opens every document
UNK_ID = 3  # <unk> (never produced by a byte-fallback tokenizer, kept for compatibility)
MASK_ID = 4  # <mask>

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
BOS_TOKEN = "<bos>"
UNK_TOKEN = "<unk>"
MASK_TOKEN = "<mask>"

# name → id, in id order; a tokenizer trained here reserves exactly these at ids 0..4.
SPECIAL_TOKENS: dict[str, int] = {
    PAD_TOKEN: PAD_ID,
    EOS_TOKEN: EOS_ID,
    BOS_TOKEN: BOS_ID,
    UNK_TOKEN: UNK_ID,
    MASK_TOKEN: MASK_ID,
}

# The roles transformers and the model configs use (`cls_token`, `sep_token`, …) → token string.
SPECIAL_TOKEN_ROLES: dict[str, str] = {
    "pad_token": PAD_TOKEN,
    "eos_token": EOS_TOKEN,
    "bos_token": BOS_TOKEN,
    "unk_token": UNK_TOKEN,
    "mask_token": MASK_TOKEN,
    "cls_token": BOS_TOKEN,
    "sep_token": EOS_TOKEN,
}


def check_special_ids(tokenizer) -> list[str]:
    """Problems with a `tokenizers.Tokenizer`'s special ids (empty when each name maps to its id and back)."""
    problems = []
    for token, expected in SPECIAL_TOKENS.items():
        actual = tokenizer.token_to_id(token)
        if actual != expected:
            problems.append(f"{token} has id {actual}, expected {expected}")
    return problems


def encode_special_tokens_as_text(tokenizer):
    """Make a `tokenizers.Tokenizer` read "<bos>", "<eos>", "<mask>"… in a document as plain text.

    Otherwise a web page that mentions "<eos>" would get a real [SEP] in the middle of a document (and "<mask>", which
    Gemma 2 does not mark special, a real mask). Returns the same tokenizer, changed in place.
    """
    from tokenizers import AddedToken

    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer.encode_special_tokens = True
    return tokenizer
