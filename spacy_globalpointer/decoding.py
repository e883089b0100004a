"""Turn banded span logits into spans, and pick a flat, non-overlapping subset."""
from typing import NamedTuple

import numpy
from thinc.api import get_array_module
from thinc.types import Floats1d, Floats3d, Ints1d

from .layout import cell_end, valid_cells

OVERLAP_STRATEGIES = ("score", "length")


class DecodedSpans(NamedTuple):
    """Parallel arrays, sorted by (start, end, label); ``ends`` are exclusive."""

    labels: Ints1d
    starts: Ints1d
    ends: Ints1d
    scores: Floats1d


def probability_to_logit(probabilities) -> Floats1d:
    """Map thresholds in [0, 1] to logits (0 -> -inf, 1 -> +inf)."""
    probabilities = numpy.asarray(probabilities, dtype="float64")
    if ((probabilities < 0) | (probabilities > 1)).any():
        raise ValueError(f"Thresholds must be probabilities in [0, 1], got {probabilities}")
    with numpy.errstate(divide="ignore"):
        return numpy.log(probabilities) - numpy.log1p(-probabilities)


def decode_spans(logits: Floats3d, threshold_logits: Floats1d) -> DecodedSpans:
    """All cells of ``(labels, n, band)`` logits above their label's threshold."""
    xp = get_array_module(logits)
    n_labels, n_tokens, band = logits.shape
    thresholds = xp.asarray(threshold_logits, dtype="float32")[:, None, None]
    selected = (logits.astype("float32") > thresholds) & valid_cells(n_tokens, band, xp)[None]
    cells = xp.nonzero(selected)
    labels, starts, offsets = (to_numpy(column).astype("int64") for column in cells)
    scores = sigmoid(to_numpy(logits[cells]).astype("float32"))
    ends = cell_end(starts, offsets)
    order = numpy.lexsort((labels, ends, starts))
    return DecodedSpans(labels[order], starts[order], ends[order], scores[order])


def drop_spans_with_edges_on(spans: DecodedSpans, blocked_tokens) -> DecodedSpans:
    """Remove spans whose first or last token is flagged (e.g. whitespace) in ``blocked_tokens``."""
    if not len(spans.starts):
        return spans
    blocked_tokens = numpy.asarray(blocked_tokens, dtype=bool)
    keep = ~(blocked_tokens[spans.starts] | blocked_tokens[spans.ends - 1])
    return DecodedSpans(*(column[keep] for column in spans))


def sigmoid(x):
    return 1.0 / (1.0 + numpy.exp(-x))


def to_numpy(array):
    return array.get() if hasattr(array, "get") else numpy.asarray(array)


def select_non_overlapping(spans: DecodedSpans, n_tokens: int, strategy: str = "score") -> Ints1d:
    """Indices of a greedy non-overlapping subset, in document order.

    ``score``: highest probability first (longer first on ties);
    ``length``: longest first (higher probability first on ties).
    """
    lengths = spans.ends - spans.starts
    if strategy == "score":
        priority = numpy.lexsort((spans.starts, -lengths, -spans.scores))
    elif strategy == "length":
        priority = numpy.lexsort((spans.starts, -spans.scores, -lengths))
    else:
        raise ValueError(f"Unknown overlap strategy {strategy!r}: use one of {OVERLAP_STRATEGIES}")
    taken = numpy.zeros(n_tokens, dtype=bool)
    chosen = []
    for index in priority:
        start, end = spans.starts[index], spans.ends[index]
        if not taken[start:end].any():
            taken[start:end] = True
            chosen.append(index)
    return numpy.sort(numpy.asarray(chosen, dtype="int64"))
