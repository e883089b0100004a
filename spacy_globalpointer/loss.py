"""Multi-label categorical cross-entropy over banded span logits.

For each (doc, label), with positive cells P and the other valid cells N:
``L = log(1 + sum_N exp(s)) + log(1 + sum_P exp(-s))``, averaged over
docs x labels. Gold spans come as index lists, never as dense targets.
Arrays may be numpy or cupy; the index arrays are numpy.
"""
from typing import List, Sequence, Tuple

import numpy
from thinc.api import get_array_module
from thinc.types import Floats3d, Ints2d

from .layout import valid_cells


def log1p_sum_exp(values, axis: int):
    """``log(1 + sum(exp(values)))`` along ``axis``, stable; ``-inf`` entries add nothing."""
    xp = get_array_module(values)
    top = xp.maximum(values.max(axis=axis), 0.0)
    shifted = xp.exp(values - xp.expand_dims(top, axis))
    return top + xp.log(xp.exp(-top) + shifted.sum(axis=axis))


def doc_loss(logits: Floats3d, positives: Ints2d) -> Tuple[float, Floats3d]:
    """Summed loss over the labels of one doc and its gradient.

    logits: ``(labels, n, band)``; positives: ``(P, 3)`` unique rows ``(label, start, offset)``.
    """
    xp = get_array_module(logits)
    n_labels, n_tokens, band = logits.shape
    if n_tokens == 0:
        return 0.0, xp.zeros_like(logits)
    scores = logits.astype("float32")
    valid = valid_cells(n_tokens, band, xp)[None]
    negatives = xp.where(valid, scores, -numpy.inf)
    labels, starts, offsets = (xp.asarray(column) for column in positives.T)
    negatives[labels, starts, offsets] = -numpy.inf
    flat_negatives = negatives.reshape(n_labels, -1)
    negative_term = log1p_sum_exp(flat_negatives, axis=1)

    positive_scores = scores[labels, starts, offsets]
    by_label = xp.full((n_labels, max(len(positives), 1)), -numpy.inf, dtype="float32")
    by_label[labels, xp.asarray(rank_within_label(positives[:, 0]))] = -positive_scores
    positive_term = log1p_sum_exp(by_label, axis=1)

    d_scores = xp.exp(flat_negatives - negative_term[:, None]).reshape(scores.shape)
    d_scores[labels, starts, offsets] = -xp.exp(-positive_scores - positive_term[labels])
    loss = float((negative_term + positive_term).sum())
    return loss, d_scores.astype(logits.dtype)


def rank_within_label(labels: Sequence[int]):
    """For each entry, how many earlier entries share its label."""
    labels = numpy.asarray(labels, dtype="int64")
    ranks = numpy.zeros(len(labels), dtype="int64")
    order = numpy.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts_of_runs = numpy.searchsorted(sorted_labels, sorted_labels, side="left")
    ranks[order] = numpy.arange(len(labels)) - starts_of_runs
    return ranks


def globalpointer_loss(
    logits: List[Floats3d], positives: List[Ints2d]
) -> Tuple[float, List[Floats3d]]:
    """Mean loss over docs x labels, and the gradient for every doc's logits."""
    if not logits:
        return 0.0, []
    normaliser = len(logits) * logits[0].shape[0]
    total = 0.0
    gradients = []
    for doc_logits, doc_positives in zip(logits, positives):
        loss, d_logits = doc_loss(doc_logits, doc_positives)
        total += loss
        gradients.append(d_logits / normaliser)
    return total / normaliser, gradients
