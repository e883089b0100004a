"""Training callbacks for the project, loaded with ``spacy train ... --code scripts/functions.py``.

* ``globalpointer.prior_bias.v1`` (``[initialize.after_init]``): start the Efficient GlobalPointer
  head with a small prior probability for every span (as RetinaNet does for its classifier).
  A randomly initialised head scores about half of all O(n^2) spans positive, so the evaluation
  spaCy runs after the first update decodes and scores millions of spans (minutes on a CPU).
* ``globalpointer.freeze_embeddings.v1`` (``[initialize.after_init]``): set
  ``requires_grad=False`` on the word-embedding table of a spacy-transformers model. For
  multilingual-e5-small, 96M of its 118M parameters are that table (250k pieces x 384).
* ``globalpointer.chain_after_init.v1``: run several ``after_init`` callbacks in order.

Nothing here is needed to *load* or *use* a trained pipeline: ``[initialize]`` is only resolved
when a pipeline is initialised for training.
"""
import math
from typing import Callable, List, Optional

from spacy.language import Language
from spacy.util import registry
from wasabi import msg


def _torch_modules(model):
    """The PyTorch modules wrapped anywhere inside a thinc model."""
    for node in model.walk():
        for shim in node.shims:
            module = getattr(shim, "_model", None)
            if module is not None and hasattr(module, "named_parameters"):
                yield module


@registry.callbacks("globalpointer.prior_bias.v1")
def make_prior_bias(
    prior: float = 0.01, component: str = "globalpointer_spans"
) -> Callable[[Language], Language]:
    """Initialise the per-label start/end biases so that ``sigmoid(logit) ~= prior`` at step 0.

    The Efficient head's logit is ``s0(i, j) + B[j, 2c] + B[i, 2c + 1]`` with ``B = (W p + b) / 2``,
    so a bias ``b = logit(prior)`` on every channel shifts every span logit by ``logit(prior)``.
    The original GlobalPointer head has no separate bias and is left unchanged.
    """
    if not 0.0 < prior < 1.0:
        raise ValueError(f"prior must be a probability in (0, 1), got {prior}")
    value = math.log(prior) - math.log1p(-prior)

    def prior_bias(nlp: Language) -> Language:
        if component not in nlp.pipe_names:
            msg.warn(f"prior_bias: no component '{component}' in the pipeline; nothing changed")
            return nlp
        head = nlp.get_pipe(component).model.get_ref("head")
        changed = 0
        for module in _torch_modules(head):
            label_bias = getattr(module, "label_bias", None)
            if label_bias is not None and label_bias.bias is not None:
                label_bias.bias.data.fill_(value)
                changed += 1
        if changed:
            msg.info(f"prior_bias: span logits start near {value:.2f} (p = {prior})")
        else:
            msg.warn("prior_bias: the head has no label bias (original GlobalPointer?); nothing changed")
        return nlp

    return prior_bias


@registry.callbacks("globalpointer.freeze_embeddings.v1")
def make_freeze_embeddings(
    component: str = "transformer", names: List[str] = ["word_embeddings"]
) -> Callable[[Language], Language]:
    """Freeze every torch parameter of ``component`` whose name contains one of ``names``."""

    def freeze_embeddings(nlp: Language) -> Language:
        model = nlp.get_pipe(component).model
        frozen = 0
        for module in _torch_modules(model):
            for name, param in module.named_parameters():
                if any(part in name for part in names):
                    param.requires_grad_(False)
                    frozen += param.numel()
        if not frozen:
            raise ValueError(f"freeze_embeddings: no parameter of '{component}' matches {names}")
        msg.info(f"freeze_embeddings: froze {frozen:,} parameters of '{component}' ({', '.join(names)})")
        return nlp

    return freeze_embeddings


@registry.callbacks("globalpointer.chain_after_init.v1")
def make_chain_after_init(
    first: Callable[[Language], Language],
    second: Optional[Callable[[Language], Language]] = None,
    third: Optional[Callable[[Language], Language]] = None,
) -> Callable[[Language], Language]:
    """Apply up to three ``after_init`` callbacks in order."""

    def chained(nlp: Language) -> Language:
        for callback in (first, second, third):
            if callback is not None:
                nlp = callback(nlp)
        return nlp

    return chained
