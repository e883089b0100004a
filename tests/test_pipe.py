"""The globalpointer_spans component over spaCy's CNN tok2vec."""
import pickle

import numpy
import pytest
import spacy
from thinc.api import fix_random_seed

from spacy_globalpointer import GlobalPointerSpans
from nested_data import FLAT, NESTED, SMALL_TOK2VEC, make_examples, span_tuples
from util import ARCHITECTURES, assert_same_output, build_nlp, outputs, train


@pytest.fixture(scope="module")
def trained_nlp():
    nlp = build_nlp()
    return train(nlp, make_examples(nlp, NESTED), steps=60)


TEXTS = [text for text, _ in NESTED]


def test_factory_defaults():
    nlp = spacy.blank("zh")
    pipe = nlp.add_pipe("globalpointer_spans")
    assert isinstance(pipe, GlobalPointerSpans)
    assert pipe.key == "sc" and pipe.cfg["threshold"] == 0.5 and pipe.cfg["max_length"] is None
    assert pipe.cfg["write_ents"] is True and pipe.cfg["ents_strategy"] == "score"
    assert pipe.cfg["learn_rate_scale"] == 1.0
    config = nlp.config["components"]["globalpointer_spans"]
    assert config["model"]["@architectures"] == "spacy-globalpointer.EfficientGlobalPointer.v1"
    assert config["model"]["tok2vec"]["encode"]["@architectures"] == "spacy-globalpointer.WindowBiLSTMEncoder.v1"
    assert config["scorer"]["@scorers"] == "spacy-globalpointer.spans_scorer.v1"


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_overfits_nested_entities(architecture):
    nlp = build_nlp(architecture)
    examples = make_examples(nlp, NESTED)
    train(nlp, examples, steps=60)
    scores = nlp.evaluate(examples)
    assert scores["spans_sc_f"] == 1.0
    assert set(scores["spans_sc_per_type"]) == {"LOC", "ORG", "PER", "DIS", "BOD", "SYM", "ITE"}
    for doc, (_, entities) in zip(nlp.pipe(TEXTS), NESTED):
        assert sorted(span_tuples(doc)) == sorted(entities)


def test_spans_are_sorted_with_scores_above_threshold(trained_nlp):
    for doc in trained_nlp.pipe(TEXTS):
        group = doc.spans["sc"]
        keys = [(s.start, s.end, s.label_) for s in group]
        assert keys == sorted(keys, key=lambda k: (k[0], k[1], trained_nlp.get_pipe("globalpointer_spans").labels.index(k[2])))
        assert len(group.attrs["scores"]) == len(group)
        assert all(0.5 < score <= 1.0 for score in group.attrs["scores"])


def test_ents_are_a_non_overlapping_subset_of_spans(trained_nlp):
    doc = trained_nlp(NESTED[0][0])
    spans = set(span_tuples(doc))
    ents = [(e.start, e.end, e.label_) for e in doc.ents]
    assert ents and set(ents) <= spans
    covered = [i for start, end, _ in ents for i in range(start, end)]
    assert len(covered) == len(set(covered))
    # Greedy by score: every span left out overlaps a kept span with a higher score.
    scores = dict(zip(span_tuples(doc), doc.spans["sc"].attrs["scores"]))
    for span in spans - set(ents):
        rivals = [e for e in ents if e[0] < span[1] and span[0] < e[1]]
        assert rivals and max(scores[e] for e in rivals) >= scores[span]


def test_ents_strategy_length_prefers_longest(trained_nlp):
    pipe = trained_nlp.get_pipe("globalpointer_spans")
    pipe.cfg["ents_strategy"] = "length"
    try:
        doc = trained_nlp(NESTED[0][0])
    finally:
        pipe.cfg["ents_strategy"] = "score"
    assert (0, 8, "ORG") in [(e.start, e.end, e.label_) for e in doc.ents]


def test_write_ents_false_leaves_ents_alone():
    nlp = build_nlp(write_ents=False)
    train(nlp, make_examples(nlp, NESTED), steps=40)
    doc = nlp(NESTED[0][0])
    assert len(doc.spans["sc"]) > 0
    assert not doc.has_annotation("ENT_IOB")
    assert "ents_f" not in nlp.evaluate(make_examples(nlp, NESTED))


