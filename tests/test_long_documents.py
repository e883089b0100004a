"""Long documents: band-limited scoring through the component, 50,000-character docs, batching."""
import resource

import numpy
import pytest
import spacy
import torch
from thinc.api import fix_random_seed

from spacy_globalpointer import pipe as pipe_module
from spacy_globalpointer.head import EfficientGlobalPointer, GlobalPointer
from nested_data import NESTED, SMALL_TOK2VEC, make_examples, span_tuples

EFFICIENT = "spacy-globalpointer.EfficientGlobalPointer.v1"
ORIGINAL = "spacy-globalpointer.GlobalPointer.v1"
TEXTS = [text for text, _ in NESTED]


def run_together(data, times: int):
    """One (text, entities) item: the texts of ``data`` run together ``times`` over."""
    text, entities = "", []
    for _ in range(times):
        for item_text, item_entities in data:
            entities += [(start + len(text), end + len(text), label) for start, end, label in item_entities]
            text += item_text
    return text, entities


# ~100 tokens: in training it makes span offsets up to ~100 tokens negatives, as in a long doc.
LONGER = run_together(NESTED, 2)
LONGER_TEXT = LONGER[0]
FIFTY_K = 50_000
# Growth of this process's peak RSS while annotating 50k chars (ru_maxrss only rises, so this can
# under-count, never over-count): n x n logits would need 7 labels x 50k x 50k x 4 bytes = 70 GB.
MAX_GROWTH_MB = 1_500


def build_nlp(architecture: str = EFFICIENT, tok2vec=SMALL_TOK2VEC, head_size: int = 16, **settings):
    nlp = spacy.blank("zh")
    model = {"@architectures": architecture, "head_size": head_size}
    if tok2vec is not None:
        model["tok2vec"] = tok2vec
    nlp.add_pipe("globalpointer_spans", config={"model": model, **settings})
    return nlp


def train(nlp, steps: int, seed: int = 0):
    fix_random_seed(seed)
    examples = make_examples(nlp, NESTED + [LONGER])
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.005
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return nlp


