"""The PyTorch heads against a direct, loop-based evaluation of REFERENCE.md's formulas."""
import math

import pytest
import torch

from spacy_globalpointer.head import (
    EfficientGlobalPointer,
    GlobalPointer,
    count_parameters,
    rotary_position_embedding,
)


def rope_by_loop(x: torch.Tensor) -> torch.Tensor:
    n, d = x.shape
    out = torch.empty_like(x)
    for m in range(n):
        for t in range(d // 2):
            theta = m * 10000 ** (-2 * t / d)
            even, odd = x[m, 2 * t], x[m, 2 * t + 1]
            out[m, 2 * t] = even * math.cos(theta) - odd * math.sin(theta)
            out[m, 2 * t + 1] = odd * math.cos(theta) + even * math.sin(theta)
    return out


def efficient_by_loop(head, tokens, length, use_rope=True):
    """logit[c, i, j] = q'_i . k'_j / sqrt(d) + B[j, 2c] + B[i, 2c + 1], B = (W_b p + b_b) / 2."""
    p = head.projection(tokens[:length])
    q, k = p[:, 0::2], p[:, 1::2]
    if use_rope:
        q, k = rope_by_loop(q), rope_by_loop(k)
    bias = head.label_bias(p) / 2
    logits = {}
    for c in range(head.n_labels):
        for i in range(length):
            for j in range(i, length):
                logits[c, i, j] = q[i] @ k[j] / math.sqrt(head.head_size) + bias[j, 2 * c] + bias[i, 2 * c + 1]
    return logits


def original_by_loop(head, tokens, length, use_rope=True):
    """Per label, the first half of its 2d block is q, the second k."""
    d = head.head_size
    p = head.projection(tokens[:length]).reshape(length, head.n_labels, 2 * d)
    logits = {}
    for c in range(head.n_labels):
        q, k = p[:, c, :d], p[:, c, d:]
        if use_rope:
            q, k = rope_by_loop(q), rope_by_loop(k)
        for i in range(length):
            for j in range(i, length):
                logits[c, i, j] = q[i] @ k[j] / math.sqrt(d)
    return logits


REFERENCES = {EfficientGlobalPointer: efficient_by_loop, GlobalPointer: original_by_loop}


@pytest.mark.parametrize("head_class", [EfficientGlobalPointer, GlobalPointer])
@pytest.mark.parametrize("use_rope", [True, False])
@pytest.mark.parametrize("max_span_length", [None, 1, 2, 3, 9, 20])
def test_logits_match_formulas(head_class, use_rope, max_span_length):
    torch.manual_seed(0)
    width, n_labels, head_size, n = 6, 3, 8, 9
    head = head_class(width, n_labels, head_size, use_rope=use_rope).double()
    tokens = torch.randn(2, n, width, dtype=torch.float64)
    lengths = torch.tensor([n, 5])
    logits = head(tokens, lengths, max_span_length)
    band = logits.shape[-1]
    assert logits.shape == (2, n_labels, n, min(max_span_length or n, n))
    masked = torch.finfo(logits.dtype).min
    for b, length in enumerate(lengths.tolist()):
        expected = REFERENCES[head_class](head, tokens[b], length, use_rope)
        for c in range(n_labels):
            for i in range(n):
                for w in range(band):
                    if (c, i, i + w) in expected:
                        assert logits[b, c, i, w].item() == pytest.approx(expected[c, i, i + w].item(), abs=1e-9)
                    else:
                        assert logits[b, c, i, w].item() == masked


def test_rope_matches_formula_and_is_relative():
    torch.manual_seed(1)
    x = torch.randn(7, 8, dtype=torch.float64)
    assert torch.allclose(rotary_position_embedding(x), rope_by_loop(x))
    # q'_m . k'_n depends only on n - m: shifting both positions keeps the score.
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    seq_q, seq_k = q.repeat(12, 1), k.repeat(12, 1)
    rq, rk = rotary_position_embedding(seq_q), rotary_position_embedding(seq_k)
    assert torch.allclose(rq[2] @ rk[5], rq[6] @ rk[9])
    assert not torch.allclose(rq[2] @ rk[5], rq[2] @ rk[6])


@pytest.mark.parametrize("width,head_size,n_labels", [(768, 64, 100), (96, 16, 4), (384, 32, 7)])
def test_parameter_counts(width, head_size, n_labels):
    efficient = EfficientGlobalPointer(width, n_labels, head_size)
    assert count_parameters(efficient) == (
        2 * head_size * width + 4 * head_size * n_labels,
        2 * head_size + 2 * n_labels,
    )
    original = GlobalPointer(width, n_labels, head_size)
    assert count_parameters(original) == (2 * head_size * width * n_labels, 2 * head_size * n_labels)


def test_published_parameter_counts():
    """The Efficient GlobalPointer blog's head sizes for D=768, d=64 (weights only)."""
    assert count_parameters(EfficientGlobalPointer(768, 3, 64))[0] == 99_072
    assert count_parameters(EfficientGlobalPointer(768, 10, 64))[0] == 100_864
    assert count_parameters(EfficientGlobalPointer(768, 9, 64))[0] == 100_608
    assert count_parameters(GlobalPointer(768, 10, 64))[0] == 983_040


@pytest.mark.parametrize("head_class", [EfficientGlobalPointer, GlobalPointer])
def test_band_limited_equals_full_within_limit(head_class):
    torch.manual_seed(2)
    head = head_class(16, 4, 8)
    tokens = torch.randn(3, 50, 16)
    lengths = torch.tensor([50, 31, 1])
    full = head(tokens, lengths, None)
    for limit in (1, 7, 16, 49):
        banded = head(tokens, lengths, limit)
        assert banded.shape[-1] == limit
        assert torch.allclose(banded, full[..., :limit], atol=1e-5)


@pytest.mark.parametrize("head_class", [EfficientGlobalPointer, GlobalPointer])
@pytest.mark.parametrize("max_span_length", [None, 3])
def test_half_precision_mask_is_finite(head_class, max_span_length):
    torch.manual_seed(5)
    head = head_class(8, 2, 4).half()
    logits = head(torch.randn(2, 9, 8).half(), torch.tensor([9, 4]), max_span_length)
    assert logits.shape == (2, 2, 9, max_span_length or 9)
    lowest = torch.finfo(torch.float16).min
    assert logits.dtype == torch.float16
    assert torch.isfinite(logits).all()
    # The second doc has 4 tokens: rows past it, and cells of its last rows that end past it, are masked.
    assert (logits[1, :, 4:] == lowest).all()
    assert (logits[1, :, 2, 2:] == lowest).all()
    assert (logits[1, :, :2, :3] > lowest).all()
    assert (torch.sigmoid(logits.float())[1, :, 4:] == 0).all()


def test_gradients_reach_inputs_only_through_valid_cells():
    torch.manual_seed(4)
    head = EfficientGlobalPointer(8, 2, 4)
    tokens = torch.randn(1, 6, 8, requires_grad=True)
    logits = head(tokens, torch.tensor([3]))
    valid = logits > torch.finfo(logits.dtype).min
    (logits * valid).sum().backward()
    assert tokens.grad[0, :3].abs().sum() > 0
    assert (tokens.grad[0, 3:] == 0).all()


@pytest.mark.parametrize("probability", [0.01, 0.3])
def test_initial_probability_shifts_every_span_logit(probability):
    tokens = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([12, 7])
    torch.manual_seed(0)
    default = EfficientGlobalPointer(16, 3, head_size=8)
    torch.manual_seed(0)
    prior = EfficientGlobalPointer(16, 3, head_size=8, initial_probability=probability)
    # Same draws for every weight; only the label biases differ (by the default's random bias).
    prior.label_bias.bias.data.add_(default.label_bias.bias.data)
    valid = default(tokens, lengths) > torch.finfo(torch.float32).min
    shift = (prior(tokens, lengths) - default(tokens, lengths))[valid]
    expected = math.log(probability / (1 - probability))
    assert torch.allclose(shift, torch.full_like(shift, expected), atol=1e-5)


def test_initial_probability_makes_an_untrained_head_predict_few_spans():
    torch.manual_seed(0)
    tokens = torch.randn(1, 60, 96)
    lengths = torch.tensor([60])
    for probability, low, high in ((None, 0.2, 0.8), (0.01, 0.0, 0.05)):
        head = EfficientGlobalPointer(96, 9, initial_probability=probability)
        logits = head(tokens, lengths)
        valid = logits > torch.finfo(torch.float32).min
        positive_rate = (logits[valid] > 0).float().mean().item()
        assert low <= positive_rate <= high, (probability, positive_rate)


@pytest.mark.parametrize("probability", [0.0, 1.0, -0.5])
def test_initial_probability_must_be_a_probability(probability):
    with pytest.raises(ValueError, match="initial_probability"):
        EfficientGlobalPointer(8, 2, head_size=4, initial_probability=probability)
