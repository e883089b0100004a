"""The banded layout: band widths, valid cells, span <-> cell conversion."""
import numpy
import pytest
import torch

from spacy_globalpointer.head import EfficientGlobalPointer
from spacy_globalpointer.layout import band_width, cell_end, cell_offset, valid_cells


@pytest.mark.parametrize(
    "n_tokens,max_span_length,expected",
    [(10, None, 10), (10, 3, 3), (10, 10, 10), (3, 10, 3), (1, None, 1), (0, None, 1), (0, 5, 1)],
)
def test_band_width(n_tokens, max_span_length, expected):
    assert band_width(n_tokens, max_span_length) == expected


@pytest.mark.parametrize("n_tokens", [0, 1, 2, 7, 30])
@pytest.mark.parametrize("max_span_length", [None, 1, 2, 5, 40])
def test_valid_cells_are_exactly_the_spans_up_to_the_limit(n_tokens, max_span_length):
    band = band_width(n_tokens, max_span_length)
    valid = valid_cells(n_tokens, band)
    assert valid.shape == (n_tokens, band)
    limit = max_span_length or n_tokens
    spans = {(start, end) for start in range(n_tokens) for end in range(start + 1, n_tokens + 1) if end - start <= limit}
    cells = {(start, cell_end(start, offset)) for start, offset in zip(*numpy.nonzero(valid))}
    assert cells == spans
    assert valid.sum() == len(spans)


def test_span_cell_round_trip():
    n_tokens = 12
    for start in range(n_tokens):
        for end in range(start + 1, n_tokens + 1):
            offset = cell_offset(start, end)
            assert 0 <= offset < n_tokens
            assert cell_end(start, offset) == end
    starts, offsets = numpy.nonzero(valid_cells(n_tokens, 4))
    ends = cell_end(starts, offsets)
    assert (cell_offset(starts, ends) == offsets).all()
    assert ((ends - starts >= 1) & (ends - starts <= 4) & (ends <= n_tokens)).all()


def test_the_head_masks_exactly_the_invalid_cells():
    head = EfficientGlobalPointer(8, 2, head_size=4)
    lengths = [9, 4, 1]
    for max_span_length in (None, 3):
        logits = head(torch.randn(3, 9, 8), torch.tensor(lengths), max_span_length)
        band = band_width(9, max_span_length)
        assert logits.shape[-1] == band
        masked = (logits == torch.finfo(logits.dtype).min).all(dim=1).numpy()
        for doc_masked, n_tokens in zip(masked, lengths):
            expected_valid = numpy.zeros((9, band), dtype=bool)
            expected_valid[:n_tokens] = valid_cells(n_tokens, band)
            assert (~doc_masked == expected_valid).all()
