"""Thinc glue: pad token vectors, run a PyTorch GlobalPointer head, unpad the logits."""
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchGradScaler,
    PyTorchWrapper_v2,
    chain,
    get_torch_default_device,
    torch2xp,
    xp2torch,
)
from thinc.types import Floats2d, Floats3d, Ints1d

from .head import HEADS

PaddedBatch = Tuple[Floats3d, Ints1d]

_fork_hook_registered = False


@registry.architectures("spacy-globalpointer.EfficientGlobalPointer.v1")
def build_efficient_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    mixed_precision: bool = False,
    initial_probability: Optional[float] = 0.01,
    nO: Optional[int] = None,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
) -> Model[List[Doc], List[Floats3d]]:
    """Efficient GlobalPointer over a token encoder.

    Output: one ``(labels, n_tokens, band)`` array of span logits per doc, where
    cell ``[c, i, w]`` scores the span ``doc[i : i + w + 1]`` with label ``c``.
    ``initial_probability``: the probability every span starts with (``null``:
    PyTorch's default initialisation, under which about half of all spans do).
    ``mixed_precision`` (GPU only; fp32 with a warning on a CPU) and
    ``grad_scaler_config`` (keyword arguments of thinc's ``PyTorchGradScaler``)
    work as in spacy-transformers.
    """
    return build_globalpointer_model(
        tok2vec, "efficient", head_size, use_rope, mixed_precision, nO, initial_probability,
        grad_scaler_config,
    )


@registry.architectures("spacy-globalpointer.GlobalPointer.v1")
def build_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    mixed_precision: bool = False,
    nO: Optional[int] = None,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
) -> Model[List[Doc], List[Floats3d]]:
    """The original GlobalPointer (one query/key projection per label) over a token encoder."""
    return build_globalpointer_model(
        tok2vec, "original", head_size, use_rope, mixed_precision, nO, None, grad_scaler_config
    )


def build_globalpointer_model(
    tok2vec: Model[List[Doc], List[Floats2d]],
    variant: str,
    head_size: int,
    use_rope: bool,
    mixed_precision: bool,
    nO: Optional[int],
    initial_probability: Optional[float] = None,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
) -> Model[List[Doc], List[Floats3d]]:
    if variant not in HEADS:
        raise ValueError(f"Unknown GlobalPointer variant {variant!r}: use one of {sorted(HEADS)}")
    if head_size < 2 or head_size % 2:
        raise ValueError(f"head_size must be a positive even number (RoPE rotates pairs), got {head_size}")
    head = Model(
        "globalpointer_head",
        head_forward,
        init=head_init,
        dims={"nI": None, "nO": nO},
        attrs={
            "variant": variant,
            "head_size": head_size,
            "use_rope": use_rope,
            "mixed_precision": mixed_precision,
            "grad_scaler_config": dict(grad_scaler_config or {}),
            "initial_probability": initial_probability,
            "max_span_length": None,
        },
    )
    model = chain(tok2vec, head)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("head", head)
    return model


def head_init(model: Model, X: Optional[List[Floats2d]] = None, Y=None) -> None:
    """(Re)build the torch head with fresh weights: initialising twice starts it over.

    Without a known ``nI``, the input width is read from the first non-empty doc's
    vectors (a listener gives an empty doc a ``(0, 0)`` array).
    """
    if X is not None and not model.has_dim("nI"):
        widths = [x.shape[1] for x in X if len(x)]
        if widths:
            model.set_dim("nI", widths[0])
    model.layers.clear()
    build_torch_head(model)


