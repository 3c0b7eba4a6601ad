"""Training-step throughput on one GPU: this project's fast path next to transformers' ModernBertForMaskedLM.

In: nothing but a device (random tokens, packed like real shards: several `[CLS] … [SEP]` documents per row, 30 %
masking). Out: a markdown table on stdout and JSON (+ the same table as .md) at --output (default
`$OUT/train_throughput.json`, else bench/results/train_throughput.json).

Per model (mmbert-base, mmbert-small) and shape (1024 x 32, 8192 x 4), each implementation trains a few steps:
- `ours`: regional torch.compile (each block, the embeddings and the head), FlexAttention with document +
  sliding-window block masks, sparse prediction at a fixed capacity (no host sync), chunked fused cross-entropy,
  fused AdamW, bf16 autocast. Variants name their differences after colons, so several run side by side:
  `ours:compile=whole`, `ours:loss=liger`, `ours:chunk=16384`, `ours:attention=flash`, `ours:compile=off`,
  `ours:precision=fsdp-bf16` (FSDP2 mixed precision on a group of one: bf16 weights and activations, fp32 master
  weights, instead of autocast), `ours:residual=bf16` (autocast with the residual stream in bf16)
  (aliases: `ours-eager` = `ours:compile=off`, `ours-liger` = `ours:loss=liger`).
- `hf-sdpa`: transformers' ModernBertForMaskedLM (sdpa attention, sparse_prediction=True), bf16 autocast, fused AdamW.
- `hf-compiled`: the same under torch.compile (whole model).
The first step (compilation included) is timed apart from the timed steps; no host sync happens between timed steps.
Then (unless --profile none) two more steps run under torch.profiler: time per kind of kernel, the loss's share, the
device's busy time, the top kernels (bench/step_profile.py), and the source lines of any host synchronisation.

Model FLOPs per step (the same useful work for every implementation, so TFLOP/s ratios equal speed ratios):
  6 · L · H · (4H + 3I) · tokens          encoder matmuls (Wqkv 3H², Wo H², GeGLU in 2HI, out IH), fwd + bwd
+ 6 · (H² + V·H) · predicted tokens      head dense + decoder, only where a label exists (sparse prediction)
+ 12 · H · Σ_layers allowed (q, k) pairs  attention scores and values (4·H per pair forward, x3 with backward),
                                          pairs counted from the actual document + window masks
MFU = model TFLOP/s / a bf16 matmul ceiling measured in the same run (8192³ matmuls).

GPU:  python bench/train_throughput.py                       (bench/gpu_session.sh runs it with the checks)
CPU smoke (seconds, used by the tests):  python bench/train_throughput.py --device cpu --tiny --output /tmp/t.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import step_profile  # noqa: E402
from bench.step_checks import host_syncs, numerics_check, unique_graphs  # noqa: E402
from mmbert.atomic import write_text_atomic  # noqa: E402
from training import attention as attention_paths  # noqa: E402
from training.batches import random_packed_batch  # noqa: E402
from training.compilation import compile_model  # noqa: E402
from training.distributed import init_distributed, shutdown, wrap_model  # noqa: E402
from training.loss import liger_available, prediction_capacity  # noqa: E402
from training.model import MaskedLM, ModelConfig, positions_from_document_ids  # noqa: E402

MASK_ID, FIRST_REGULAR_ID = 4, 5
GPU_IMPLS = ("ours", "hf-sdpa", "hf-compiled")
# Tried at the first configuration after the goals, largest expected difference first (liger only when
# installed): the bf16 residual stream (-6 ms counted by bench/block_traffic.py), with one loss chunk, FSDP's bf16.
GPU_VARIANTS = ("ours:residual=bf16", "ours:residual=bf16:chunk=16384", "ours:precision=fsdp-bf16",
                "ours:chunk=16384", "ours:loss=liger", "ours:compile=whole")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__[__doc__.index("GPU:"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="CPU smoke test: the tiny model, 2 x 128 tokens, 2 steps")
    p.add_argument("--models", default="mmbert-base,mmbert-small")
    p.add_argument("--vocab-size", type=int, default=None, help="override the models' 256k vocabulary")
    p.add_argument("--shapes", default="1024x32,8192x4", help="seq_len x batch, comma-separated")
    p.add_argument("--impls", default=None,
                   help=f"default on CUDA: {','.join(GPU_IMPLS + GPU_VARIANTS)} (liger when installed); "
                        "on CPU: ours-eager,hf-sdpa")
    p.add_argument("--attention", default="auto", help="path for ours: auto (flex on CUDA), flex, flash, sdpa")
    p.add_argument("--isolate-flex", action="store_true",
                   help="compile FlexAttention apart from the blocks (the fallback the numerics check switches to)")
    p.add_argument("--loss-chunk", type=int, default=4096, help="rows per cross-entropy chunk")
    p.add_argument("--mask-rate", type=float, default=0.3)
    p.add_argument("--mean-doc-len", type=int, default=400, help="mean document length of the random packing")
    p.add_argument("--warmup", type=int, default=4,
                   help="untimed steps, the first one compiles; 4 = every distinct batch is seen before timing")
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--budget-s", type=float, default=400,
                   help="finish by this many seconds: a configuration starts only if the longest one so far would "
                        "still end in time (run it under `timeout` a little longer than this)")
    p.add_argument("--no-numerics", action="store_true")
    p.add_argument("--profile", default="all", choices=["none", "ours", "all"],
                   help="profile two steps of every configuration (all), of ours and its variants, or none")
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    if args.tiny:
        args.models, args.shapes, args.warmup, args.steps = "tiny", "128x2", 1, 2
        args.vocab_size = args.vocab_size or 4096
    if args.impls is None:
        impls = [*GPU_IMPLS, *GPU_VARIANTS] if args.device.startswith("cuda") else ["ours-eager", "hf-sdpa"]
        if not liger_available():
            impls = [impl for impl in impls if impl != "ours:loss=liger"]
        args.impls = ",".join(impls)
    if args.output is None:
        base = Path(os.environ["OUT"]) if os.environ.get("OUT") else REPO / "bench" / "results"
        args.output = str(base / "train_throughput.json")
    return args


# --- environment and the ceiling -----------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   gpu_memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    for package, distribution in (("transformers", "transformers"), ("liger_kernel", "liger-kernel"),
                                  ("flash_attn", "flash-attn"), ("triton", "triton")):
        try:  # the installed distribution's version: liger_kernel has no __version__
            env[package] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            env[package] = getattr(sys.modules.get(package), "__version__", None)
    return env


def matmul_ceiling_tflops(device: torch.device, dtype: torch.dtype) -> float:
    n, reps = (8192, 30) if device.type == "cuda" else (512, 3)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- batches and FLOPs ---------------------------------------------------------------------------------------------


def make_batches(config: ModelConfig, seq_len: int, batch_size: int, args, device, count: int = 4) -> list[dict]:
    """`count` distinct masked batches, built on the CPU and moved to the device before any timing."""
    g = torch.Generator().manual_seed(1234 + seq_len + batch_size)
    batches = []
    for _ in range(count):
        input_ids, document_ids = random_packed_batch(batch_size, seq_len, config.vocab_size, g,
                                                      mean_document_length=args.mean_doc_len)
        maskable = input_ids >= FIRST_REGULAR_ID
        chosen = maskable & (torch.rand(input_ids.shape, generator=g) < args.mask_rate)
        labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
        inputs = torch.where(chosen, torch.full_like(input_ids, MASK_ID), input_ids)
        batches.append({
            "input_ids": inputs, "document_ids": document_ids, "labels": labels,
            "position_ids": positions_from_document_ids(document_ids), "predicted": int(chosen.sum()),
        })
    # A fixed gather capacity keeps shapes static (the trainer's rule: mean + 6 sigma, rounded up to 256 rows).
    capacity = prediction_capacity(seq_len * batch_size, args.mask_rate)
    assert all(b["predicted"] <= capacity for b in batches), "capacity below a batch's masked count"
    for b in batches:
        b["capacity"] = capacity
        for key in ("input_ids", "document_ids", "labels", "position_ids"):
            b[key] = b[key].to(device)
    return batches


def attention_pairs(document_ids: torch.Tensor, window_half: int) -> tuple[int, int]:
    """Allowed (query, key) pairs in a batch for a global and for a local layer."""
    global_pairs = local_pairs = 0
    for row in document_ids.cpu().tolist():
        lengths, current, run = [], None, 0
        for d in row:
            if d != current and run:
                lengths.append(run)
                run = 0
            current, run = d, run + 1
        lengths.append(run)
        for n in lengths:
            global_pairs += n * n
            w = min(window_half, n - 1)
            local_pairs += n * (2 * w + 1) - w * (w + 1)  # n·(2w+1) minus the window parts past both ends
    return global_pairs, local_pairs


def model_flops(config: ModelConfig, batch: dict) -> float:
    H, I, L, V = config.hidden_size, config.intermediate_size, config.num_layers, config.vocab_size
    tokens = batch["input_ids"].numel()
    g_pairs, l_pairs = attention_pairs(batch["document_ids"], config.window_half)
    n_global = sum(config.is_global(i) for i in range(L))
    pairs = n_global * g_pairs + (L - n_global) * l_pairs
    return 6 * L * H * (4 * H + 3 * I) * tokens + 6 * (H * H + V * H) * batch["predicted"] + 12 * H * pairs


# --- implementations ------------------------------------------------------------------------------------------------


def build(impl: str, config: ModelConfig, device: torch.device, args):
    """→ (the module that trains, run(batch) → loss, step(batch) → loss after an optimizer step, the autocast
    context). Everything on `device`."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    torch.manual_seed(0)  # every implementation and variant starts from the same weights
    if impl.startswith("ours"):
        options = ours_options(impl, args)
        with device:
            model = MaskedLM(config)
        outer = model
        if options["residual"] == "bf16":  # autocast with the residual stream in bf16 between blocks
            model.residual_dtype = torch.bfloat16
            autocast = torch.autocast(device.type, dtype=torch.bfloat16)
        if options["precision"] == "fsdp-bf16":  # the trainer's fsdp + bf16: FSDP2 mixed precision, no autocast
            ctx = init_distributed(device.type, fsdp=True)
            outer = wrap_model(model, ctx, fsdp=True, param_dtype=torch.bfloat16)
            autocast = contextlib.nullcontext()
        forward = compile_model(model, options["compile"], outer=outer)

        def run(b):
            return forward(b["input_ids"], b["document_ids"], b["labels"], attention=options["attention"],
                           max_predictions=b["capacity"], loss_chunk_size=options["chunk"],
                           loss_impl=options["loss"]).loss
    elif impl.startswith("hf"):
        model = build_hf(config, device)
        forward = torch.compile(model) if impl == "hf-compiled" else model

        def run(b):
            return forward(input_ids=b["input_ids"], position_ids=b["position_ids"], labels=b["labels"]).loss
    else:
        raise ValueError(f"unknown implementation {impl!r}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=1e-5,
                                  fused=device.type == "cuda")

    def step(b):
        with autocast:
            loss = run(b)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return model, run, step, autocast


