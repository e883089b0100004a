"""``globalpointer_spans`` over a spacy-transformers ``TransformerListener``.

Everything runs offline: a tiny random BERT (``tests/tiny_bert.py``) is written
to a temporary directory once per session and loaded *by path* by
``spacy-transformers.TransformerModel.v3``.
"""
import os
import pickle
from typing import Dict, List

import numpy
import pytest

pytest.importorskip("spacy_transformers")

import spacy  # noqa: E402
import torch  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.tokens import Span  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy_transformers.layers import TransformerListener  # noqa: E402
from thinc.api import fix_random_seed  # noqa: E402

import spacy_globalpointer  # noqa: E402,F401  (registers the factory and architectures)
from tiny_bert import write_tiny_bert  # noqa: E402
from util import EFFICIENT, ORIGINAL, assert_same_output, doc_output, transformer_nlp  # noqa: E402

SPANS_KEY = "sc"
ARCHITECTURES = {"efficient": EFFICIENT, "original": ORIGINAL}

# (text, [(start_token, end_token, label)]); zh tokenises one token per character.
# Nested on purpose: 北京 (LOC and GPE on the same span) sits inside 北京大学 (ORG), etc.
TRAIN_DATA = [
    (
        "北京大学位于北京市海淀区。",
        [(0, 4, "ORG"), (0, 2, "LOC"), (0, 2, "GPE"), (6, 9, "LOC"), (6, 9, "GPE"), (9, 12, "LOC")],
    ),
    ("张三在上海复旦大学读书。", [(0, 2, "PER"), (3, 9, "ORG"), (3, 5, "LOC"), (3, 5, "GPE")]),
    ("李四是清华大学的教授。", [(0, 2, "PER"), (3, 7, "ORG")]),
    ("中国银行在深圳开业了。", [(0, 4, "ORG"), (0, 2, "GPE"), (0, 2, "LOC"), (5, 7, "LOC")]),
]
UNSEEN_TEXT = "王五在北京银行工作。"
# 600 characters = 600 tokens: far beyond the 64-token stride window, and more
# wordpieces than the 512 position embeddings of the BERT could take unstrided.
LONG_TEXT = ("".join(text for text, _ in TRAIN_DATA) * 20)[:600]

SEED = 0
LEARN_RATE = 3e-3
MAX_UPDATES = 80

# ----------------------------------------------------------------------------- fixtures


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    texts = [text for text, _ in TRAIN_DATA] + [UNSEEN_TEXT, LONG_TEXT]
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), texts, seed=0)


def make_nlp(bert_dir, architecture: str = EFFICIENT, grad_factor: float = 1.0) -> Language:
    return transformer_nlp(bert_dir, architecture, grad_factor=grad_factor, spans_key=SPANS_KEY)


def make_examples(nlp: Language) -> List[Example]:
    examples = []
    for text, spans in TRAIN_DATA:
        reference = nlp.make_doc(text)
        reference.spans[SPANS_KEY] = [Span(reference, s, e, label=label) for s, e, label in spans]
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


def train_until_perfect(nlp: Language) -> Dict:
    """Initialise and update on TRAIN_DATA until spans F1 == 1.0 (or MAX_UPDATES)."""
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = LEARN_RATE
    history = []
    for step in range(1, MAX_UPDATES + 1):
        losses = nlp.update(examples, sgd=optimizer)
        scores = nlp.evaluate(make_examples(nlp))
        history.append((step, losses["globalpointer_spans"], scores["spans_sc_f"]))
        if scores["spans_sc_f"] == 1.0:
            break
    return {"history": history, "scores": scores}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def trained(request, bert_dir):
    """A pipeline per head variant, overfitted once and shared (read-only) by the tests."""
    fix_random_seed(SEED)
    nlp = make_nlp(bert_dir, ARCHITECTURES[request.param])
    result = train_until_perfect(nlp)
    return {"variant": request.param, "nlp": nlp, **result}


# ----------------------------------------------------------------------------- helpers


