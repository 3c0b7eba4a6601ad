"""The model's shapes, packing, initialisation and the sparse, chunked MLM loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.batches import document_ids_from_lengths, random_packed_batch, rows_to_batch
from training.loss import gather_predictions, linear_cross_entropy
from training.model import MaskedLM, ModelConfig, positions_from_document_ids


def _tiny(**overrides) -> MaskedLM:
    torch.manual_seed(0)
    return MaskedLM(ModelConfig.named("tiny", vocab_size=211, local_window=16, **overrides))


@pytest.mark.parametrize(("name", "millions"), [("mmbert-small", 140), ("mmbert-base", 307)])
def test_named_configs_have_mmberts_sizes(name, millions):
    config = ModelConfig.named(name)
    with torch.device("meta"):
        params = MaskedLM(config).num_parameters()
    assert abs(params / 1e6 - millions) < 2, params  # mmBERT's reported sizes (embeddings included)
    assert [config.is_global(i) for i in range(7)] == [True, False, False, True, False, False, True]
    assert config.window_half == 64


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="hidden_sise"):
        ModelConfig.named("tiny", hidden_sise=3)
    with pytest.raises(ValueError, match="num_heads"):
        ModelConfig.named("tiny", num_heads=5)
    with pytest.raises(ValueError, match="unknown model"):
        ModelConfig.named("mmbert-huge")
    assert ModelConfig.from_dict(ModelConfig.named("tiny").to_dict()) == ModelConfig.named("tiny")
    # recipes are YAML: a string, a fraction where a count belongs, a non-finite or out-of-range value
    for overrides, message in (({"initializer_range": "abc"}, "initializer_range must be a number"),
                               ({"hidden_size": 64.0}, "hidden_size must be an integer"),
                               ({"norm_eps": -1}, "norm_eps must be positive"),  # trained to nan before
                               ({"global_rope_theta": float("nan")}, "global_rope_theta must be finite"),
                               ({"attention_out_dropout": 1.5}, r"attention_out_dropout must be in \[0, 1\)"),
                               ({"mask_token_id": 50_000}, "mask_token_id 50000 is not an id")):
        with pytest.raises(ValueError, match=message):
            ModelConfig.named("tiny", vocab_size=4096, **overrides)


def test_document_ids_and_positions_restart_per_document():
    document_ids = document_ids_from_lengths([[3, 2], [5]], 6)
    assert document_ids.tolist() == [[0, 0, 0, 1, 1, -1], [0, 0, 0, 0, 0, -1]]
    assert positions_from_document_ids(document_ids).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 0]]
    with pytest.raises(ValueError, match="do not fit"):
        document_ids_from_lengths([[4, 3]], 6)
    input_ids, doc = rows_to_batch([{"input_ids": [2, 7, 1, 2, 1, 0], "document_lengths": [3, 2]}])
    assert input_ids.shape == (1, 6) and doc.tolist() == [[0, 0, 0, 1, 1, -1]]


def test_packed_documents_equal_documents_alone():
    model = _tiny().eval()
    lengths = [7, 40, 21]  # one document longer than the 16-token window
    input_ids = torch.randint(5, 211, (1, 80))
    document_ids = document_ids_from_lengths([lengths], 80)
    with torch.no_grad():
        packed = model.encode(input_ids, document_ids, attention="sdpa")[0]
        start = 0
        for n in lengths:
            alone = model.encode(input_ids[:, start : start + n], torch.zeros(1, n, dtype=torch.long), "sdpa")[0]
            torch.testing.assert_close(packed[start : start + n], alone, atol=1e-5, rtol=1e-5)
            start += n


def test_initialisation_is_modernberts_truncated_normal():
    model = _tiny()
    std_out = 0.02 / (2 * model.config.num_layers) ** 0.5
    for weight, std in ((model.embeddings.tok_embeddings.weight, 0.02), (model.layers[1].attn.Wqkv.weight, 0.02),
                        (model.layers[1].mlp.Wo.weight, std_out),
                        (model.head.dense.weight, 0.02)):  # ModernBERT's FlexBertPredictionHead: an input module
        assert weight.abs().max() <= 2 * std + 1e-7  # truncated at two standard deviations
        assert 0.6 * std < weight.std() < 1.1 * std
    assert torch.all(model.decoder_bias == 0)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters() if name != "decoder_bias")
    assert isinstance(model.layers[0].attn_norm, torch.nn.Identity)


def test_forward_logits_loss_and_rope_switch():
    model = _tiny()
    g = torch.Generator().manual_seed(1)
    input_ids, document_ids = random_packed_batch(2, 64, 211, g, mean_document_length=20)
    labels = torch.full_like(input_ids, -100)
    labels[:, 5:40:3] = input_ids[:, 5:40:3]
    out = model(input_ids, document_ids, labels, attention="sdpa")
    logits = model(input_ids, document_ids, attention="sdpa").logits
    assert logits.shape == (2, 64, 211) and out.logits is None and out.num_predicted.item() == 24
    expected = F.cross_entropy(logits.reshape(-1, 211), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
    model.set_rope_theta(160_000, 160_000)
    switched = model(input_ids, document_ids, attention="sdpa").logits
    assert not torch.allclose(switched, logits)
    fresh = MaskedLM(ModelConfig.named("tiny", vocab_size=211, local_window=16, global_rope_theta=160_000,
                                       local_rope_theta=160_000))
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(input_ids, document_ids, attention="sdpa").logits, switched)


@pytest.mark.parametrize("capacity", [None, 50])
def test_chunked_loss_equals_plain_cross_entropy_with_gradients(capacity):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 20, 16, generator=g)
    labels = torch.where(torch.rand(3, 20, generator=g) < 0.5, torch.randint(0, 300, (3, 20), generator=g), -100)
    weight, bias = torch.randn(300, 16, generator=g), torch.randn(300, generator=g)

    def run(impl, chunk):
        h, w, b = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))
        x, y = gather_predictions(h, labels, capacity)
        loss, count = linear_cross_entropy(x * 1.5, w, b, y, chunk_size=chunk, impl=impl)
        loss.backward()
        return loss.detach(), count, h.grad, w.grad, b.grad

    plain = run("plain", 0)
    chunked = run("chunked", 7)  # chunks that do not divide the number of rows
    assert chunked[1].item() == (labels != -100).sum().item()
    for got, expected in zip(chunked, plain):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    expected = F.cross_entropy(F.linear(hidden * 1.5, weight, bias).reshape(-1, 300), labels.reshape(-1))
    torch.testing.assert_close(chunked[0], expected, atol=1e-5, rtol=1e-5)


def test_loss_with_nothing_predicted_is_zero_not_nan():
    model = _tiny()
    input_ids = torch.randint(5, 211, (1, 10))
    out = model(input_ids, torch.zeros_like(input_ids), torch.full_like(input_ids, -100), attention="sdpa")
    assert out.loss.item() == 0.0 and out.num_predicted.item() == 0
    out.loss.backward()
    assert torch.all(model.decoder_bias.grad == 0)


def test_capacity_gathers_labelled_positions_first():
    hidden = torch.arange(12, dtype=torch.float32).reshape(1, 6, 2)
    labels = torch.tensor([[-100, 5, -100, 7, -100, -100]])
    x, y = gather_predictions(hidden, labels, capacity=4)
    assert y.tolist() == [5, 7, -100, -100]
    assert x[:2].tolist() == [[2.0, 3.0], [6.0, 7.0]]


def test_chunked_loss_without_gradients_equals_plain():
    g = torch.Generator().manual_seed(2)
    x, weight = torch.randn(40, 8, generator=g), torch.randn(100, 8, generator=g)
    targets = torch.randint(0, 100, (40,), generator=g)
    targets[::4] = -100
    with torch.no_grad():
        chunked, count = linear_cross_entropy(x, weight, None, targets, chunk_size=9)
        plain, _ = linear_cross_entropy(x, weight, None, targets, impl="plain")
    torch.testing.assert_close(chunked, plain)
    assert count.item() == 30


def assert_loss_matches_plain_under_bf16_autocast(impl, device, rows, hidden_size, vocab, chunk_size,
                                                  fp32_grads=False):
    """`impl` against the plain loss, both under bf16 autocast on `device`: loss and gradients within 2 % (L2);
    with `fp32_grads`, also that the gradients come back in fp32 for the fp32 parameters and input."""
    g = torch.Generator(device=device).manual_seed(3)
    hidden = torch.randn(rows, hidden_size, device=device, generator=g)
    weight = (0.05 * torch.randn(vocab, hidden_size, device=device, generator=g)).requires_grad_(True)
    bias = torch.zeros(vocab, device=device, requires_grad=True)
    targets = torch.randint(0, vocab, (rows,), device=device, generator=g)
    targets[::3] = -100

    def run(kind):
        x = hidden.clone().requires_grad_(True)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss, _ = linear_cross_entropy(x, weight, bias, targets, chunk_size=chunk_size, impl=kind)
        grads = torch.autograd.grad(loss, (x, weight, bias))
        assert not fp32_grads or all(grad.dtype == torch.float32 for grad in grads)
        return [loss.float(), *(grad.float() for grad in grads)]

    for got, expected in zip(run(impl), run("plain")):
        assert (got - expected).norm() <= 2e-2 * expected.norm() + 1e-6


def test_chunked_loss_under_bf16_autocast_matches_plain_on_cpu():
    """The GPU's dtype path on the CPU: bf16 matmuls, the weight gradient accumulated in bf16 over chunks, fp32
    gradients handed back for fp32 parameters."""
    assert_loss_matches_plain_under_bf16_autocast("chunked", "cpu", rows=600, hidden_size=32, vocab=3000,
                                                  chunk_size=128, fp32_grads=True)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["chunked", "liger"])
def test_gpu_loss_matches_plain_under_bf16_autocast(impl):
    from training.loss import liger_available

    if not torch.cuda.is_available() or (impl == "liger" and not liger_available()):
        pytest.skip("needs CUDA" + (" and liger-kernel" if impl == "liger" else ""))
    assert_loss_matches_plain_under_bf16_autocast(impl, "cuda", rows=5000, hidden_size=64, vocab=50_000,
                                                  chunk_size=2048)


@pytest.mark.slow
def test_compiled_chunk_kernel_equals_eager():
    """The GPU runs chunk_loss_and_grad compiled, where it takes its fused (one-hot as comparison) branch."""
    from training.loss import chunk_loss_and_grad

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(37, 500, generator=g)
    targets = torch.randint(0, 500, (37,), generator=g)
    targets[::5] = -100
    eager = chunk_loss_and_grad(logits.clone(), targets)
    compiled = torch.compile(chunk_loss_and_grad, dynamic=False)(logits.clone(), targets)
    for got, expected in zip(compiled, eager):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_rotary_as_a_roll_is_exactly_the_rotate_half_form():
    """apply_rotary rolls x against a sign-folded sin table (so a compiled backward needs no concatenation); the
    textbook form is x·cos + cat(−x₂, x₁)·sin. They must agree bit for bit, in fp32 and bf16."""
    from training.model import Rotary, apply_rotary

    generator = torch.Generator().manual_seed(0)
    positions = torch.randint(0, 8192, (2, 16), generator=generator)
    cos, signed_sin = Rotary(64, 160_000.0)(positions)
    freqs = positions[..., None].float() * Rotary(64, 160_000.0).inv_freq
    sin = torch.cat((freqs, freqs), dim=-1)[:, None].sin()
    assert cos.dtype == signed_sin.dtype == torch.float32
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 4, 16, 64, generator=generator).to(dtype)
        x1, x2 = x.float().chunk(2, dim=-1)
        textbook = (x.float() * cos + torch.cat((-x2, x1), dim=-1) * sin).to(dtype)
        assert torch.equal(apply_rotary(x, cos, signed_sin), textbook)