ALIASES = {"ours-eager": "ours:compile=off", "ours-liger": "ours:loss=liger"}
OURS_CHOICES = {"compile": ("blocks", "whole", "off"), "loss": ("chunked", "liger"),
                "attention": ("auto", "flex", "flash", "sdpa"), "precision": ("autocast", "fsdp-bf16"),
                "residual": ("fp32", "bf16")}


def ours_options(impl: str, args) -> dict:
    """`ours:key=value:…` → the options of that variant (defaults from the command line)."""
    base, *pairs = ALIASES.get(impl, impl).split(":")
    if base != "ours":
        raise ValueError(f"unknown implementation {impl!r}")
    options = {"compile": "blocks", "loss": "chunked", "attention": args.attention, "chunk": args.loss_chunk,
               "precision": "autocast", "residual": "fp32"}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key == "chunk" and value.isdigit() and int(value) > 0:
            options[key] = int(value)
        elif value in OURS_CHOICES.get(key, ()):
            options[key] = value
        else:
            raise ValueError(f"unknown option {pair!r} in {impl!r}; keys: chunk=N, "
                             + ", ".join(f"{k}={'|'.join(v)}" for k, v in OURS_CHOICES.items()))
    return options


def build_hf(config: ModelConfig, device: torch.device):
    from transformers import AutoModelForMaskedLM, ModernBertConfig

    from training.hf import hf_config

    values = {k: v for k, v in hf_config(config).items() if k not in ("architectures", "model_type", "torch_dtype")}
    hf_cfg = ModernBertConfig(**values, sparse_prediction=True, reference_compile=False)
    with device:
        return AutoModelForMaskedLM.from_config(hf_cfg, attn_implementation="sdpa")


