"""GlobalPointer span-scoring heads in plain PyTorch.

Both heads map token vectors ``(batch, n, width)`` to span logits in a *banded*
layout ``(batch, labels, n, band)``: cell ``[b, c, i, w]`` scores the span of
label ``c`` that starts at token ``i`` and ends (inclusive) at token ``i + w``
(see ``layout``). With ``max_span_length=None`` the band covers every span of
the padded batch (``band = n``); with ``max_span_length=W`` only spans of at
most ``W`` tokens are computed and stored, so memory grows as ``n * W`` rather
than ``n * n``.
Cells that do not describe a span inside the document are filled with the
most negative finite value of the dtype (safe in fp16).
"""
import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .layout import band_width, cell_end


def rotary_tables(
    n: int, d: int, device: torch.device, dtype: torch.dtype
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(cos, signed_sin)``, each ``(n, d)``: RoPE's rotation at positions ``0..n-1``.

    ``rot(x) * sin`` is computed as ``[x1, x0, x3, x2, ...] * signed_sin`` with
    ``signed_sin = [-sin_0, sin_0, -sin_1, sin_1, ...]``.
    """
    compute_dtype = torch.promote_types(dtype, torch.float32)
    positions = torch.arange(n, dtype=compute_dtype, device=device)
    inv_freq = torch.pow(10000.0, -torch.arange(0, d, 2, dtype=compute_dtype, device=device) / d)
    angles = positions[:, None] * inv_freq[None, :]
    cos = torch.cos(angles).repeat_interleave(2, dim=-1)
    sin = torch.sin(angles)
    signed_sin = torch.stack((-sin, sin), dim=-1).reshape(n, d)
    return cos.to(dtype), signed_sin.to(dtype)


def rotary_position_embedding(
    x: torch.Tensor, tables: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
) -> torch.Tensor:
    """Apply RoPE to ``x`` of shape ``(..., n, d)`` (positions along dim -2).

    Channel pair ``(2t, 2t+1)`` is rotated by ``m * 10000 ** (-2t / d)`` at
    position ``m``: ``x * cos + rot(x) * sin`` with
    ``rot(x) = [-x1, x0, -x3, x2, ...]``. ``tables`` (from ``rotary_tables``)
    lets query and key share one computation of the rotation.
    """
    cos, signed_sin = tables or rotary_tables(x.shape[-2], x.shape[-1], x.device, x.dtype)
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return (x * cos).addcmul_(swapped, signed_sin)


def banded_scores(query: torch.Tensor, key: torch.Tensor, band: int) -> torch.Tensor:
    """``out[..., i, w] = query[..., i, :] · key[..., i + w, :]``.

    ``query`` and ``key`` are ``(..., n, d)``; the result is ``(..., n, band)``.
    Rows are processed in blocks of ``band`` so that no more than
    ``n * 2 * band`` dot products are formed; cells past the end hold
    arbitrary values and must be masked by the caller.
    """
    *lead, n, d = query.shape
    n_blocks = max(math.ceil(n / band), 1)
    query = F.pad(query, (0, 0, 0, n_blocks * band - n))
    query = query.reshape(*lead, n_blocks, band, d)
    offsets = torch.arange(band, device=query.device)
    columns = offsets[:, None] + offsets[None, :]
    if n_blocks == 1:
        # Columns past the document are masked anyway: clamp instead of padding.
        key = F.pad(key, (0, 0, 0, band - n)).unsqueeze(-3)
        columns = columns.clamp(max=band - 1)
    else:
        key = F.pad(key, (0, 0, 0, (n_blocks + 1) * band - n))
        key = key.unfold(-2, 2 * band, band).transpose(-1, -2)
    scores = torch.matmul(query, key.transpose(-1, -2))
    columns = columns.expand(*scores.shape[:-1], band)
    band_cells = torch.gather(scores, -1, columns)
    return band_cells.reshape(*lead, n_blocks * band, band)[..., :n, :]


def banded_end_values(values: torch.Tensor, band: int) -> torch.Tensor:
    """``out[..., i, w] = values[..., i + w]`` (0 past the end): ``(..., n) -> (..., n, band)``."""
    return F.pad(values, (0, band - 1)).unfold(-1, band, 1)


def invalid_span_mask(lengths: torch.Tensor, n: int, band: int) -> torch.Tensor:
    """``(batch, 1, n, band)`` booleans: does cell ``(i, w)`` end past its document?"""
    ends = cell_end(torch.arange(n, device=lengths.device)[:, None], torch.arange(band, device=lengths.device))
    return (ends[None, :, :] > lengths[:, None, None]).unsqueeze(1)


def mask_invalid_(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Fill, in place, the cells outside their document with the dtype's most negative value."""
    invalid = invalid_span_mask(lengths, logits.shape[-2], logits.shape[-1])
    return logits.masked_fill_(invalid, torch.finfo(logits.dtype).min)


class EfficientGlobalPointer(nn.Module):
    """Efficient GlobalPointer: a shared start/end scorer plus a per-label bias.

    Weights ``2 d D + 4 d C``, biases ``2 d + 2 C`` (D input width, d head
    size, C labels). With ``initial_probability=p`` the label-bias biases
    start at ``logit(p)``, which shifts every span logit by ``logit(p)``: an
    untrained head then predicts few spans instead of about half of all
    ``O(n^2)`` of them (RetinaNet's prior initialisation).
    """

    def __init__(
        self,
        input_width: int,
        n_labels: int,
        head_size: int = 64,
        use_rope: bool = True,
        initial_probability: Optional[float] = None,
    ):
        super().__init__()
        self.n_labels = n_labels
        self.head_size = head_size
        self.use_rope = use_rope
        self.projection = nn.Linear(input_width, 2 * head_size)
        self.label_bias = nn.Linear(2 * head_size, 2 * n_labels)
        if initial_probability is not None:
            if not 0.0 < initial_probability < 1.0:
                raise ValueError(f"initial_probability must be in (0, 1), got {initial_probability}")
            prior_logit = math.log(initial_probability) - math.log1p(-initial_probability)
            nn.init.constant_(self.label_bias.bias, prior_logit)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor, max_span_length: Optional[int] = None
    ) -> torch.Tensor:
        band = band_width(tokens.shape[1], max_span_length)
        projected = self.projection(tokens)
        query, key = projected[..., 0::2], projected[..., 1::2]
        if self.use_rope:
            tables = rotary_tables(tokens.shape[1], self.head_size, tokens.device, projected.dtype)
            query, key = rotary_position_embedding(query, tables), rotary_position_embedding(key, tables)
        extraction = banded_scores(query, key, band) / math.sqrt(self.head_size)
        bias = (self.label_bias(projected) / 2).transpose(1, 2)
        end_bias = banded_end_values(bias[:, 0::2], band)
        start_bias = bias[:, 1::2].unsqueeze(-1)
        # One (batch, labels, n, band) allocation: the sums and the mask work in place.
        logits = extraction.unsqueeze(1) + end_bias
        logits += start_bias
        return mask_invalid_(logits, lengths)


