"""Decoding invariants on random banded logits (hypothesis)."""
import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spacy_globalpointer.decoding import decode_spans, probability_to_logit, select_non_overlapping
from spacy_globalpointer.layout import valid_cells


@st.composite
def banded_logits(draw):
    n_labels = draw(st.integers(1, 4))
    n_tokens = draw(st.integers(0, 12))
    band = draw(st.integers(1, max(n_tokens, 1))) if n_tokens else 0
    logits = draw(arrays("float32", (n_labels, n_tokens, band), elements=st.floats(-6, 6, width=32)))
    # Cells past the end of the doc hold the head's mask value.
    logits[:, ~valid_cells(n_tokens, band)] = numpy.finfo("float32").min
    thresholds = draw(st.lists(st.floats(0.01, 0.99), min_size=n_labels, max_size=n_labels))
    return logits, thresholds


@settings(max_examples=200, deadline=None)
@given(banded_logits(), st.sampled_from(["score", "length"]))
def test_decoding_invariants(case, strategy):
    logits, thresholds = case
    n_labels, n_tokens, band = logits.shape
    spans = decode_spans(logits, probability_to_logit(thresholds))
    keys = list(zip(spans.starts.tolist(), spans.ends.tolist(), spans.labels.tolist()))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # Exactly the cells above their label's threshold, each within the band and the doc.
    expected = {
        (i, i + w + 1, c)
        for c in range(n_labels) for i in range(n_tokens) for w in range(band)
        if i + w < n_tokens and logits[c, i, w] > numpy.float32(probability_to_logit(thresholds[c]))
    }
    assert set(keys) == expected
    assert all(0 <= s < e <= n_tokens and e - s <= band for s, e, _ in keys)
    assert ((spans.scores >= 0) & (spans.scores <= 1)).all()
    assert all(score > thresholds[c] - 1e-6 for score, c in zip(spans.scores.tolist(), spans.labels.tolist()))

    chosen = select_non_overlapping(spans, n_tokens, strategy)
    assert chosen.tolist() == sorted(set(chosen.tolist()))
    taken = numpy.zeros(n_tokens, dtype=int)
    for index in chosen:
        taken[spans.starts[index] : spans.ends[index]] += 1
    assert taken.max(initial=0) <= 1
    # Maximal: every span left out overlaps a chosen one.
    for index in set(range(len(keys))) - set(chosen.tolist()):
        assert taken[spans.starts[index] : spans.ends[index]].any()


def test_probability_to_logit_edges():
    logits = probability_to_logit([0.0, 0.5, 1.0])
    assert logits[0] == -numpy.inf and logits[1] == 0.0 and logits[2] == numpy.inf
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        probability_to_logit([1.2])
