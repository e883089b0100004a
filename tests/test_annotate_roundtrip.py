"""annotate's Label Studio output reads back through the label_studio reader (model-assisted labelling)."""
import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from annotate_util import TEXTS, train_tiny_pipeline, write_jsonl
from spacy_globalpointer.annotate.cli import main as annotate
from spacy_globalpointer.convert import main as convert


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return train_tiny_pipeline(tmp_path_factory.mktemp("roundtrip") / "model")


def test_label_studio_predictions_convert_back_to_the_same_spans(model, tmp_path):
    # An astral character before the entities: Label Studio offsets are code points on both sides.
    texts = TEXTS + ["😀" + TEXTS[0]]
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(texts)])
    tasks = tmp_path / "tasks.json"
    assert annotate([str(model), str(source), str(tasks), "--id-key", "id", "--output-format", "label_studio"]) == 0
    predicted = sum(len(task["predictions"][0]["result"]) for task in json.loads(tasks.read_text("utf-8")))
    assert predicted > 0

    report = tmp_path / "report.json"
    converted = tmp_path / "back.spacy"
    assert convert(["label_studio", str(tasks), str(converted), "--ls-source", "predictions", "--report", str(report)]) == 0
    counts = json.loads(report.read_text("utf-8"))
    assert counts["entities_read"] == counts["entities_written"] == predicted
    assert not any(counts["dropped"].values())

    nlp = spacy.load(model)
    docs = list(DocBin().from_disk(converted).get_docs(nlp.vocab))
    by_text = {doc.text: doc for doc in docs}
    for text in texts:
        predicted_doc = nlp(text)
        expected = sorted((s.start_char, s.end_char, s.label_) for s in predicted_doc.spans["sc"])
        if text not in by_text:  # a task with no predicted span has nothing to read back
            assert expected == []
            continue
        got = sorted((s.start_char, s.end_char, s.label_) for s in by_text[text].spans["sc"])
        assert got == expected
