"""The BiLSTM encoder: whole-doc context, training under the component, serialization."""
import pickle

import numpy
import pytest
import spacy
from spacy.util import registry

from nested_data import NESTED, make_examples
from util import assert_same_output, build_nlp, outputs, train

BILSTM = "spacy-globalpointer.BiLSTMEncoder.v1"
BILSTM_TOK2VEC = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {
        "@architectures": "spacy.MultiHashEmbed.v2",
        "width": 32,
        "attrs": ["NORM", "SHAPE"],
        "rows": [500, 50],
        "include_static_vectors": False,
    },
    "encode": {"@architectures": BILSTM, "width": 32, "depth": 2},
}
TEXTS = [text for text, _ in NESTED]


def test_every_output_row_sees_the_whole_doc():
    """Changing the 12th token's input changes the first token's output (a depth-4 window-1 CNN sees 4 tokens
    to each side). Untrained, the LSTM's memory fades geometrically, so the doc is kept short."""
    encoder = registry.architectures.get(BILSTM)(width=8, depth=1)
    rng = numpy.random.default_rng(0)
    doc = rng.normal(size=(12, 8)).astype("f")
    encoder.initialize(X=[doc])
    changed = doc.copy()
    changed[-1] += 1.0
    before, after = encoder.predict([doc, changed])
    assert before.shape == (12, 8)
    assert numpy.abs(before[0] - after[0]).max() > 1e-7


def test_residual_connection_adds_the_input():
    encoder = registry.architectures.get(BILSTM)(width=8, add_input=True)
    doc = numpy.ones((3, 8), dtype="f")
    encoder.initialize(X=[doc])
    lstm = encoder.layers[0]
    numpy.testing.assert_allclose(encoder.predict([doc])[0], lstm.predict([doc])[0] + doc, rtol=1e-5)


def test_odd_width_is_an_error_naming_it():
    with pytest.raises(ValueError, match="width must be even.*got 33"):
        registry.architectures.get(BILSTM)(width=33)


@pytest.fixture(scope="module")
def bilstm_nlp():
    nlp = build_nlp(tok2vec=BILSTM_TOK2VEC)
    return train(nlp, make_examples(nlp, NESTED), steps=80, learn_rate=0.01)


def test_component_over_bilstm_overfits_nested_entities(bilstm_nlp):
    assert bilstm_nlp.evaluate(make_examples(bilstm_nlp, NESTED))["spans_sc_f"] == 1.0


def test_bilstm_pipeline_round_trips(bilstm_nlp, tmp_path):
    expected = outputs(bilstm_nlp, TEXTS)
    bilstm_nlp.to_disk(tmp_path / "pipeline")
    assert_same_output(expected, outputs(spacy.load(tmp_path / "pipeline"), TEXTS))
    fresh = spacy.blank("zh").from_config(bilstm_nlp.config)
    fresh.from_bytes(bilstm_nlp.to_bytes())
    assert_same_output(expected, outputs(fresh, TEXTS))
    assert_same_output(expected, outputs(pickle.loads(pickle.dumps(bilstm_nlp)), TEXTS))