class GlobalPointer(nn.Module):
    """The original GlobalPointer: one query/key projection per label.

    Weights ``2 d D C``, biases ``2 d C``.
    """

    def __init__(
        self, input_width: int, n_labels: int, head_size: int = 64, use_rope: bool = True
    ):
        super().__init__()
        self.n_labels = n_labels
        self.head_size = head_size
        self.use_rope = use_rope
        self.projection = nn.Linear(input_width, n_labels * 2 * head_size)

    def forward(
        self, tokens: torch.Tensor, lengths: torch.Tensor, max_span_length: Optional[int] = None
    ) -> torch.Tensor:
        batch, n, _ = tokens.shape
        band = band_width(n, max_span_length)
        projected = self.projection(tokens).reshape(batch, n, self.n_labels, 2 * self.head_size)
        projected = projected.transpose(1, 2)
        query, key = projected[..., : self.head_size], projected[..., self.head_size :]
        if self.use_rope:
            tables = rotary_tables(n, self.head_size, tokens.device, projected.dtype)
            query, key = rotary_position_embedding(query, tables), rotary_position_embedding(key, tables)
        # Scaling the query (n * d values) spares a copy of the (n * band * labels) logits.
        query = query / math.sqrt(self.head_size)
        logits = banded_scores(query, key, band)
        return mask_invalid_(logits, lengths)


HEADS = {"efficient": EfficientGlobalPointer, "original": GlobalPointer}


def count_parameters(module: nn.Module) -> Tuple[int, int]:
    """(weights, biases) of a head."""
    weights = sum(p.numel() for name, p in module.named_parameters() if name.endswith("weight"))
    biases = sum(p.numel() for name, p in module.named_parameters() if name.endswith("bias"))
    return weights, biases
