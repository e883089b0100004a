"""The sparse multi-label categorical cross-entropy against a dense, direct computation."""
import numpy
import pytest
import torch

from spacy_globalpointer.loss import globalpointer_loss, rank_within_label


def dense_loss(logits, positives):
    """REFERENCE.md: mean over docs x labels of log(1 + sum_N e^s) + log(1 + sum_P e^-s)."""
    total = 0.0
    for doc_logits, doc_positives in zip(logits, positives):
        n_labels, n, band = doc_logits.shape
        gold = {tuple(row) for row in doc_positives.tolist()}
        for c in range(n_labels):
            neg, pos = [], []
            for i in range(n):
                for w in range(band):
                    if i + w >= n:
                        continue
                    (pos if (c, i, w) in gold else neg).append(doc_logits[c, i, w])
            total = total + torch.log1p(torch.exp(torch.stack(neg)).sum() if neg else torch.tensor(0.0, dtype=torch.float64))
            total = total + torch.log1p(torch.exp(-torch.stack(pos)).sum() if pos else torch.tensor(0.0, dtype=torch.float64))
    return total / (len(logits) * logits[0].shape[0])


def random_case(seed, n_labels=3, lengths=(7, 4, 0, 1), band=None, scale=3.0):
    rng = numpy.random.default_rng(seed)
    logits, positives = [], []
    for n in lengths:
        width = min(band or n, n)
        doc_logits = (rng.normal(size=(n_labels, n, width)) * scale).astype("float64")
        cells = [(c, i, w) for c in range(n_labels) for i in range(n) for w in range(width) if i + w < n]
        chosen = rng.choice(len(cells), size=min(len(cells), int(rng.integers(0, 6))), replace=False) if cells else []
        rows = numpy.asarray([cells[k] for k in chosen], dtype="int64").reshape(-1, 3)
        logits.append(doc_logits)
        positives.append(numpy.unique(rows, axis=0))
    return logits, positives


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("band", [None, 2])
def test_loss_and_gradient_match_direct_computation(seed, band):
    logits, positives = random_case(seed, band=band)
    loss, gradients = globalpointer_loss(logits, positives)
    torch_logits = [torch.tensor(x, requires_grad=True) for x in logits]
    expected = dense_loss(torch_logits, positives)
    expected.backward()
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    for got, ref, doc_logits in zip(gradients, torch_logits, logits):
        assert got.shape == doc_logits.shape
        expected_grad = numpy.zeros_like(doc_logits) if ref.grad is None else ref.grad.numpy()
        numpy.testing.assert_allclose(got, expected_grad, rtol=1e-4, atol=1e-7)


def test_loss_is_stable_for_extreme_logits():
    logits = [numpy.asarray([[[80.0, -90.0], [200.0, 0.0]]], dtype="float32")]
    positives = [numpy.asarray([[0, 0, 1]])]
    loss, (gradient,) = globalpointer_loss(logits, positives)
    assert numpy.isfinite(loss) and numpy.isfinite(gradient).all()
    # Dominated by the negative at 200 and the missed positive at -90.
    assert loss == pytest.approx(200.0 + 90.0, rel=1e-3)
    assert gradient[0, 1, 0] == pytest.approx(1.0, abs=1e-6)
    assert gradient[0, 0, 1] == pytest.approx(-1.0, abs=1e-6)
    assert gradient[0, 1, 1] == 0.0  # past the end of the doc: masked


def test_masked_cells_get_no_gradient_and_no_loss():
    base = numpy.zeros((1, 3, 3), dtype="float32")
    masked = base.copy()
    masked[0, 2, 1:] = 1e30
    masked[0, 1, 2] = -1e30
    for logits in (base, masked):
        loss, (gradient,) = globalpointer_loss([logits], [numpy.zeros((0, 3), dtype="int64")])
        assert loss == pytest.approx(numpy.log(1 + 6))
        assert (gradient[0, 2, 1:] == 0).all() and gradient[0, 1, 2] == 0


def test_rank_within_label():
    assert rank_within_label([2, 0, 2, 1, 0, 2]).tolist() == [0, 0, 1, 0, 1, 2]
    assert rank_within_label([]).tolist() == []
