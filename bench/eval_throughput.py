"""Throughput of the two model-bound steps of `mmbert eval` on this machine, with a random ModernBERT of mmBERT's shape.

- MLM scoring: one sequence per masked position (evaluation/mlm.py), so the cost of `--mlm-positions` per language;
- embedding: mean-pooled `[CLS] text [SEP]` (retrieval and classification).
It first checks, on the chosen device, that the logits computed at the masked position only equal the full forward's.

    python bench/eval_throughput.py --tokenizer ~/.cache/mmbert/tokenizers/gemma2/tokenizer.json --size small

Prints one JSON object. Texts: UDHR paragraphs from data/udhr/txt, packed into document pieces of --seq-len tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.mlm import score_positions  # noqa: E402
from evaluation.models import open_model  # noqa: E402
from mmbert.paths import DATA_DIR  # noqa: E402
from tokenizer.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKEN_ROLES  # noqa: E402

SIZES = {  # mmBERT's shapes (ModernBERT with a 256k vocabulary)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4),
    "small": dict(hidden_size=384, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=6),
    "base": dict(hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12),
}


def save_model(directory: Path, size: str, tokenizer_json: Path, max_length: int) -> None:
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    torch.manual_seed(0)
    config = ModernBertConfig(vocab_size=256_000, max_position_embeddings=max(max_length, 512),
                              global_attn_every_n_layers=3, local_attention=128, pad_token_id=PAD_ID,
                              bos_token_id=BOS_ID, eos_token_id=EOS_ID, cls_token_id=BOS_ID, sep_token_id=EOS_ID,
                              **SIZES[size])
    ModernBertForMaskedLM(config).save_pretrained(directory)
    (directory / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length, **SPECIAL_TOKEN_ROLES}))


def udhr_paragraphs(limit: int) -> list[str]:
    paragraphs = []
    for path in sorted((DATA_DIR / "udhr" / "txt").glob("udhr_*.txt")):
        body = path.read_text(encoding="utf-8").split("\n---\n", 1)[1]
        paragraphs += [line.strip() for line in body.splitlines() if len(line.strip()) > 40]
    return paragraphs[:limit]


def pieces_of(model, texts: list[str], seq_len: int) -> list[np.ndarray]:
    """Documents of about seq_len tokens: consecutive paragraphs joined, as a held-out split's pieces look."""
    ids = [i for sequence in model.token_ids(texts) for i in sequence]
    body = seq_len - 2
    return [np.array(model.wrap(ids[start:start + body])) for start in range(0, len(ids) - body, body)]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, type=Path, help="a tokenizer.json with the Gemma 2 ids")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--device", default=None)
    parser.add_argument("--positions", type=int, default=2000, help="masked positions to score")
    parser.add_argument("--sentences", type=int, default=2000, help="paragraphs to embed")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        save_model(Path(scratch), args.size, args.tokenizer, args.seq_len)
        with open_model(scratch, max_length=args.seq_len, batch_size=args.batch_size, device=args.device,
                        precision=args.precision) as model:
            texts = udhr_paragraphs(max(args.sentences, 4000))
            pieces = pieces_of(model, texts, args.seq_len)
            # Correctness on this device: logits at the asked positions only == the full forward's.
            input_ids, attention_mask = model.pad([p.tolist() for p in pieces[:4]])
            positions = torch.tensor([5, 50, 100, 200], device=model.device).clamp(max=args.seq_len - 2)
            with torch.no_grad():
                full = model.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
                asked = model.masked_token_logits(input_ids, attention_mask, positions)
            max_difference = (asked - full[torch.arange(4, device=model.device), positions]).abs().max().item()
            del full

            rng = np.random.default_rng(0)
            chosen = [(int(p), int(rng.integers(1, len(pieces[p]) - 1)))
                      for p in rng.integers(0, len(pieces), size=args.positions)]
            score_positions(model, pieces, chosen[: args.batch_size], model.tokenizer.mask_token_id)  # warm-up
            synchronize(model.device)
            start = time.perf_counter()
            log_likelihoods, _ = score_positions(model, pieces, chosen, model.tokenizer.mask_token_id)
            synchronize(model.device)
            mlm_seconds = time.perf_counter() - start

            sentences = texts[: args.sentences]
            model.embed(sentences[: args.batch_size])  # warm-up
            synchronize(model.device)
            start = time.perf_counter()
            embeddings = model.embed(sentences)
            synchronize(model.device)
            embed_seconds = time.perf_counter() - start
            tokens = sum(len(ids) + 2 for ids in model.token_ids(sentences))

    print(json.dumps({
        "device": str(model.device) + (f" ({torch.cuda.get_device_name()})" if model.device.type == "cuda" else ""),
        "size": args.size, "seq_len": args.seq_len, "batch_size": args.batch_size, "precision": args.precision,
        "masked_logits_max_abs_difference": max_difference,
        "mlm_positions_per_second": round(args.positions / mlm_seconds, 1),
        "mlm_pseudo_perplexity_random_model": float(torch.exp(-log_likelihoods.double().mean())),
        "embed_sentences_per_second": round(len(sentences) / embed_seconds, 1),
        "embed_tokens_per_second": round(tokens / embed_seconds),
        "embedding_shape": list(embeddings.shape),
    }, indent=1))


if __name__ == "__main__":
    main()
