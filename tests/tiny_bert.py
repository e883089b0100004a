"""Build a tiny, randomly initialised BERT on disk, for offline tests.

spacy-transformers loads a Hugging Face model *by path* (``name = "/some/dir"``),
so nothing here touches the network: the config, the weights and a character
vocabulary are written locally. The offline switches are set before
``transformers`` / ``huggingface_hub`` are imported by this module, because
``huggingface_hub`` reads them at import time.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import string  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterable, List, Union  # noqa: E402

import torch  # noqa: E402

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_vocab(texts: Iterable[str] = ()) -> List[str]:
    """Special tokens, then every distinct non-space character of ``texts``, then ASCII.

    BERT's basic tokenizer splits CJK characters and punctuation into single
    characters and lower-cases, so one entry per character covers the texts.
    ASCII letters also get a ``##`` continuation entry so that Latin words
    tokenise into known wordpieces instead of ``[UNK]``.
    """
    vocab = list(SPECIAL_TOKENS)
    seen = set(vocab)

    def add(token: str) -> None:
        if token not in seen:
            seen.add(token)
            vocab.append(token)

    for text in texts:
        for char in text:
            if not char.isspace():
                add(char.lower())
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        add(char)
    for char in string.ascii_lowercase + string.digits:
        add("##" + char)
    return vocab


def write_tiny_bert(
    directory: Union[str, Path],
    texts: Iterable[str] = (),
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 64,
    max_position_embeddings: int = 512,
    dropout: float = 0.0,
    seed: int = 0,
) -> Path:
    """Write a random BERT (weights, config, fast tokenizer) to ``directory`` and return it.

    The result loads with ``AutoModel.from_pretrained(directory)`` /
    ``AutoTokenizer.from_pretrained(directory)``, i.e. as the ``name`` of a
    ``spacy-transformers.TransformerModel.v3``. Weights are reproducible for a
    given ``seed``. ``dropout`` is BERT's hidden and attention dropout; it is 0
    by default because spaCy's ``drop`` argument does not reach the Hugging Face
    model (its dropout is active whenever the torch module is in training
    mode), and a deterministic forward pass makes overfitting tests reliable.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(texts)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf8")

    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=0,
    )
    # Seed a private generator state so building the model does not disturb
    # (and is not disturbed by) the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.eval()
    model.save_pretrained(str(directory))

    tokenizer = BertTokenizerFast(
        vocab_file=str(vocab_file),
        do_lower_case=True,
        tokenize_chinese_chars=True,
        model_max_length=max_position_embeddings,
    )
    tokenizer.save_pretrained(str(directory))
    return directory
