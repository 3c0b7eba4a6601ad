"""Every attention path equals the naive reference (document mask + sliding window), gradients included."""

from __future__ import annotations

import pytest
import torch

from training import attention
from training.batches import document_ids_from_lengths
from training.model import MaskedLM, ModelConfig

WINDOW_HALF = 8


def _inputs(device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Two rows, T=160: documents longer and shorter than the window, and a padded tail in the second row.
    document_ids = document_ids_from_lengths([[5, 60, 95], [100, 37, 1]], 160).to(device)
    q, k, v = (torch.randn(2, 3, 160, 16, generator=g).to(device=device, dtype=dtype) for _ in range(3))
    return q, k, v, document_ids


def _available(path: str, device: str) -> str | None:
    """Why `path` cannot run here (None when it can)."""
    if path == "flex" and not attention.flex_available():
        return "FlexAttention needs PyTorch >= 2.5"
    if path == "flash" and not attention.flash_available():
        return "flash-attn varlen needs CUDA and the flash_attn package"
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    return None


def test_mask_rule_is_document_and_inclusive_window():
    document_ids = torch.tensor([[0, 0, 0, 0, 0, 1, 1, -1]])
    mask = attention.allowed(document_ids, window_half=2)[0, 0]
    assert mask[0, 2] and not mask[0, 3]  # |i - j| <= 2: two tokens on each side, inclusive
    assert not mask[4, 5]  # neighbours across a document boundary
    assert mask[5, 6] and not mask[6, 7]  # padding sees only padding, real tokens never see it
    assert mask[7, 7]
    assert attention.allowed(document_ids, None)[0, 0, 0, 4]  # global layers: the whole document


@pytest.mark.parametrize("window_half", [None, WINDOW_HALF])
@pytest.mark.parametrize("path", ["sdpa", "flex"])
def test_cpu_paths_match_naive_forward(path, window_half):
    if reason := _available(path, "cpu"):
        pytest.skip(reason)
    q, k, v, document_ids = _inputs()
    expected = attention.naive_attention(q, k, v, document_ids, window_half)
    masks = attention.build_masks(document_ids, WINDOW_HALF, path)["global" if window_half is None else "local"]
    got = attention.attend(q, k, v, masks)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _grads(fn, q, k, v):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v)
    (out.float() * torch.linspace(-1, 1, out.shape[-1], device=out.device)).sum().backward()
    return out.detach(), (q.grad, k.grad, v.grad)


@pytest.mark.parametrize("window_half", [None, WINDOW_HALF])
def test_sdpa_gradients_match_naive(window_half):
    q, k, v, document_ids = _inputs()
    kind = "global" if window_half is None else "local"
    masks = attention.build_masks(document_ids, WINDOW_HALF, "sdpa")[kind]
    out, grads = _grads(lambda q, k, v: attention.attend(q, k, v, masks), q, k, v)
    ref_out, ref_grads = _grads(lambda q, k, v: attention.naive_attention(q, k, v, document_ids, window_half), q, k, v)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("window_half", [None, WINDOW_HALF])
@pytest.mark.parametrize("path", ["sdpa", "flex", "flash"])
def test_gpu_paths_match_naive_with_gradients(path, window_half):
    if reason := _available(path, "cuda"):
        pytest.skip(reason)
    q, k, v, document_ids = _inputs("cuda", torch.bfloat16)
    kind = "global" if window_half is None else "local"
    masks = attention.build_masks(document_ids, WINDOW_HALF, path)[kind]
    out, grads = _grads(lambda q, k, v: attention.attend(q, k, v, masks), q, k, v)
    ref_out, ref_grads = _grads(lambda q, k, v: attention.naive_attention(q, k, v, document_ids, window_half), q, k, v)
    torch.testing.assert_close(out.float(), ref_out.float(), atol=2e-2, rtol=2e-2)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got.float(), expected.float(), atol=5e-2, rtol=5e-2)