def predictions(nlp: Language, texts: List[str]) -> List[Dict]:
    """Per text: ``doc_output`` plus the raw span logits."""
    docs = list(nlp.pipe(texts))
    logits = nlp.get_pipe("globalpointer_spans").predict(docs)
    return [dict(doc_output(doc, SPANS_KEY), logits=numpy.asarray(doc_logits)) for doc, doc_logits in zip(docs, logits)]


def assert_same_predictions(before: List[Dict], after: List[Dict]) -> None:
    def without_logits(outputs: List[Dict]) -> List[Dict]:
        return [{field: value for field, value in out.items() if field != "logits"} for out in outputs]

    assert_same_output(without_logits(before), without_logits(after))
    for want, have in zip(before, after):
        assert have["logits"].shape == want["logits"].shape
        numpy.testing.assert_allclose(have["logits"], want["logits"], rtol=1e-4, atol=1e-4)


def the_listener(nlp: Language) -> TransformerListener:
    listeners = [
        node
        for node in nlp.get_pipe("globalpointer_spans").model.walk()
        if isinstance(node, TransformerListener)
    ]
    assert len(listeners) == 1
    return listeners[0]


def assert_listener_wired(nlp: Language) -> None:
    """The transformer's listener map points at *the* listener inside our component's model."""
    transformer = nlp.get_pipe("transformer")
    assert transformer.listening_components == ["globalpointer_spans"]
    assert transformer.listener_map["globalpointer_spans"][0] is the_listener(nlp)
    assert transformer.listeners == [the_listener(nlp)]


def bert_module(nlp: Language) -> torch.nn.Module:
    return nlp.get_pipe("transformer").model.transformer


def bert_weights(nlp: Language) -> Dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in bert_module(nlp).named_parameters()}


def head_weights(nlp: Language) -> Dict[str, torch.Tensor]:
    head = nlp.get_pipe("globalpointer_spans").model.get_ref("head")
    torch_module = head.layers[0].shims[0]._model
    return {name: p.detach().clone() for name, p in torch_module.named_parameters()}


def bert_grad_norm(nlp: Language) -> float:
    grads = [p.grad for p in bert_module(nlp).parameters() if p.grad is not None]
    return float(sum(float(g.abs().sum()) for g in grads))


def assert_gradients_reach_transformer(nlp: Language) -> None:
    """One update without an optimizer must leave non-zero gradients on the BERT weights."""
    assert bert_grad_norm(nlp) == 0.0
    losses = nlp.update(make_examples(nlp), sgd=False)
    assert losses["globalpointer_spans"] > 0.0
    assert losses["transformer"] > 0.0
    assert bert_grad_norm(nlp) > 0.0


def test_training_data_is_nested():
    """Guard the premise of the overfitting test: >=3 labels, stacked labels, nested spans."""
    labels = {label for _, spans in TRAIN_DATA for *_, label in spans}
    assert len(labels) >= 3
    stacked = nested = False
    for _, spans in TRAIN_DATA:
        offsets = [(s, e) for s, e, _ in spans]
        stacked |= len(offsets) != len(set(offsets))
        nested |= any(
            s1 <= s2 and e2 <= e1 and (s1, e1) != (s2, e2)
            for s1, e1 in offsets
            for s2, e2 in offsets
        )
    assert stacked and nested
    assert len(LONG_TEXT) == 600 and not any(char.isspace() for char in LONG_TEXT)


# ----------------------------------------------------------------------------- overfitting


def test_overfit_nested_entities(trained):
    history = trained["history"]
    step, _, f_score = history[-1]
    assert f_score == 1.0, f"{trained['variant']}: spans F1 never reached 1.0: {history}"
    assert history[-1][1] < history[0][1], "loss did not decrease"
    per_type = trained["scores"]["spans_sc_per_type"]
    assert set(per_type) == {"GPE", "LOC", "ORG", "PER"}
    assert all(scores["f"] == 1.0 for scores in per_type.values())
    # The nested and stacked spans really are predicted, not just scored as matched.
    doc = trained["nlp"](TRAIN_DATA[0][0])
    predicted = {(span.start, span.end, span.label_) for span in doc.spans[SPANS_KEY]}
    assert predicted == set(TRAIN_DATA[0][1])
    # doc.ents gets a flat subset.
    assert len(doc.ents) >= 1
    assert all(ent1.end <= ent2.start for ent1, ent2 in zip(doc.ents, doc.ents[1:]))


