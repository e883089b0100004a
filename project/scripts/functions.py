"""Training callbacks for the project, loaded with ``spacy train ... --code scripts/functions.py``.

* ``globalpointer.freeze_embeddings.v1`` (``[initialize.after_init]``): set
  ``requires_grad=False`` on the word-embedding table of a spacy-transformers model. For
  multilingual-e5-small, 96M of its 118M parameters are that table (250k pieces x 384).

Nothing here is needed to *load* or *use* a trained pipeline: ``[initialize]`` is only resolved
when a pipeline is initialised for training.
"""
from typing import Callable, List

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