# --- one configuration -----------------------------------------------------------------------------------------------


def run_config(impl, name, seq_len, batch_size, args, device, numerics: bool) -> dict:
    """One (implementation, model, shape): a result dict whatever happens (OOM and errors are recorded)."""
    result = {"model": name, "seq_len": seq_len, "batch": batch_size, "impl": impl, "status": "ok"}
    if impl.startswith("ours"):
        result["flex_isolated"] = attention_paths.ISOLATE_FLEX
    try:
        _measure(result, impl, name, seq_len, batch_size, args, device, numerics)
    except torch.OutOfMemoryError:
        result["status"] = "oom"
    except Exception as err:  # noqa: BLE001 - one broken configuration must not end the run
        result["status"] = f"error: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        result["traceback"] = traceback.format_exc()[-3000:]
    # Everything of this run is unreachable now (the exception and its frames included): free it for the next.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    return result


def _measure(result: dict, impl, name, seq_len, batch_size, args, device, numerics: bool) -> None:
    config = ModelConfig.named(name, **({"vocab_size": args.vocab_size} if args.vocab_size else {}))
    if impl.startswith("hf") and environment_cache["transformers"] is None:
        result["status"] = "skipped: transformers not installed"
        return
    if impl.startswith("ours") and ours_options(impl, args)["loss"] == "liger" and not liger_available():
        result["status"] = "skipped: liger-kernel not installed"
        return
    batches = make_batches(config, seq_len, batch_size, args, device)
    result["docs_per_row"] = round(float((batches[0]["document_ids"].amax(1) + 1).float().mean()), 2)
    result["model_flops_per_step"] = sum(model_flops(config, b) for b in batches) / len(batches)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, run, step, autocast = build(impl, config, device, args)
    result["params"] = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    losses = [step(batches[0])]
    sync(device)
    result["first_step_s"] = round(time.perf_counter() - start, 2)  # compilation included
    for i in range(1, args.warmup):
        losses.append(step(batches[i % len(batches)]))
    if device.type == "cuda":
        result["host_syncs_per_step"], result["host_sync_sites"] = host_syncs(lambda: step(batches[1]))
    graphs_before = unique_graphs()
    sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        losses.append(step(batches[i % len(batches)]))
    sync(device)
    elapsed = time.perf_counter() - start
    result["graphs_compiled_while_timed"] = unique_graphs() - graphs_before  # > 0 means recompiles: a bug
    losses = torch.stack(losses).float().cpu()
    result.update(
        ms_per_step=round(1000 * elapsed / args.steps, 2),
        tokens_per_s=round(seq_len * batch_size * args.steps / elapsed),
        model_tflops=round(result["model_flops_per_step"] * args.steps / elapsed / 1e12, 3),
        first_loss=round(float(losses[0]), 4), last_loss=round(float(losses[-1]), 4),
        finite=bool(torch.isfinite(losses).all()),
    )
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if args.profile == "all" or (args.profile == "ours" and impl.startswith("ours")):
        result["profile"] = step_profile.profile_steps(step, batches[2 % len(batches)], device)
    if numerics:
        result["numerics"] = numerics_check(model, run, autocast, batches[0])