# ----------------------------------------------------------------------------- listener wiring


def test_listener_registered_after_initialize(bert_dir):
    nlp = make_nlp(bert_dir)
    # Linked when the pipeline is built from config...
    assert_listener_wired(nlp)
    nlp.initialize(lambda: make_examples(nlp))
    assert_listener_wired(nlp)
    listener = the_listener(nlp)
    assert listener.upstream_name == "*"
    # The listener knows the transformer's width, which the head uses as its input width.
    width = bert_module(nlp).config.hidden_size
    assert listener.get_dim("nO") == width
    assert nlp.get_pipe("globalpointer_spans").model.get_ref("head").get_dim("nI") == width


@pytest.mark.parametrize("grad_factor", [1.0, 0.0])
def test_gradients_reach_transformer_only_with_grad_factor(bert_dir, grad_factor):
    fix_random_seed(SEED)
    nlp = make_nlp(bert_dir, grad_factor=grad_factor)
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    # Weight decay would move the BERT weights even with all-zero gradients.
    optimizer.L2 = 0.0
    bert_before, head_before = bert_weights(nlp), head_weights(nlp)

    losses = nlp.update(examples, sgd=optimizer)
    # Language.update runs Transformer.finish_update *before* the downstream
    # component backpropagates, so gradients from one update are applied at the next.
    grad_norm = bert_grad_norm(nlp)
    for _ in range(2):
        losses = nlp.update(examples, sgd=optimizer, losses=losses)
    bert_changed = [
        name for name, p in bert_module(nlp).named_parameters() if not torch.equal(p, bert_before[name])
    ]
    head_changed = [
        name for name, p in head_weights(nlp).items() if not torch.equal(p, head_before[name])
    ]

    assert head_changed, "the GlobalPointer head was not trained"
    if grad_factor:
        assert grad_norm > 0.0
        assert losses["transformer"] > 0.0
        assert bert_changed, "no transformer weight changed with grad_factor=1.0"
        assert "embeddings.word_embeddings.weight" in bert_changed
        assert "encoder.layer.0.attention.self.query.weight" in bert_changed
    else:
        assert grad_norm == 0.0
        assert losses["transformer"] == 0.0
        assert bert_changed == [], f"transformer weights changed with grad_factor=0.0: {bert_changed}"


# ----------------------------------------------------------------------------- round trips


EVAL_TEXTS = [text for text, _ in TRAIN_DATA] + [UNSEEN_TEXT]


def test_round_trip_to_disk(trained, tmp_path):
    nlp = trained["nlp"]
    before = predictions(nlp, EVAL_TEXTS)
    assert any(out["spans"] for out in before), "nothing predicted: the comparison would be vacuous"
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.pipe_names == ["transformer", "globalpointer_spans"]
    assert loaded.get_pipe("globalpointer_spans").labels == nlp.get_pipe("globalpointer_spans").labels
    assert_listener_wired(loaded)
    assert_same_predictions(before, predictions(loaded, EVAL_TEXTS))
    assert_gradients_reach_transformer(loaded)


def test_round_trip_to_disk_does_not_need_the_original_model_dir(trained, tmp_path):
    """The saved pipeline carries the BERT weights and tokenizer itself."""
    nlp = trained["nlp"]
    nlp.to_disk(tmp_path / "pipeline")
    missing = (tmp_path / "no-such-model").as_posix()
    loaded = spacy.load(
        tmp_path / "pipeline", config={"components": {"transformer": {"model": {"name": missing}}}}
    )
    assert_same_predictions(predictions(nlp, EVAL_TEXTS), predictions(loaded, EVAL_TEXTS))


