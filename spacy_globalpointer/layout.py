"""The banded layout of span logits: which cell holds which span.

A doc of ``n`` tokens gets logits of shape ``(labels, n, band)``: cell
``[c, i, w]`` (start ``i``, offset ``w``) scores the span ``doc[i : i + w + 1]``
of label ``c``. ``band`` is the number of span lengths stored per start token,
so memory grows as ``n * band``; cells whose span would end past the doc
describe nothing. The functions work on Python ints and on numpy, cupy or
torch arrays alike (``xp`` picks the array module where one is created).
"""
from typing import Optional

import numpy


def band_width(n_tokens: int, max_span_length: Optional[int]) -> int:
    """The number of span lengths stored per start token (at least 1).

    n_tokens: the (padded) number of tokens.
    max_span_length: the longest span scored, ``None`` for no limit.
    RETURNS: ``min(max_span_length, n_tokens)``, or ``n_tokens`` without a limit.
    """
    if max_span_length is None:
        return max(n_tokens, 1)
    return max(min(max_span_length, n_tokens), 1)


def cell_end(start, offset):
    """The exclusive end token of the span held by the cell ``(start, offset)``."""
    return start + offset + 1


def cell_offset(start, end):
    """The offset of the cell holding the span ``doc[start:end]`` (``end`` exclusive)."""
    return end - start - 1


def valid_cells(n_tokens: int, band: int, xp=numpy):
    """``(n_tokens, band)`` booleans: does the cell's span end inside the doc?"""
    return cell_end(xp.arange(n_tokens)[:, None], xp.arange(band)[None, :]) <= n_tokens
