"""Long documents: band-limited scoring through the component, 50,000-character docs, batching."""
import textwrap

import numpy
import pytest
import torch

from spacy_globalpointer import pipe as pipe_module
from nested_data import NESTED, make_examples
from util import EFFICIENT, ORIGINAL, assert_same_output, build_nlp, doc_output, outputs, run_python, train, transformer_nlp

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
# Growth of the peak RSS of a fresh process while it annotates 50k chars (measured from after loading
# the pipeline): n x n logits would need 7 labels x 50k x 50k x 4 bytes = 70 GB.
MAX_GROWTH_MB = 1_500


def train_with_a_longer_doc(nlp, steps: int):
    return train(nlp, make_examples(nlp, NESTED + [LONGER]), steps=steps)


def fifty_k_text() -> str:
    text = ("".join(TEXTS) * (FIFTY_K // len("".join(TEXTS)) + 1))[:FIFTY_K]
    assert len(text) == FIFTY_K
    return text


def spans_and_scores(nlp, texts):
    """Per text: the spans and their scores (not the ents), via ``nlp.pipe``."""
    return [{"spans": out["spans"], "scores": out["scores"]} for out in outputs(nlp, texts)]


@pytest.fixture(scope="module", params=[EFFICIENT, ORIGINAL], ids=["efficient", "original"])
def trained(request):
    return train_with_a_longer_doc(build_nlp(request.param), steps=40)


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
        full = spans_and_scores(trained, texts)
        pipe.cfg["max_length"] = limit
        band_logits = pipe.predict(docs)
        banded = spans_and_scores(trained, texts)
    finally:
        pipe.cfg["threshold"] = 0.5
        pipe.cfg["max_length"] = None
    for doc, full_doc, band_doc in zip(docs, full_logits, band_logits):
        assert band_doc.shape == (len(pipe.labels), len(doc), min(limit, len(doc)))
        numpy.testing.assert_allclose(band_doc, full_doc[:, :, :limit], rtol=1e-5, atol=1e-5)
    expected = []
    for out in full:
        keep = [end - start <= limit for start, end, _ in out["spans"]]
        expected.append({field: [value for value, kept in zip(out[field], keep) if kept] for field in out})
    assert_same_output(expected, banded)
    assert sum(len(out["spans"]) for out in banded) > 0
    if limit < 8:  # the gold (and predicted) spans go up to 8 tokens: some must have been left out
        assert sum(len(out["spans"]) for out in full) > sum(len(out["spans"]) for out in banded)


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


# ----------------------------------------------------------------------------- 50k characters


ANNOTATE_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import spacy, torch
    torch.set_num_threads(1)
    nlp = spacy.load(sys.argv[1])
    pipe = nlp.get_pipe("globalpointer_spans")
    shapes = []
    predict = pipe.predict

    def recording_predict(docs):
        logits = predict(docs)
        shapes.extend(list(doc_logits.shape) for doc_logits in logits)
        return logits

    pipe.predict = recording_predict
    text = sys.stdin.read()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = nlp(text)
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps({
        "growth_mb": growth_mb,
        "shapes": shapes,
        "n_tokens": len(doc),
        "span_bounds": [[span.start, span.end] for span in doc.spans["sc"]],
        "n_scores": len(doc.spans["sc"].attrs["scores"]),
        "n_ents": len(doc.ents),
        "windows": list(doc._.trf_data.wordpieces.input_ids.shape) if doc.has_extension("trf_data") else None,
    }))
    """
)


def annotate_long_doc(nlp, tmp_path, max_length: int):
    """``nlp`` on 50,000 characters in a fresh process: the doc is annotated, the logits are
    ``n x max_length``, and the process's peak memory grows by less than ``MAX_GROWTH_MB``."""
    nlp.to_disk(tmp_path / "pipeline")
    out = run_python(ANNOTATE_SCRIPT, tmp_path / "pipeline", stdin=fifty_k_text())
    assert out["growth_mb"] < MAX_GROWTH_MB
    assert out["shapes"] == [[len(nlp.get_pipe("globalpointer_spans").labels), FIFTY_K, max_length]]
    assert out["n_tokens"] == FIFTY_K
    bounds = out["span_bounds"]
    assert len(bounds) > 0, "nothing predicted on the 50k-character document"
    assert all(1 <= end - start <= max_length for start, end in bounds)
    assert out["n_scores"] == len(bounds)
    assert out["n_ents"] > 0
    # The training entities are found all along the document, not just at its start.
    assert max(start for start, _ in bounds) > FIFTY_K - 100
    return out


def test_50k_character_document_with_the_default_encoder(tmp_path):
    """The component's default encoder (hash embeddings, 2 window layers and a BiLSTM) and head, max_length=64."""
    nlp = train_with_a_longer_doc(build_nlp(tok2vec=None, head_size=64, max_length=64), steps=30)
    annotate_long_doc(nlp, tmp_path, 64)


def test_50k_character_document_with_a_transformer_listener(tmp_path):
    """Strided windows of 64 wordpieces over a tiny BERT, the head over the whole doc."""
    pytest.importorskip("spacy_transformers")
    from tiny_bert import write_tiny_bert

    nlp = transformer_nlp(write_tiny_bert(tmp_path / "bert", TEXTS, seed=0), max_length=64)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_with_a_longer_doc(nlp, steps=30)
    finally:
        torch.set_num_threads(previous_threads)
    windows = annotate_long_doc(nlp, tmp_path, 64)["windows"]
    assert windows[0] > FIFTY_K // 64 and windows[1] <= 64 + 2


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
        alone = [outputs(trained, [text])[0] for text in texts]
        batches = []
        original_predict = pipe.predict

        def spy(docs):
            batches.append([len(doc) for doc in docs])
            return original_predict(docs)

        monkeypatch.setattr(pipe, "predict", spy)
        docs = list(trained.pipe(texts, batch_size=len(texts)))
        together = [doc_output(doc) for doc in docs]
    finally:
        pipe.cfg["max_length"] = None
    assert [doc.text for doc in docs] == texts
    assert_same_output(alone, together)
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
