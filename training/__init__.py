"""Training: the ModernBERT-style encoder and the staged masked-LM loop.

In: packed shards (`mmbert tokenizer pack`) and a recipe YAML (recipes/). Out: checkpoints
(`RUN/checkpoints/step-*/`: model.safetensors, checkpoint.json, trainer_state.pt) and Hugging Face directories.

- `model`: the encoder in one readable file (embeddings → alternating global/local attention blocks → MLM head).
- `attention`: the attention paths (naive reference, sdpa with a dense mask on CPU, FlexAttention block masks,
  flash-attn varlen) behind one call; `loss`: sparse, chunked 256k-way cross-entropy; `batches`: rows → tensors.
- `config` (recipes), `data` (phase-aware loader), `masking`, `optim`, `checkpoint`, `distributed` (DDP, FSDP2 and
  its bf16 mixed precision), `compilation` (regional or whole torch.compile), `step` (one optimizer step that never
  waits for the device), `trainer` (the loop): infrastructure, applied to the model from outside.
- `hf` (export/import with transformers' ModernBertForMaskedLM), `merge` (TIES / averaging).
"""