def test_model_paths_agree_and_window_matters():
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", vocab_size=97, local_window=2 * WINDOW_HALF)
    model = MaskedLM(config).eval()
    input_ids = torch.randint(5, 97, (2, 160))
    document_ids = document_ids_from_lengths([[5, 60, 95], [100, 37, 1]], 160)
    with torch.no_grad():
        reference = model.encode(input_ids, document_ids, attention="naive")
        for path in ("sdpa", "flex"):
            if _available(path, "cpu"):
                continue
            torch.testing.assert_close(model.encode(input_ids, document_ids, attention=path), reference,
                                       atol=1e-5, rtol=1e-5)
        wide = MaskedLM(ModelConfig.named("tiny", vocab_size=97, local_window=512)).eval()
        wide.load_state_dict(model.state_dict())
        # With a window wider than the documents, local layers see more: the output must change.
        assert (wide.encode(input_ids, document_ids, attention="naive") - reference).abs().max() > 1e-3


def test_unknown_or_unavailable_path_is_refused():
    with pytest.raises(ValueError, match="unknown attention path"):
        attention.resolve_path("fast", torch.device("cpu"))
    with pytest.raises(RuntimeError, match="flash"):
        attention.resolve_path("flash", torch.device("cpu"))
    assert attention.resolve_path("auto", torch.device("cpu")) == "sdpa"


@pytest.mark.gpu
def test_compiled_model_on_flex_matches_naive_with_gradients():
    """The GPU fast path as the trainer and the benchmark run it: blocks compiled, FlexAttention, bf16 autocast."""
    if reason := _available("flex", "cuda"):
        pytest.skip(reason)
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", vocab_size=1000, local_window=2 * WINDOW_HALF)
    model = MaskedLM(config).cuda()
    input_ids = torch.randint(5, 1000, (2, 256), device="cuda")
    document_ids = document_ids_from_lengths([[5, 60, 95, 96], [100, 37, 119]], 256).cuda()
    labels = torch.where(torch.rand(2, 256, device="cuda") < 0.3, input_ids, -100)

    def loss_and_grads(path):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids, document_ids, labels, attention=path, max_predictions=256).loss
        loss.backward()
        return loss.detach().float(), torch.cat([p.grad.flatten() for p in model.parameters()])

    ref_loss, ref_grads = loss_and_grads("naive")
    for block in model.layers:
        block.compile(dynamic=False)
    loss, grads = loss_and_grads("flex")
    torch.testing.assert_close(loss, ref_loss, atol=2e-2, rtol=2e-3)
    assert (grads - ref_grads).norm() / ref_grads.norm() < 5e-2


@pytest.mark.slow
def test_isolated_flex_inside_a_compiled_layer_matches_naive(monkeypatch):
    """The fallback the benchmark switches to: FlexAttention compiled apart from the block around it (forward only:
    FlexAttention has no CPU backward)."""
    from training.model import Attention, Rotary, positions_from_document_ids

    monkeypatch.setattr(attention, "ISOLATE_FLEX", True)
    torch.manual_seed(0)
    config = ModelConfig.named("tiny", vocab_size=97, local_window=2 * WINDOW_HALF)
    layer = Attention(config).eval()
    document_ids = document_ids_from_lengths([[5, 60, 95], [100, 37, 1]], 160)
    x = torch.randn(2, 160, config.hidden_size)
    rope = Rotary(config.head_dim, 10_000.0)(positions_from_document_ids(document_ids))
    torch._dynamo.reset()
    compiled = torch.compile(layer, dynamic=False)
    with torch.no_grad():
        for kind in ("global", "local"):
            expected = layer(x, rope, attention.build_masks(document_ids, WINDOW_HALF, "naive")[kind])
            got = compiled(x, rope, attention.build_masks(document_ids, WINDOW_HALF, "flex")[kind])
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