def test_flat_corpus_given_as_ents_trains():
    nlp = build_nlp()
    examples = make_examples(nlp, FLAT, as_ents=True)
    train(nlp, examples, steps=60)
    pipe = nlp.get_pipe("globalpointer_spans")
    assert set(pipe.labels) == {"LOC", "ORG", "PER"}
    scores = nlp.evaluate(examples)
    assert scores["spans_sc_f"] == 1.0 and scores["ents_f"] == 1.0
    doc = nlp(FLAT[1][0])
    assert [(e.start, e.end, e.label_) for e in doc.ents] == FLAT[1][1]


def test_threshold_controls_predictions(trained_nlp):
    pipe = trained_nlp.get_pipe("globalpointer_spans")
    text = NESTED[0][0]
    try:
        pipe.cfg["threshold"] = 1.0
        assert len(trained_nlp(text).spans["sc"]) == 0
        pipe.cfg["threshold"] = 0.0
        doc = trained_nlp(text)
        n = len(doc)
        assert len(doc.spans["sc"]) == len(pipe.labels) * n * (n + 1) // 2
        pipe.cfg["threshold"] = 0.5
        pipe.cfg["label_thresholds"] = {"ORG": 1.0}
        doc = trained_nlp(text)
        labels = {s.label_ for s in doc.spans["sc"]}
        assert "ORG" not in labels and "PER" in labels
    finally:
        pipe.cfg["threshold"] = 0.5
        pipe.cfg["label_thresholds"] = {}


def test_max_length_limits_predicted_spans(trained_nlp):
    pipe = trained_nlp.get_pipe("globalpointer_spans")
    pipe.cfg["max_length"] = 4
    try:
        spans = span_tuples(trained_nlp(NESTED[0][0]))
    finally:
        pipe.cfg["max_length"] = None
    assert (0, 4, "ORG") in spans and (0, 8, "ORG") not in spans
    assert all(end - start <= 4 for start, end, _ in spans)


def test_gold_spans_longer_than_max_length_warn():
    nlp = build_nlp(max_length=3)
    examples = make_examples(nlp, NESTED)
    nlp.initialize(lambda: examples)
    with pytest.warns(UserWarning, match="longer than max_length=3"):
        nlp.update(examples)


def test_empty_whitespace_and_entity_free_docs(trained_nlp):
    texts = ["", "   ", "\n\t", "今天没有任何实体。", "a"]
    docs = list(trained_nlp.pipe(texts))
    assert [len(d) for d in docs][:1] == [0]
    for doc in docs:
        assert all(0 <= s.start < s.end <= len(doc) for s in doc.spans["sc"])
    assert len(docs[0].spans["sc"]) == 0 and len(docs[0].ents) == 0
    assert trained_nlp("").spans["sc"].attrs["scores"].shape == (0,)
    # Updating on empty docs is a no-op rather than an error.
    assert trained_nlp.update(make_examples(trained_nlp, [("", [])]))["globalpointer_spans"] == 0.0


def test_unknown_gold_label_is_a_clear_error(trained_nlp):
    examples = make_examples(trained_nlp, [("张三在北京。", [(0, 2, "NEW_LABEL")])])
    with pytest.raises(ValueError, match="NEW_LABEL"):
        trained_nlp.update(examples)


def test_add_label_before_and_after_initialize():
    nlp = build_nlp()
    pipe = nlp.get_pipe("globalpointer_spans")
    assert pipe.add_label("PER") == 1 and pipe.add_label("PER") == 0
    train(nlp, make_examples(nlp, NESTED), steps=1)
    assert pipe.labels[0] == "PER"
    with pytest.raises(ValueError, match="Cannot add label"):
        pipe.add_label("NEW")


def test_initialize_with_explicit_labels():
    nlp = build_nlp()
    examples = make_examples(nlp, FLAT, as_ents=True)
    pipe = nlp.get_pipe("globalpointer_spans")
    pipe.initialize(lambda: examples, nlp=nlp, labels=["PER", "LOC", "ORG", "GPE"])
    assert pipe.labels == ("PER", "LOC", "ORG", "GPE")
    assert pipe.model.get_ref("head").get_dim("nO") == 4


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="max_length"):
        build_nlp(max_length=0)
    with pytest.raises(ValueError, match="ents_strategy"):
        build_nlp(ents_strategy="first")
    with pytest.raises(ValueError, match="probabilities"):
        build_nlp(threshold=1.5)
    with pytest.raises(ValueError, match="learn_rate_scale"):
        build_nlp(learn_rate_scale=0.0)


