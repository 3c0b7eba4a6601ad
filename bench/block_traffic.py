"""Memory traffic of one compiled encoder block outside its matmuls, per training precision, on any machine.

The GPU benchmark (bench/train_throughput.py) says how long a step takes; this says where the element-wise part of
it comes from. It compiles one mmBERT block (forward + backward) under each precision the trainer offers and adds
up the bytes every kernel Inductor generates reads and writes (its scheduler's own count, `count_bytes`), apart from
the matmuls:

    autocast        fp32 weights and residual stream, bf16 matmuls (training.precision: bf16; the benchmark's `ours`)
    autocast+bf16   the same with the residual stream in bf16 between blocks (`MaskedLM.residual_dtype`;
                    `ours:residual=bf16`)
    fsdp-bf16       bf16 weights and activations, fp32 master weights in the optimizer (training.fsdp: true + bf16;
                    `ours:precision=fsdp-bf16`)

It also compiles the loss's per-chunk kernel (`training.loss.chunk_loss_and_grad`: softmax statistics and the
gradient of 64 rows of 256k bf16 logits) and reports its bytes as a multiple of the logits' (each pass over them
costs ~1.8 ms a step at 32 x 1024 with 30 % masking).

Inductor's CPU and GPU backends fuse a graph alike except for concatenation, which the CPU backend materialises
(RoPE's rotate-half is a concatenation); `force_pointwise_cat` gives the GPU's lowering here. Attention runs through
sdpa with a dense mask (FlexAttention has no CPU backward): its kernels and the mask's conversion are reported apart,
as they are not what the GPU runs. Bytes are measured at 2 and 4 rows and extrapolated to --rows (the weights, their
casts and gradients are the part that does not grow with the rows).

    .venv/bin/python bench/block_traffic.py                                   # mmbert-base, 32 x 1024
    .venv/bin/python bench/block_traffic.py --markdown bench/results/block_traffic.md
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mmbert.atomic import write_text_atomic  # noqa: E402

PRECISIONS = ("autocast", "autocast+bf16", "fsdp-bf16")
KINDS = ("element-wise", "matmul", "attention (CPU sdpa)")


def _kind(node) -> str:
    from torch._inductor.scheduler import ExternKernelSchedulerNode

    origins = {str(origin.target) for sub in node.get_nodes() for origin in (getattr(sub.node, "origins", None) or ())}
    if any("scaled_dot_product" in origin for origin in origins) or origins == {"aten.full.default",
                                                                                 "aten.where.self"}:
        return "attention (CPU sdpa)"  # sdpa and the conversion of its boolean mask to an additive one
    return "matmul" if isinstance(node, ExternKernelSchedulerNode) else "element-wise"


def block_traffic(model: str, precision: str, rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """kind → (bytes read + written, kernels) for one block's forward + backward at `rows` x `seq_len`."""
    import torch
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    import torch._inductor.metrics as metrics

    from training import attention
    from training.model import Block, ModelConfig, Rotary, positions_from_document_ids

    config = ModelConfig.named(model)
    torch._dynamo.reset()
    metrics.reset()
    torch.manual_seed(0)
    weight_dtype = torch.bfloat16 if precision == "fsdp-bf16" else torch.float32
    dtype = torch.float32 if precision == "autocast" else torch.bfloat16  # the residual stream's
    block = Block(config, 1).to(weight_dtype)  # a local block; on this path global blocks are the same graph
    documents = torch.zeros(rows, seq_len, dtype=torch.long)
    documents[:, seq_len // 3:] = 1  # three documents a row, as in the GPU benchmark's packing
    documents[:, 2 * seq_len // 3:] = 2
    masks = attention.build_masks(documents, config.window_half, "sdpa")["local"]
    rope = Rotary(config.head_dim, config.local_rope_theta)(positions_from_document_ids(documents))
    x = torch.randn(rows, seq_len, config.hidden_size, dtype=dtype, requires_grad=True)
    block.compile(dynamic=False)
    # No compile caches: a cached graph skips the code generation that counts the bytes.
    with inductor_config.patch(fx_graph_cache=False, force_pointwise_cat=True), \
            functorch_config.patch(enable_autograd_cache=False), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fsdp-bf16"):
        block(x, rope, masks).float().pow(2).mean().backward()
    totals: dict[str, list[int]] = {kind: [0, 0] for kind in KINDS}
    for node, elements in metrics.nodes_num_elem:  # recorded as bytes // 4
        totals[_kind(node)][0] += 4 * elements
        totals[_kind(node)][1] += 1
    return {kind: (size, count) for kind, (size, count) in totals.items()}


def loss_chunk_traffic(rows: int = 64, vocab: int = 256_000) -> tuple[float, int]:
    """(bytes read + written ÷ the logits' bytes, kernels) of the compiled per-chunk loss kernel on bf16 logits."""
    import torch
    import torch._inductor.config as inductor_config
    import torch._inductor.metrics as metrics

    from training.loss import IGNORE_INDEX, chunk_loss_and_grad

    torch._dynamo.reset()
    metrics.reset()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, generator=generator).bfloat16()
    targets = torch.randint(0, vocab, (rows,), generator=generator)
    targets[::5] = IGNORE_INDEX
    with inductor_config.patch(fx_graph_cache=False):
        torch.compile(chunk_loss_and_grad, dynamic=False)(logits, targets)
    return sum(4 * elements for _, elements in metrics.nodes_num_elem) / logits.nbytes, len(metrics.nodes_num_elem)


def _mute(record) -> bool:
    return False


@contextlib.contextmanager
def counting_bytes():
    """Inductor counts the bytes only while its metrics log is on, which then prints a dump per graph: on, muted."""
    import torch._logging
    from torch._inductor.compile_fx import inductor_metrics_log

    torch._logging.set_logs(inductor_metrics=True)
    inductor_metrics_log.addFilter(_mute)
    try:
        yield
    finally:
        inductor_metrics_log.removeFilter(_mute)
        torch._logging.set_logs()  # the defaults again, for whatever runs next in this process


def measure(model: str, rows: int, seq_len: int) -> tuple[list[dict], tuple[float, int]]:
    """Per precision, bytes per block at `rows`; and the loss chunk's (bytes ÷ logits bytes, kernels)."""
    from training.model import ModelConfig

    layers = ModelConfig.named(model).num_layers
    results = []
    with counting_bytes():
        for precision in PRECISIONS:
            small, large = block_traffic(model, precision, 2, seq_len), block_traffic(model, precision, 4, seq_len)
            row = {"precision": precision, "kernels": small["element-wise"][1] + small["matmul"][1]}
            for kind in KINDS:
                per_row = (large[kind][0] - small[kind][0]) / 2
                row[kind] = small[kind][0] + per_row * (rows - 2)  # bytes per block at `rows`
            row["step_element_wise"] = row["element-wise"] * layers
            results.append(row)
        loss_chunk = loss_chunk_traffic()
    return results, loss_chunk


def markdown(results: list[dict], loss_chunk: tuple[float, int], model: str, rows: int, seq_len: int,
             bandwidth: float) -> str:
    import platform

    import torch

    lines = [f"Bytes read + written per {model} block, forward + backward, at {rows} x {seq_len} tokens, as "
             f"Inductor's scheduler counts them (torch {torch.__version__}, {platform.machine()}, GPU-style "
             f"concatenation). Command: `.venv/bin/python bench/block_traffic.py --model {model} --rows {rows} "
             f"--seq-len {seq_len}`.", "",
             "| precision | element-wise MB / block | matmul I/O MB / block | attention (CPU sdpa) MB / block "
             f"| kernels / block | element-wise GB / step | ms / step at {bandwidth:g} TB/s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['precision']} | {r['element-wise'] / 1e6:,.0f} | {r['matmul'] / 1e6:,.0f} | "
                     f"{r['attention (CPU sdpa)'] / 1e6:,.0f} | {r['kernels']} | {r['step_element_wise'] / 1e9:.2f} | "
                     f"{r['step_element_wise'] / (bandwidth * 1e12) * 1e3:.2f} |")
    lines += ["", f"Loss chunk kernel (`chunk_loss_and_grad`, compiled, 64 x 256,000 bf16 logits): {loss_chunk[1]} "
              f"kernels moving {loss_chunk[0]:.2f}x the logits' bytes."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    from mmbert.argtypes import positive_float, positive_int

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mmbert-base", choices=("mmbert-base", "mmbert-small", "tiny"))
    p.add_argument("--rows", type=positive_int, default=32, help="rows a step (default 32)")
    p.add_argument("--seq-len", type=positive_int, default=1024, help="tokens a row (default 1024)")
    p.add_argument("--bandwidth-tbs", type=positive_float, default=3.0,
                   help="memory bandwidth to turn bytes into time (default 3.0 TB/s: an H100's HBM3, achieved)")
    p.add_argument("--markdown", metavar="PATH", help="also write the table here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    results, loss_chunk = measure(args.model, args.rows, args.seq_len)
    table = markdown(results, loss_chunk, args.model, args.rows, args.seq_len, args.bandwidth_tbs)
    print(table)
    if args.markdown:
        write_text_atomic(args.markdown, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