def build_torch_head(model: Model) -> None:
    """Create the wrapped PyTorch head once ``nI`` and ``nO`` are known.

    Called on initialisation and, with the stored input width, before
    deserialising a trained pipeline; a head that exists already is kept.
    """
    if model.layers:
        return
    if not model.has_dim("nI") or not model.has_dim("nO"):
        raise ValueError(
            "Cannot build the GlobalPointer head before its input width (nI) "
            "and number of labels (nO) are known"
        )
    options = {"head_size": model.attrs["head_size"], "use_rope": model.attrs["use_rope"]}
    if model.attrs["initial_probability"] is not None:
        options["initial_probability"] = model.attrs["initial_probability"]
    module = HEADS[model.attrs["variant"]](model.get_dim("nI"), model.get_dim("nO"), **options)
    mixed_precision, scaler_config = precision_settings(model)
    use_one_thread_in_forked_children()
    model.layers.append(
        PyTorchWrapper_v2(
            module,
            convert_inputs=convert_head_inputs,
            mixed_precision=mixed_precision,
            grad_scaler=PyTorchGradScaler(**scaler_config),
        )
    )


def use_one_thread_in_forked_children() -> None:
    """From now on, run torch on one thread in every child this process forks.

    A forked child (``nlp.pipe(n_process=...)``) inherits the parent's OpenMP thread
    pool in a dead state and hangs on its first parallel torch op, which may come
    from an upstream component (a transformer) before this head runs. The workers
    are the parallelism, so each runs torch on one thread. Registered when a head
    is built, not on import: only processes that use the component are affected.
    """
    global _fork_hook_registered
    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=lambda: torch.set_num_threads(1))
        _fork_hook_registered = True


def precision_settings(model: Model) -> Tuple[bool, Dict[str, Any]]:
    """``mixed_precision`` and the grad scaler's keyword arguments for the current device.

    Gradient scaling and fp16 autocast need a CUDA GPU: elsewhere both are turned off
    with a warning, and the head trains in fp32.
    """
    mixed_precision = model.attrs["mixed_precision"]
    scaler_config = dict(model.attrs.get("grad_scaler_config") or {})
    scaler_config.setdefault("enabled", mixed_precision)
    if (mixed_precision or scaler_config["enabled"]) and get_torch_default_device().type != "cuda":
        warnings.warn(
            "The GlobalPointer head has mixed_precision or grad scaling enabled, which need a "
            "CUDA GPU: it runs in fp32 without gradient scaling on this device."
        )
        mixed_precision = False
        scaler_config["enabled"] = False
    return mixed_precision, scaler_config


def head_forward(
    model: Model, X: List[Floats2d], is_train: bool
) -> Tuple[List[Floats3d], Callable]:
    if not X:
        return [], lambda d_logits: []
    torch_head = model.layers[0]
    lengths = [len(x) for x in X]
    padded = pad_tokens(model, X)
    band_logits, backprop_head = torch_head((padded, model.attrs["max_span_length"]), is_train)
    logits = [band_logits[i, :, :n, : min(band_logits.shape[-1], n)] for i, n in enumerate(lengths)]

    def backprop(d_logits: List[Floats3d]) -> List[Floats2d]:
        d_band = model.ops.alloc(band_logits.shape, dtype=band_logits.dtype)
        for i, d in enumerate(d_logits):
            d_band[i, :, : d.shape[1], : d.shape[2]] = d
        d_padded = backprop_head(d_band)
        return [d_padded[i, :n] for i, n in enumerate(lengths)]

    return logits, backprop


def pad_tokens(model: Model, X: List[Floats2d]) -> PaddedBatch:
    """Stack ``(n_i, width)`` arrays into ``(batch, max(n_i, 1), width)`` plus the lengths."""
    lengths = model.ops.asarray1i([len(x) for x in X])
    n_max = max([len(x) for x in X] + [1])
    padded = model.ops.alloc3f(len(X), n_max, model.get_dim("nI"), dtype=X[0].dtype)
    for i, x in enumerate(X):
        if len(x):
            padded[i, : len(x)] = x
    return padded, lengths


def convert_head_inputs(
    model: Model, inputs: Tuple[PaddedBatch, Optional[int]], is_train: bool
) -> Tuple[ArgsKwargs, Callable]:
    (padded, lengths), max_span_length = inputs
    device = model.shims[0].device
    args = ArgsKwargs(
        args=(xp2torch(padded, requires_grad=is_train, device=device), xp2torch(lengths, device=device)),
        kwargs={"max_span_length": max_span_length},
    )
    return args, lambda d_args: torch2xp(d_args.args[0])