def needs_isolation(result: dict, device: torch.device) -> bool:
    numerics = result.get("numerics")
    return (numerics is not None and not numerics["passed"] and device.type == "cuda"
            and result["impl"] == "ours" and not attention_paths.ISOLATE_FLEX)


environment_cache: dict = {}


# --- report -----------------------------------------------------------------------------------------------------------


def markdown(results: list[dict], env: dict, ceiling: float) -> str:
    lines = [
        f"Device: {env.get('gpu', env['device'])}; torch {env['torch']}, transformers {env.get('transformers')}, "
        f"liger-kernel {env.get('liger_kernel')}, flash-attn {env.get('flash_attn')}; "
        f"measured matmul ceiling {ceiling:.3g} TFLOP/s (bf16 on GPU).",
        "",
        "| model | seq x batch | impl | tokens/s | model TFLOP/s | MFU | peak GiB | ms/step | first step s "
        "| vs hf-sdpa | vs hf-compiled | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    by_key = {(r["model"], r["seq_len"], r["impl"]): r for r in results}
    for r in results:
        def ratio(other):
            base = by_key.get((r["model"], r["seq_len"], other), {})
            if r.get("tokens_per_s") and base.get("tokens_per_s"):
                return f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}x"
            return ""
        tflops = r.get("model_tflops")
        mfu = f"{100 * tflops / ceiling:.1f}%" if tflops is not None else ""
        label = r["impl"] + (" (flex isolated)" if r.get("flex_isolated") else "")
        lines.append(
            f"| {r['model']} | {r['seq_len']}x{r['batch']} | {label} | {r.get('tokens_per_s', '')} | "
            f"{'' if tflops is None else tflops} | {mfu} | {r.get('peak_memory_gib', '')} | "
            f"{r.get('ms_per_step', '')} | "
            f"{r.get('first_step_s', '')} | {ratio('hf-sdpa')} | {ratio('hf-compiled')} | {r['status']} |"
        )
    for r in results:
        if "profile" in r:
            lines.append(step_profile.markdown(r["profile"], f"{r['model']} {r['seq_len']}x{r['batch']} {r['impl']}"))
    for r in results:
        if "numerics" in r:
            n = r["numerics"]
            lines.append(
                f"\nNumerics ({r['model']} {r['seq_len']}x{r['batch']}, {r['impl']} vs fp32 sdpa reference): "
                f"loss {n['fast_loss']} vs {n['reference_loss']} (rel {n['loss_rel_diff']:.2e}), gradient rel L2 "
                f"{n['grad_rel_l2']:.2e}, worst cosine {n['worst_grad_cosine']} ({n['worst_grad_param']}): "
                f"{'PASS' if n['passed'] else 'FAIL'}"
            )
    return "\n".join(lines) + "\n"


