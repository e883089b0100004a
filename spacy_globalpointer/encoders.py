"""Token encoders for CPU configs: context layers that slot into ``spacy.Tok2Vec.v2`` as ``encode``."""
from typing import List

from spacy.ml.models.tok2vec import MaxoutWindowEncoder
from spacy.util import registry
from thinc.api import Model, PyTorchLSTM, chain, residual
from thinc.types import Floats2d


@registry.architectures("spacy-globalpointer.BiLSTMEncoder.v1")
def build_bilstm_encoder(
    width: int, depth: int = 1, dropout: float = 0.0, add_input: bool = True
) -> Model[List[Floats2d], List[Floats2d]]:
    """A bidirectional LSTM over each doc's token vectors, ``width`` in and out.

    Every output row sees the whole doc, so the start and the end of a long
    entity, which GlobalPointer pairs, see each other (a window CNN of depth
    4 and window 1 sees 9 tokens). ``width`` must be even: each direction has
    ``width / 2`` units. ``dropout`` applies between stacked layers.
    ``add_input`` adds the input vectors to the output (a residual connection),
    which keeps the embedding's signal when the LSTM starts from random weights.
    """
    if width % 2:
        raise ValueError(f"BiLSTMEncoder: width must be even (one half per direction), got {width}")
    lstm = PyTorchLSTM(nO=width, nI=width, bi=True, depth=depth, dropout=dropout)
    return residual(lstm) if add_input else lstm


@registry.architectures("spacy-globalpointer.WindowBiLSTMEncoder.v1")
def build_window_bilstm_encoder(
    width: int,
    window_depth: int = 2,
    lstm_depth: int = 1,
    window_size: int = 1,
    maxout_pieces: int = 3,
    dropout: float = 0.0,
) -> Model[List[Floats2d], List[Floats2d]]:
    """spaCy's maxout window CNN (``window_depth`` layers: local n-gram features), then the BiLSTM
    (whole-doc context). The CPU choice of this package: on CLUENER held-out at equal steps it beat
    both the 4-layer CNN alone and a 2-layer BiLSTM alone (see ``docs/experiments.md``).
    """
    return chain(
        MaxoutWindowEncoder(width=width, window_size=window_size, maxout_pieces=maxout_pieces, depth=window_depth),
        build_bilstm_encoder(width, depth=lstm_depth, dropout=dropout),
    )
