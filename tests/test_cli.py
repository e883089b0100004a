"""The README's workflow through spaCy's own CLI: fill-config, train, evaluate, load."""
import json
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from nested_data import NESTED, make_examples, span_tuples
from util import run

PARTIAL_CONFIG = """
[paths]
train = null
dev = null

[nlp]
lang = "zh"
pipeline = ["globalpointer_spans"]
batch_size = 8

[components]

[components.globalpointer_spans]
factory = "globalpointer_spans"

[components.globalpointer_spans.model]
@architectures = "spacy-globalpointer.EfficientGlobalPointer.v1"
head_size = 16

[components.globalpointer_spans.model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 64
depth = 2
embed_size = 500
window_size = 1
maxout_pieces = 3
subword_features = true

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}

[training]
seed = 0
dropout = 0.0
max_steps = 80
eval_frequency = 20
patience = 0

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.005

[training.batcher]
@batchers = "spacy.batch_by_sequence.v1"
size = 8
"""


def spacy_cli(*args: str, cwd) -> str:
    return run(sys.executable, "-m", "spacy", *args, cwd=cwd)


@pytest.mark.slow
def test_spacy_train_evaluate_and_load(tmp_path):
    nlp = spacy.blank("zh")
    DocBin(docs=[eg.reference for eg in make_examples(nlp, NESTED)], store_user_data=True).to_disk(tmp_path / "train.spacy")
    (tmp_path / "partial.cfg").write_text(PARTIAL_CONFIG, encoding="utf8")
    spacy_cli("init", "fill-config", "partial.cfg", "config.cfg", cwd=tmp_path)
    spacy_cli("train", "config.cfg", "--output", "out", "--paths.train", "train.spacy", "--paths.dev", "train.spacy", cwd=tmp_path)
    spacy_cli("evaluate", "out/model-last", "train.spacy", "--output", "metrics.json", cwd=tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf8"))
    assert metrics["spans_sc_f"] == 1.0
    assert set(metrics["spans_sc_per_type"]) == {"LOC", "ORG", "PER", "DIS", "BOD", "SYM", "ITE"}

    output = spacy_cli("find-threshold", "out/model-last", "train.spacy", "globalpointer_spans", "threshold", "spans_sc_f", "--n_trials", "3", cwd=tmp_path)
    assert "Best threshold" in output and "0.5" in output

    loaded = spacy.load(tmp_path / "out" / "model-last")
    doc = loaded(NESTED[0][0])
    assert sorted(span_tuples(doc)) == sorted(NESTED[0][1])
    assert len(doc.ents) < len(doc.spans["sc"])