def plan(models: list[str], shapes: list[tuple[int, int]], impls: list[str]) -> list[tuple]:
    """Run order by priority, so a time budget cuts the least important runs: the first configuration with every
    baseline; the first model's other shapes with their own path and eager baseline (issue 6's two goals, which
    must come from one run); the variants of `ours` at the first configuration (what to change next); the other
    models; then the variants that compile the whole model and the other configurations' compiled baseline (the
    slowest to compile)."""
    configs = [(m, s) for m in models for s in shapes]
    variants = [impl for impl in impls if impl.startswith("ours") and impl not in ("ours", "ours-eager")]
    main = [impl for impl in impls if impl not in variants]
    first = [(*configs[0], impl) for impl in main]
    goals = [(*c, impl) for c in configs[1:] if c[0] == configs[0][0] for impl in main if impl != "hf-compiled"]
    tried = [(*configs[0], impl) for impl in variants if "compile=whole" not in impl]
    rest = [(*c, impl) for c in configs[1:] if c[0] != configs[0][0] for impl in main if impl != "hf-compiled"]
    late = ([(*configs[0], impl) for impl in variants if "compile=whole" in impl]
            + [(*c, "hf-compiled") for c in configs[1:] if "hf-compiled" in impls])
    return first + goals + tried + rest + late


