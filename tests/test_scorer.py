"""The scorer reads gold from doc.spans[key] or doc.ents, predictions from doc.spans[key] only."""
import pytest
import spacy
from spacy.tokens import Span, SpanGroup
from spacy.training import Example

from spacy_globalpointer.scorer import score_globalpointer

TEXT = "张三在北京工作。"
GOLD = [(0, 2, "PER"), (3, 5, "LOC")]


def example(predicted_spans, *, upstream_ents, gold_as_ents: bool) -> Example:
    nlp = spacy.blank("zh")
    reference = nlp.make_doc(TEXT)
    gold = [Span(reference, start, end, label=label) for start, end, label in GOLD]
    if gold_as_ents:
        reference.set_ents(gold)
    else:
        reference.spans["sc"] = gold
    predicted = nlp.make_doc(TEXT)
    # An upstream ``ner`` wrote these; the component (write_ents=false) wrote doc.spans["sc"].
    predicted.set_ents([Span(predicted, start, end, label=label) for start, end, label in upstream_ents])
    predicted.spans["sc"] = SpanGroup(
        predicted, name="sc", spans=[Span(predicted, start, end, label=label) for start, end, label in predicted_spans]
    )
    return Example(predicted, reference)


@pytest.mark.parametrize("gold_as_ents", [False, True])
def test_upstream_ents_are_not_taken_for_an_empty_prediction(gold_as_ents):
    eg = example([], upstream_ents=GOLD, gold_as_ents=gold_as_ents)
    scores = score_globalpointer([eg], spans_key="sc", write_ents=False)
    assert scores["spans_sc_r"] == 0.0
    assert scores["spans_sc_f"] == 0.0


@pytest.mark.parametrize("gold_as_ents", [False, True])
def test_predictions_are_read_from_the_spans_key(gold_as_ents):
    eg = example([(0, 2, "PER")], upstream_ents=[(3, 5, "LOC")], gold_as_ents=gold_as_ents)
    scores = score_globalpointer([eg], spans_key="sc", write_ents=False)
    assert scores["spans_sc_p"] == 1.0
    assert scores["spans_sc_r"] == 0.5
    assert scores["spans_sc_per_type"]["PER"]["f"] == 1.0
    assert scores["spans_sc_per_type"]["LOC"]["r"] == 0.0


def test_a_prediction_without_the_spans_key_predicts_nothing():
    eg = example([], upstream_ents=GOLD, gold_as_ents=False)
    del eg.predicted.spans["sc"]
    scores = score_globalpointer([eg], spans_key="sc", write_ents=False)
    assert scores["spans_sc_r"] == 0.0