def fifty_k_text() -> str:
    text = ("".join(TEXTS) * (FIFTY_K // len("".join(TEXTS)) + 1))[:FIFTY_K]
    assert len(text) == FIFTY_K
    return text


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def predictions(nlp, texts):
    """Per text: ((start, end, label) spans, their scores), via ``nlp.pipe``."""
    out = []
    for doc in nlp.pipe(texts):
        group = doc.spans["sc"]
        out.append((span_tuples(doc), numpy.asarray(group.attrs["scores"], dtype="float32")))
    return out


def assert_same(expected, got):
    assert len(expected) == len(got)
    for (spans_a, scores_a), (spans_b, scores_b) in zip(expected, got):
        assert spans_a == spans_b
        numpy.testing.assert_allclose(scores_a, scores_b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module", params=[EFFICIENT, ORIGINAL], ids=["efficient", "original"])
def trained(request):
    return train(build_nlp(request.param), steps=40)


# ----------------------------------------------------------------------------- band == full


@pytest.mark.parametrize("limit", [1, 2, 4, 8])
def test_band_limited_prediction_is_the_full_prediction_within_the_limit(trained, limit):
    pipe = trained.get_pipe("globalpointer_spans")
    texts = TEXTS + [LONGER_TEXT]
    docs = [trained.make_doc(text) for text in texts]
    # A low threshold predicts many spans, so that many cells are compared.
    pipe.cfg["threshold"] = 0.2
    try:
        full_logits = pipe.predict(docs)
        full = predictions(trained, texts)
        pipe.cfg["max_length"] = limit
        band_logits = pipe.predict(docs)
        banded = predictions(trained, texts)
    finally:
        pipe.cfg["threshold"] = 0.5
        pipe.cfg["max_length"] = None
    for doc, full_doc, band_doc in zip(docs, full_logits, band_logits):
        assert band_doc.shape == (len(pipe.labels), len(doc), min(limit, len(doc)))
        numpy.testing.assert_allclose(band_doc, full_doc[:, :, :limit], rtol=1e-5, atol=1e-5)
    expected = []
    for spans, scores in full:
        keep = [end - start <= limit for start, end, _ in spans]
        expected.append(([span for span, kept in zip(spans, keep) if kept], scores[keep]))
    assert_same(expected, banded)
    assert sum(len(spans) for spans, _ in banded) > 0
    if limit < 8:  # the gold (and predicted) spans go up to 8 tokens: some must have been left out
        assert sum(len(spans) for spans, _ in full) > sum(len(spans) for spans, _ in banded)


def take_head_grads(pipe):
    """The torch head's accumulated weight gradients, which are then cleared."""
    module = pipe.model.get_ref("head").layers[0].shims[0]._model
    grads = {name: param.grad.clone() for name, param in module.named_parameters()}
    module.zero_grad()
    return grads


@pytest.mark.parametrize("architecture", [EFFICIENT, ORIGINAL])
def test_band_limited_loss_and_gradients_equal_the_full_computation(architecture):
    """With every gold span within the limit, the band-limited loss is the full
    computation with the spans longer than the limit left out of the candidates
    (masked like padding): same loss, same gradient on every cell of the band,
    and the same gradients for the token vectors and the head's weights."""
    limit = 8
    nlp = build_nlp(architecture)
    examples = make_examples(nlp, NESTED)
    assert max(end - start for _, spans in NESTED for start, end, _ in spans) == limit
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("globalpointer_spans")
    head = pipe.model.get_ref("head")
    docs = [eg.predicted for eg in examples]
    vectors = pipe.model.get_ref("tok2vec").predict(docs)

    head.attrs["max_span_length"] = None
    full, backprop_full = head.begin_update(vectors)
    excluded = [logits.copy() for logits in full]
    for logits in excluded:
        logits[:, :, limit:] = numpy.finfo(logits.dtype).min
    loss_full, d_full = pipe.get_loss(examples, excluded)
    d_vectors_full = backprop_full(d_full)
    grads_full = take_head_grads(pipe)

    head.attrs["max_span_length"] = limit
    banded, backprop_band = head.begin_update(vectors)
    loss_band, d_band = pipe.get_loss(examples, banded)
    d_vectors_band = backprop_band(d_band)
    grads_band = take_head_grads(pipe)

    assert loss_band == pytest.approx(loss_full, rel=1e-5)
    assert any(d.shape[2] < f.shape[2] for d, f in zip(d_band, d_full)), "the band must be narrower than a doc"
    for d_b, d_f in zip(d_band, d_full):
        assert d_b.shape == d_f[:, :, :limit].shape
        numpy.testing.assert_allclose(d_b, d_f[:, :, :limit], rtol=1e-5, atol=1e-8)
        assert (d_f[:, :, limit:] == 0).all()
    for d_b, d_f in zip(d_vectors_band, d_vectors_full):
        numpy.testing.assert_allclose(d_b, d_f, rtol=1e-4, atol=1e-7)
    assert any(numpy.abs(d).sum() > 0 for d in d_vectors_band)
    for name in grads_full:
        torch.testing.assert_close(grads_band[name], grads_full[name], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("head_class", [EfficientGlobalPointer, GlobalPointer])
def test_band_limited_half_precision_mask_is_finite(head_class):
    torch.manual_seed(5)
    head = head_class(8, 2, 4).half()
    logits = head(torch.randn(2, 9, 8).half(), torch.tensor([9, 4]), 3)
    assert logits.shape == (2, 2, 9, 3)
    assert torch.isfinite(logits).all()
    assert (logits[1, :, 4:] == torch.finfo(torch.float16).min).all()
    assert (logits[1, :, 2, 2:] == torch.finfo(torch.float16).min).all()
    assert (logits[1, :, :2] > torch.finfo(torch.float16).min).all()


# ----------------------------------------------------------------------------- 50k characters


def annotate_long_doc(nlp, monkeypatch, max_length: int):
    """``nlp`` on 50,000 characters: the doc is annotated, the logits are ``n x max_length``, memory bounded."""
    pipe = nlp.get_pipe("globalpointer_spans")
    shapes = []
    predict = pipe.predict

    def recording_predict(docs):
        logits = predict(docs)
        shapes.extend(doc_logits.shape for doc_logits in logits)
        return logits

    monkeypatch.setattr(pipe, "predict", recording_predict)
    before = peak_rss_mb()
    doc = nlp(fifty_k_text())
    assert peak_rss_mb() - before < MAX_GROWTH_MB
    assert shapes == [(len(pipe.labels), FIFTY_K, max_length)]
    assert len(doc) == FIFTY_K
    spans = doc.spans["sc"]
    assert len(spans) > 0, "nothing predicted on the 50k-character document"
    assert all(1 <= len(span) <= max_length for span in spans)
    assert len(spans.attrs["scores"]) == len(spans)
    assert len(doc.ents) > 0
    # The training entities are found all along the document, not just at its start.
    assert max(span.start for span in spans) > FIFTY_K - 100
    return doc


def test_50k_character_document_with_the_cnn_encoder(monkeypatch):
    """The component's default encoder (HashEmbedCNN width 96, depth 4) and head, max_length=64."""
    nlp = train(build_nlp(tok2vec=None, head_size=64, max_length=64), steps=30)
    annotate_long_doc(nlp, monkeypatch, 64)


TRANSFORMER_CONFIG = """
[nlp]
lang = "zh"
pipeline = ["transformer", "globalpointer_spans"]

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{bert_dir}"
tokenizer_config = {{"use_fast": true}}
transformer_config = {{}}
mixed_precision = false
grad_scaler_config = {{}}

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 64
stride = 48

[components.globalpointer_spans]
factory = "globalpointer_spans"
max_length = 64

[components.globalpointer_spans.model]
@architectures = "spacy-globalpointer.EfficientGlobalPointer.v1"
head_size = 64

[components.globalpointer_spans.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[components.globalpointer_spans.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


def test_50k_character_document_with_a_transformer_listener(tmp_path, monkeypatch):
    """Strided windows of 64 wordpieces over a tiny BERT, the head over the whole doc."""
    pytest.importorskip("spacy_transformers")
    try:
        from .tiny_bert import write_tiny_bert
    except ImportError:
        from tiny_bert import write_tiny_bert
    from thinc.api import Config

    bert_dir = write_tiny_bert(tmp_path / "bert", TEXTS, seed=0)
    config = Config().from_str(TRANSFORMER_CONFIG.format(bert_dir=bert_dir.as_posix()))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(nlp, steps=30)
        doc = annotate_long_doc(nlp, monkeypatch, 64)
        windows = doc._.trf_data.wordpieces.input_ids
        assert windows.shape[0] > FIFTY_K // 64 and windows.shape[1] <= 64 + 2
    finally:
        torch.set_num_threads(previous_threads)


# ----------------------------------------------------------------------------- batching


@pytest.mark.parametrize("max_length", [None, 6])
def test_pipe_batches_by_length_keeps_order_and_output(trained, monkeypatch, max_length):
    pipe = trained.get_pipe("globalpointer_spans")
    n_labels = len(pipe.labels)
    cap = n_labels * 30 * 30 * 4  # four docs of 30 tokens, never the long doc with another
    monkeypatch.setattr(pipe_module, "MAX_BATCH_CELLS", cap)
    texts = [TEXTS[0], LONGER_TEXT, TEXTS[1], TEXTS[3], LONGER_TEXT[:31], TEXTS[2], "", TEXTS[0][:3]] * 2
    pipe.cfg["max_length"] = max_length
    try:
        alone = [predictions(trained, [text])[0] for text in texts]
        batches = []
        original_predict = pipe.predict

        def spy(docs):
            batches.append([len(doc) for doc in docs])
            return original_predict(docs)

        monkeypatch.setattr(pipe, "predict", spy)
        docs = list(trained.pipe(texts, batch_size=len(texts)))
        together = [(span_tuples(doc), doc.spans["sc"].attrs["scores"]) for doc in docs]
    finally:
        pipe.cfg["max_length"] = None
    assert [doc.text for doc in docs] == texts
    assert_same(alone, together)
    assert sorted(n for batch in batches for n in batch) == sorted(len(doc) for doc in docs)
    for batch in batches:
        assert batch == sorted(batch, reverse=True)
        band = min(max_length or batch[0], batch[0])
        assert len(batch) == 1 or len(batch) * n_labels * batch[0] * band <= cap
    if max_length is None:
        assert [[len(LONGER_TEXT)]] * 2 == [batch for batch in batches if len(LONGER_TEXT) in batch]
    assert any(len(batch) > 1 for batch in batches)


def test_pipe_error_handler_skips_only_the_failing_batch(trained, monkeypatch):
    pipe = trained.get_pipe("globalpointer_spans")
    monkeypatch.setattr(pipe_module, "MAX_BATCH_CELLS", 1)  # one doc per batch
    original_predict = pipe.predict

    def predict(docs):
        if any("肺癌" in doc.text for doc in docs):
            raise ValueError("boom")
        return original_predict(docs)

    failures = []
    monkeypatch.setattr(pipe, "predict", predict)
    handler = lambda name, component, docs, error: failures.append([doc.text for doc in docs])  # noqa: E731
    monkeypatch.setattr(pipe, "error_handler", handler, raising=False)
    docs = list(pipe.pipe((trained.make_doc(text) for text in TEXTS), batch_size=10))
    assert failures == [[TEXTS[0]]]
    assert [doc.text for doc in docs] == TEXTS[1:]