def main(argv=None) -> int:
    try:
        return run_benchmark(parse_args(argv), argv)
    finally:
        shutdown()  # the process group of one an FSDP variant started


def run_benchmark(args, argv) -> int:
    device = torch.device(args.device)
    torch.manual_seed(0)
    # Each block kind x shape is one cache entry; a higher limit keeps a surprise from silently falling back to eager.
    if hasattr(torch._dynamo.config, "recompile_limit"):
        torch._dynamo.config.recompile_limit = 64
    else:
        torch._dynamo.config.cache_size_limit = 64
    attention_paths.ISOLATE_FLEX = args.isolate_flex
    env = environment(device)
    environment_cache.update(env)
    ceiling = matmul_ceiling_tflops(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    print(f"# {env}\n# matmul ceiling {ceiling:.3g} TFLOP/s", flush=True)
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]
    impls = args.impls.split(",")
    models, order = args.models.split(","), {impl: i for i, impl in enumerate(impls)}
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    began, results = time.perf_counter(), []
    first_config = plan(models, shapes, impls)[0][:2]

    def write_report() -> str:
        """Rewritten after every configuration, so a run killed by its time limit still leaves its results."""
        ordered = sorted(results, key=lambda r: (models.index(r["model"]), r["seq_len"], order[r["impl"]]))
        table = markdown(ordered, env, ceiling)
        report = {"command": command, "environment": env, "matmul_ceiling_tflops": round(ceiling, 1),
                  "flop_formula": FLOP_FORMULA, "total_s": round(time.perf_counter() - began, 1), "results": ordered}
        # Atomic: the time limit may kill the run while it writes, and the last complete report must survive.
        write_text_atomic(output, json.dumps(report, indent=2) + "\n")
        write_text_atomic(output.with_suffix(".md"), table)
        return table

    output = Path(args.output)
    longest = 0.0  # the longest configuration so far: what the next one is assumed to take
    for name, (seq_len, batch_size), impl in plan(models, shapes, impls):
        row = {"model": name, "seq_len": seq_len, "batch": batch_size, "impl": impl}
        if time.perf_counter() - began + longest > args.budget_s:
            result = {**row, "status": "skipped: time budget"}
        else:
            # Said before it runs: a report that ends on this row was cut by the caller's time limit.
            results.append({**row, "status": "running when the report was last written (killed by a time limit?)"})
            write_report()
            results.pop()
            started = time.perf_counter()
            # Every variant of ours at the first configuration is checked: any of them may become the fast path.
            check = not args.no_numerics and impl.startswith("ours") and (name, (seq_len, batch_size)) == first_config
            result = run_config(impl, name, seq_len, batch_size, args, device, check)
            if needs_isolation(result, device):
                # The fused block failed the reference: record it, then measure with FlexAttention compiled apart.
                results.append(result)
                attention_paths.ISOLATE_FLEX = True
                result = run_config(impl, name, seq_len, batch_size, args, device, True)
            longest = max(longest, time.perf_counter() - started)
        results.append(result)
        print(json.dumps({k: v for k, v in result.items() if k not in ("traceback", "numerics", "profile")}),
              flush=True)
        if "traceback" in result:
            print(result["traceback"], file=sys.stderr, flush=True)
        table = write_report()
    print("\n" + table)
    print(f"wrote {output} and {output.with_suffix('.md')}")
    # The last check of each implementation is the one its reported numbers rest on (an `ours` that failed fused
    # FlexAttention is measured again with it isolated).
    checks = {r["impl"]: r["numerics"]["passed"] for r in results if "numerics" in r}
    return 0 if all(checks.values()) else 1


FLOP_FORMULA = ("6*L*H*(4H+3I)*tokens + 6*(H^2+V*H)*predicted_tokens + 12*H*sum_layers(allowed (q,k) pairs under the "
                "document (+ window on local layers) mask); same useful FLOPs for every implementation")

if __name__ == "__main__":
    code = main()
    from training.distributed import exit_process

    exit_process(code)  # `precision=fsdp-bf16` on the CPU makes a gloo group: see exit_process
    sys.exit(code)
