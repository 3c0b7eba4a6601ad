"""Where one training step's time goes: torch.profiler over a few steps, summarised by kind of work.

In: a `step(batch)` callable that has already run (compiled, warm) and a batch. Out: a dict for the benchmark's JSON:
per step, the wall time, the device's busy time (the union of kernel intervals: wall − busy is time the GPU waited
for the host), time per category of kernel (matmul, attention, the MLM loss, fused Triton element-wise, eager
element-wise, optimizer, memory), and the top kernels. On a CPU (the smoke test) the same summary is made from the
operators' self times, without a busy figure.

The loss's share comes from the `mmbert::loss` ranges that training/loss.py marks (the chunked forward, which computes
the gradients too, and the backward that scales them); under `compile=whole` the compiler drops the ranges and the
share is not reported. Everything else is classified by kernel name.
"""

from __future__ import annotations

import re
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

LOSS_RANGE = "mmbert::loss"
# First match wins: attention before matmul (flash kernels mention gemm-like tiles), the optimizer before
# element-wise (fused AdamW's kernels are element-wise too).
CATEGORIES = (
    ("attention", r"flex_attention|flash|fmha|attention|sdpa|_efficient_attention|scaled_dot"),
    ("matmul", r"gemm|nvjet|cutlass|xmma|cublas|aten::(mm|addmm_?|bmm|baddbmm|matmul|linear)$|sm\d+_"),
    ("optimizer", r"adam|multi_tensor_apply"),
    ("fused (triton)", r"^triton_|^triton__"),
    ("memory", r"memset|memcpy|fill|zero_|copy_|aten::(empty|zeros|to|_to_copy|contiguous|clone)$"),
    ("element-wise (eager)", r"elementwise|vectorized|reduce_kernel|aten::"),
)


def category(name: str) -> str:
    lowered = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, lowered):
            return label
    return "other"


def device_kernels(events) -> list[tuple[str, float, float]]:
    """(name, start µs, end µs) of each kernel the device ran. A record_function range (mmbert::loss, the optimizer's
    step) also comes back as a CUDA event, spanning its kernels and the gaps between them: counted as busy, it would
    hide the host waits that wall − busy time is there to show, and count its kernels twice."""
    return [(e.name, e.time_range.start, e.time_range.end) for e in events
            if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]


def profile_steps(step, batch, device: torch.device, steps: int = 2, top: int = 15) -> dict:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    sync()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step(batch)
        sync()
        wall_s = time.perf_counter() - start
    events = prof.events()
    if device.type == "cuda":
        timed = device_kernels(events)
        loss_us = sum(k.duration for e in events if e.kernels and _inside(e, LOSS_RANGE) for k in e.kernels)
        busy_us = _union_us([(s, t) for _, s, t in timed])
    else:  # operators' self time: nested operators are not counted twice
        timed = [(e.name, 0.0, e.self_cpu_time_total) for e in events
                 if e.device_type == DeviceType.CPU and e.name != LOSS_RANGE and not e.name.startswith("## ")]
        loss_us = sum(e.self_cpu_time_total for e in events
                      if e.device_type == DeviceType.CPU and _inside(e, LOSS_RANGE))
        busy_us = None
    per_kernel: dict[str, list[float]] = {}
    for name, s, t in timed:
        per_kernel.setdefault(name, []).append(t - s)
    by_category: dict[str, float] = {}
    for name, durations in per_kernel.items():
        by_category[category(name)] = by_category.get(category(name), 0.0) + sum(durations)
    total_us = sum(by_category.values())
    ms = 1e-3 / steps
    return {
        "steps": steps,
        "wall_ms_per_step": round(1000 * wall_s / steps, 2),
        "device_busy_ms_per_step": None if busy_us is None else round(busy_us * ms, 2),
        "kernel_ms_per_step": round(total_us * ms, 2),
        "loss_ms_per_step": round(loss_us * ms, 2) if loss_us else None,  # None: no `mmbert::loss` range ran
        "by_category_ms_per_step": {k: round(v * ms, 2) for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])},
        "top_kernels": [
            {"name": name[:160], "category": category(name), "calls_per_step": len(d) / steps,
             "ms_per_step": round(sum(d) * ms, 3)}
            for name, d in sorted(per_kernel.items(), key=lambda kv: -sum(kv[1]))[:top]
        ],
    }


def _inside(event, range_name: str) -> bool:
    parent = event
    while parent is not None:
        if parent.name == range_name:
            return True
        parent = parent.cpu_parent
    return False


def _union_us(intervals: list[tuple[float, float]]) -> float:
    busy, end = 0.0, float("-inf")
    for s, t in sorted(intervals):
        if s > end:
            busy, end = busy + (t - s), t
        elif t > end:
            busy, end = busy + (t - end), t
    return busy


def markdown(profile: dict, label: str) -> str:
    busy = profile["device_busy_ms_per_step"]
    lines = [f"\nProfile, {label}: {profile['wall_ms_per_step']} ms per step (profiled, {profile['steps']} steps)"
             + ("" if busy is None else f", device busy {busy} ms")
             + ("" if profile["loss_ms_per_step"] is None else f", loss {profile['loss_ms_per_step']} ms") + "; "
             + ", ".join(f"{k} {v} ms" for k, v in profile["by_category_ms_per_step"].items())]
    for k in profile["top_kernels"][:8]:
        lines.append(f"    {k['ms_per_step']:8.3f} ms  x{k['calls_per_step']:<5g} [{k['category']}] {k['name'][:110]}")
    return "\n".join(lines)
