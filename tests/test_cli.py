"""The README's workflow through spaCy's own CLI: fill-config, train, evaluate, load."""
import json
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from nested_data import NESTED, make_examples, span_tuples
from util import run, tiny_cnn_train_config

def spacy_cli(*args: str, cwd) -> str:
    return run(sys.executable, "-m", "spacy", *args, cwd=cwd)


@pytest.mark.slow
def test_spacy_train_evaluate_and_load(tmp_path):
    nlp = spacy.blank("zh")
    DocBin(docs=[eg.reference for eg in make_examples(nlp, NESTED)], store_user_data=True).to_disk(tmp_path / "train.spacy")
    (tmp_path / "partial.cfg").write_text(tiny_cnn_train_config(), encoding="utf8")
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