def test_round_trip_bytes(trained, bert_dir):
    nlp = trained["nlp"]
    before = predictions(nlp, EVAL_TEXTS)
    architecture = ARCHITECTURES[trained["variant"]]
    fresh = make_nlp(bert_dir, architecture)
    # Sanity: an uninitialised pipeline from the same config is not the trained one.
    assert not fresh.get_pipe("globalpointer_spans").labels
    fresh.from_bytes(nlp.to_bytes())
    assert fresh.get_pipe("globalpointer_spans").labels == nlp.get_pipe("globalpointer_spans").labels
    assert_listener_wired(fresh)
    assert_same_predictions(before, predictions(fresh, EVAL_TEXTS))
    assert_gradients_reach_transformer(fresh)


def test_round_trip_pickle(trained):
    nlp = trained["nlp"]
    before = predictions(nlp, EVAL_TEXTS)
    unpickled = pickle.loads(pickle.dumps(nlp))
    assert unpickled is not nlp
    assert_listener_wired(unpickled)
    # A real copy: the listener is not shared with the original pipeline.
    assert the_listener(unpickled) is not the_listener(nlp)
    assert_same_predictions(before, predictions(unpickled, EVAL_TEXTS))
    assert_gradients_reach_transformer(unpickled)


# ----------------------------------------------------------------------------- long documents


def test_long_document_is_strided(trained):
    nlp = trained["nlp"]
    bert = bert_module(nlp)
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    # Unstrided, the document would not fit the position embeddings.
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > bert.config.max_position_embeddings

    long_doc, short_doc = nlp.pipe([LONG_TEXT, UNSEEN_TEXT])
    assert len(long_doc) == 600
    trf_data = long_doc._.trf_data
    wordpieces = trf_data.wordpieces.input_ids
    assert wordpieces.shape[0] > 1, "the long doc was not split into strided windows"
    assert wordpieces.shape[1] <= 64 + 2
    # Every token is aligned to at least one wordpiece...
    assert (numpy.asarray(trf_data.align.lengths) > 0).all()

    pipe = nlp.get_pipe("globalpointer_spans")
    vectors = pipe.model.get_ref("tok2vec").predict([long_doc])[0]
    assert vectors.shape == (600, bert.config.hidden_size)
    assert (numpy.abs(vectors).sum(axis=1) > 0).all()
    # ... and gets logits: one row of span scores per start token.
    logits = pipe.predict([long_doc, short_doc])
    assert logits[0].shape == (len(pipe.labels), 600, 600)
    assert logits[1].shape == (len(pipe.labels), len(short_doc), len(short_doc))
    valid = numpy.arange(600)[:, None] + numpy.arange(600)[None, :] < 600
    assert numpy.isfinite(logits[0]).all()
    assert (logits[0][:, valid] > numpy.finfo(logits[0].dtype).min).all()
    # Single-token spans at the very end (positions past 512) are scored too.
    assert numpy.ptp(logits[0][:, 512:, 0]) > 0
    for span in long_doc.spans[SPANS_KEY]:
        assert 0 <= span.start < span.end <= 600


# ----------------------------------------------------------------------------- empty documents
# spacy-transformers hands the listener a (0, 0) array (width 0!) for an empty doc
# in a mixed batch, and its pooling crashes on a batch in which *every* doc is
# empty: the component must handle both (regression tests).


def test_empty_doc_in_a_mixed_batch(bert_dir):
    fix_random_seed(SEED)
    nlp = make_nlp(bert_dir)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    empty, full = nlp.pipe(["", TRAIN_DATA[0][0]])
    assert len(empty.spans[SPANS_KEY]) == 0
    assert SPANS_KEY in full.spans
    losses = nlp.update(examples + [Example(nlp.make_doc(""), nlp.make_doc(""))], sgd=False)
    assert losses["globalpointer_spans"] > 0.0
    assert bert_grad_norm(nlp) > 0.0


def test_all_empty_batch(trained):
    nlp = trained["nlp"]
    doc = nlp("")
    assert len(doc) == 0
    assert len(doc.spans[SPANS_KEY]) == 0
    assert [len(doc.spans[SPANS_KEY]) for doc in nlp.pipe(["", ""])] == [0, 0]