def listener_nlp(learn_rate_scale: float):
    nlp = spacy.blank("zh")
    nlp.add_pipe("tok2vec", config={"model": SMALL_TOK2VEC})
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": SMALL_TOK2VEC["width"], "upstream": "tok2vec"}
    model = {"@architectures": ARCHITECTURES[0], "head_size": 16, "tok2vec": listener}
    nlp.add_pipe("globalpointer_spans", config={"model": model, "learn_rate_scale": learn_rate_scale})
    return nlp


def weights(nlp):
    """Copies of the encoder's and the torch head's weights."""
    encoder = [
        node.get_param(name).copy()
        for node in nlp.get_pipe("tok2vec").model.walk() for name in node.param_names if node.has_param(name)
    ]
    head = nlp.get_pipe("globalpointer_spans").model.get_ref("head").layers[0].shims[0]._model
    return encoder, [parameter.detach().numpy().copy() for parameter in head.parameters()]


def first_update(learn_rate_scale: float):
    fix_random_seed(0)
    nlp = listener_nlp(learn_rate_scale)
    examples = make_examples(nlp, NESTED)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.L2 = 0.0
    before = weights(nlp)
    nlp.update(examples, sgd=optimizer, drop=0.0)
    after = weights(nlp)
    return [[a - b for a, b in zip(after_part, before_part)] for after_part, before_part in zip(after, before)]


def test_learn_rate_scale_multiplies_the_head_updates_only():
    encoder_1, head_1 = first_update(1.0)
    encoder_10, head_10 = first_update(10.0)
    for delta_1, delta_10 in zip(encoder_1, encoder_10):
        numpy.testing.assert_allclose(delta_10, delta_1, rtol=1e-5, atol=1e-8)
    assert any(numpy.abs(delta).max() > 0 for delta in head_1)
    for delta_1, delta_10 in zip(head_1, head_10):
        numpy.testing.assert_allclose(delta_10, 10.0 * delta_1, rtol=1e-2, atol=1e-6)


def test_to_disk_and_spacy_load(trained_nlp, tmp_path):
    expected = outputs(trained_nlp, TEXTS)
    trained_nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.get_pipe("globalpointer_spans").labels == trained_nlp.get_pipe("globalpointer_spans").labels
    assert_same_output(expected, outputs(loaded, TEXTS))


def test_to_bytes_and_from_bytes(trained_nlp):
    expected = outputs(trained_nlp, TEXTS)
    fresh = spacy.blank("zh").from_config(trained_nlp.config)
    fresh.from_bytes(trained_nlp.to_bytes())
    assert_same_output(expected, outputs(fresh, TEXTS))
    pipe = trained_nlp.get_pipe("globalpointer_spans")
    clone = build_nlp().get_pipe("globalpointer_spans").from_bytes(pipe.to_bytes())
    assert clone.labels == pipe.labels and clone.cfg["nI"] == 64


def test_pickle(trained_nlp):
    expected = outputs(trained_nlp, TEXTS)
    assert_same_output(expected, outputs(pickle.loads(pickle.dumps(trained_nlp)), TEXTS))


def test_spans_key_is_configurable():
    nlp = build_nlp(spans_key="entities")
    examples = make_examples(nlp, NESTED, key="entities")
    train(nlp, examples, steps=40)
    doc = nlp(NESTED[1][0])
    assert "entities" in doc.spans and "sc" not in doc.spans
    assert "spans_entities_f" in nlp.evaluate(examples)


def test_span_view_renders(trained_nlp):
    from spacy import displacy

    html = displacy.render(trained_nlp(NESTED[0][0]), style="span", options={"spans_key": "sc"})
    assert "北京大学附属医院" in html.replace("\n", "").replace(" ", "") or "ORG" in html
    assert html.count("ORG") >= 2
