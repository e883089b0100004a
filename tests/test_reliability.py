"""Reliability: awkward inputs, awkward training data, persistence faults and concurrency.

One small pipeline (CNN encoder, small widths) is trained once for the module on nested, crossing,
re-tokenised and ents-plus-spans data; the property tests run it at low thresholds so that many
spans come out, and check the invariants of every doc it writes.
"""
import copy
import shutil
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import pytest
import spacy
import srsly
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

from nested_data import FLAT, NESTED, SMALL_TOK2VEC, make_examples, span_tuples
from util import PIPE, assert_same_output, build_nlp, doc_output, predict_in_fresh_process, train

PROPERTY_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Gold spans of one label that nest, cross and repeat (the repeat must not break the loss).
CROSSING: Tuple[str, List[Tuple[int, int, str]]] = (
    "南京市长江大桥通车了。",
    [(0, 3, "LOC"), (2, 7, "LOC"), (3, 5, "LOC"), (3, 5, "LOC"), (0, 4, "PER"), (2, 4, "PER")],
)
# A reference tokenised into words, while the pipeline tokenises one token per character.
WORDS = ["张医生", "在", "北京协和医院", "工作", "。"]
WORD_SPANS = [(0, 1, "PER"), (2, 3, "ORG")]
WORD_SPANS_AS_CHARS = [(0, 3, "PER"), (4, 10, "ORG")]
# Gold in doc.spans and, different, in doc.ents: doc.spans wins, the ents are not read.
BOTH_TEXT = "李四和王五去了广州。"
BOTH_SPANS = [(0, 2, "PER"), (7, 9, "LOC")]
BOTH_ENTS = [(3, 5, "ENTS_ONLY")]

TRAIN_TEXTS = [text for text, _ in NESTED + FLAT] + [CROSSING[0], "".join(WORDS), BOTH_TEXT]


def training_examples(nlp: Language) -> List[Example]:
    examples = make_examples(nlp, NESTED + [CROSSING])
    words = Doc(nlp.vocab, words=WORDS, spaces=[False] * len(WORDS))
    words.spans["sc"] = [Span(words, start, end, label) for start, end, label in WORD_SPANS]
    examples.append(Example(nlp.make_doc(words.text), words))
    both = nlp.make_doc(BOTH_TEXT)
    both.spans["sc"] = [Span(both, start, end, label) for start, end, label in BOTH_SPANS]
    both.set_ents([Span(both, start, end, label) for start, end, label in BOTH_ENTS], default="outside")
    examples.append(Example(nlp.make_doc(BOTH_TEXT), both))
    return examples


@pytest.fixture(scope="module")
def trained() -> Language:
    nlp = build_nlp()
    return train(nlp, training_examples(nlp), steps=50)


@contextmanager
def configured(nlp: Language, **cfg: Any):
    """Temporarily change the component's settings (the module's pipeline is shared).

    In its ``cfg`` and in ``nlp.config``: a saved pipeline takes its settings from its config.
    """
    pipe = nlp.get_pipe(PIPE)
    config = nlp.get_pipe_config(PIPE)
    saved = {key: copy.deepcopy(pipe.cfg[key]) for key in cfg}
    saved_config = {key: copy.deepcopy(config[key]) for key in cfg}
    pipe.cfg.update(cfg)
    config.update(cfg)
    try:
        yield pipe
    finally:
        pipe.cfg.update(saved)
        config.update(saved_config)


def check_invariants(doc: Doc, pipe) -> None:
    """What every doc leaving the component must satisfy, whatever its text."""
    group = doc.spans[pipe.key]
    scores = numpy.asarray(group.attrs["scores"])
    label_ids = {label: i for i, label in enumerate(pipe.labels)}
    keys = [(span.start, span.end, label_ids[span.label_]) for span in group]
    # Sorted by (start, end, label) and unique.
    assert keys == sorted(set(keys))
    assert all(span.doc is doc for span in group)
    assert scores.shape == (len(keys),)
    assert numpy.isfinite(scores).all() and ((scores >= 0.0) & (scores <= 1.0)).all()
    max_length = pipe.cfg["max_length"]
    for (start, end, label), score in zip(keys, scores.tolist()):
        assert 0 <= start < end <= len(doc)
        assert max_length is None or end - start <= max_length
        threshold = pipe.cfg["label_thresholds"].get(pipe.labels[label], pipe.cfg["threshold"])
        assert score >= threshold - 1e-6
    if not pipe.cfg["write_ents"]:
        return
    ents = [(ent.start, ent.end, label_ids[ent.label_]) for ent in doc.ents]
    assert set(ents) <= set(keys)
    covered = numpy.zeros(len(doc), dtype=int)
    for start, end, _ in ents:
        covered[start:end] += 1
    assert covered.max(initial=0) <= 1
    # Maximal: every span left out of doc.ents overlaps one that is in.
    for start, end, _ in set(keys) - set(ents):
        assert covered[start:end].any()
    # Every token is annotated (B, I or O): nothing is left missing.
    assert all(token.ent_iob_ in ("B", "I", "O") for token in doc)


# --- random text --------------------------------------------------------------------------------


def code_points(low: int, high: int) -> st.SearchStrategy[str]:
    return st.characters(min_codepoint=low, max_codepoint=high, exclude_categories=["Cs"])


def runs(alphabet: st.SearchStrategy[str], max_size: int = 6) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=1, max_size=max_size)


CHUNKS = st.one_of(
    st.sampled_from(TRAIN_TEXTS),  # so that entities (and nesting) show up
    runs(code_points(0x4E00, 0x9FFF)),  # CJK
    runs(st.sampled_from("abcxyzABCXYZéüßÆøΩЖж")),  # Latin and more
    runs(st.sampled_from("0123456789０１２３.,%")),  # ASCII and full-width digits
    runs(code_points(0x1F300, 0x1FAFF), 3),  # emoji
    st.sampled_from(["👩\u200d👩\u200d👧", "🇨🇳", "❤\ufe0f", "👍🏽", "1\ufe0f\u20e3"]),  # emoji sequences
    runs(code_points(0x0300, 0x036F), 3),  # combining marks, also at the start of a doc
    runs(code_points(0x20000, 0x2FA1F), 3),  # astral plane (CJK extensions)
    st.lists(st.sampled_from([" ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2028", "\u200b"]), min_size=1, max_size=6).map(
        "".join
    ),  # whitespace runs
    runs(st.characters(codec="utf-8"), 3),  # anything encodable, controls and NUL included
)
TEXTS = st.lists(CHUNKS, max_size=6).map("".join)


@st.composite
def settings_strategy(draw, labels: Tuple[str, ...]) -> Dict[str, Any]:
    label_thresholds = draw(st.dictionaries(st.sampled_from(labels), st.sampled_from([0.05, 0.3, 0.7]), max_size=3))
    return {
        "threshold": draw(st.sampled_from([0.02, 0.1, 0.3, 0.5])),
        "label_thresholds": label_thresholds,
        "max_length": draw(st.sampled_from([None, 1, 3, 8])),
        "write_ents": draw(st.booleans()),
        "ents_strategy": draw(st.sampled_from(["score", "length"])),
    }


LABELS = ("LOC", "ORG", "PER", "DIS", "BOD", "SYM", "ITE")


def segment(text: str, cuts: List[bool]) -> List[str]:
    """Split ``text`` into words: a cut after character i where ``cuts[i]``."""
    words, current = [], ""
    for i, char in enumerate(text):
        current += char
        if i < len(cuts) and cuts[i]:
            words.append(current)
            current = ""
    return words + ([current] if current else [])


def test_training_labels(trained):
    assert trained.get_pipe(PIPE).labels == LABELS


@settings(max_examples=60, **PROPERTY_SETTINGS)
@given(text=TEXTS, cfg=settings_strategy(LABELS), cuts=st.lists(st.booleans(), max_size=80))
def test_pipeline_invariants_on_random_text(trained, text, cfg, cuts):
    """Any text, as tokenised by the pipeline or as other words: no crash, and every invariant holds."""
    words = segment(text, cuts)
    other_tokens = Doc(trained.vocab, words=words, spaces=[False] * len(words))
    assert other_tokens.text == text
    with configured(trained, **cfg) as pipe:
        docs = list(trained.pipe([text, other_tokens]))
        assert docs[1] is other_tokens and len(docs[1]) == len(words)
        for doc in docs:
            check_invariants(doc, pipe)
        # Consistent with the threshold: raising every threshold keeps exactly the spans scoring above it.
        low = doc_output(docs[0])
        higher = min(cfg["threshold"] + 0.2, 0.99)
        raised = {label: max(value, higher) for label, value in cfg["label_thresholds"].items()}
        with configured(trained, threshold=higher, label_thresholds=raised):
            high = doc_output(trained(text))
    low_scores = {tuple(span): score for span, score in zip(low["spans"], low["scores"])}
    high_scores = {tuple(span): score for span, score in zip(high["spans"], high["scores"])}
    assert set(high_scores) <= set(low_scores)
    for span, score in low_scores.items():
        threshold = raised.get(span[2], higher)
        if span in high_scores:
            assert high_scores[span] == pytest.approx(score, abs=1e-6) and score >= threshold - 1e-6
        else:
            assert score <= threshold + 1e-6


LONG = "".join(TRAIN_TEXTS) + "Beijing 2024年 😀𠀀e\u0301 \n\n"
LONG_WITHOUT_LIMIT = LONG[:150]  # every span is scored: keep it moderate
LONG_WITH_LIMIT = LONG * 8  # over 1,000 tokens; max_length keeps the band narrow


@settings(max_examples=20, **PROPERTY_SETTINGS)
@given(
    texts=st.lists(TEXTS, min_size=1, max_size=3),
    max_length=st.sampled_from([None, 4]),
    batch_size=st.integers(1, 4),
    long_first=st.booleans(),
)
def test_output_does_not_depend_on_batch_composition(trained, texts, max_length, batch_size, long_first):
    long_text = LONG_WITHOUT_LIMIT if max_length is None else LONG_WITH_LIMIT
    with configured(trained, threshold=0.2, max_length=max_length) as pipe:
        alone = [doc_output(trained(text)) for text in texts]
        batch, mine = ([long_text] if long_first else []), []
        for text in texts:
            mine.append(len(batch))
            batch += [text, ""]
        batch.append(long_text)
        docs = list(trained.pipe(batch, batch_size=batch_size))
        for doc in docs:
            check_invariants(doc, pipe)
    assert_same_output(alone, [doc_output(docs[i]) for i in mine])


ODD_TEXTS = [
    "",
    " ",
    "   \n\t  ",
    "\u3000\u3000",
    "\n" * 50,
    "\r\n\r\n",
    "\x00",
    "\ufeff",
    "\u0301",  # a combining mark with nothing to combine with
    "e\u0301\u0302\u0303\u0304 Z\u0351\u0352\u0353\u0354",
    "😀",
    "👩\u200d👩\u200d👧🇨🇳👍🏽",
    "𠀀𠀁𠀂𪚥𰻞",
    "\U0010ffff\uffff\ufffd",
    "北京🙂大学 Beijing University 2024年１２月",
    "مرحبا بالعالم नमस्ते สวัสดี",
    "中" * 300,
    "北京大学附属医院的张医生说肺癌很危险。" + " " * 200 + "上海市长在复旦大学演讲。",
]


@pytest.mark.parametrize("max_length", [None, 2])
def test_odd_inputs(trained, max_length):
    with configured(trained, threshold=0.1, max_length=max_length) as pipe:
        docs = list(trained.pipe(ODD_TEXTS, batch_size=4))
        for doc, text in zip(docs, ODD_TEXTS):
            assert doc.text == text
            check_invariants(doc, pipe)
        assert len(docs[0]) == 0 and len(docs[0].spans["sc"]) == 0 and docs[0].ents == ()


def test_very_long_doc(trained):
    """Tens of thousands of tokens with max_length set: linear memory, and a sentence inside it is still found."""
    filler = "今天天气很好，我们去公园散步。😀 ok 123\n" * 700
    sentence, gold = NESTED[0]
    text = filler + sentence + filler
    offset = len(trained.make_doc(filler))
    with configured(trained, max_length=10) as pipe:
        doc = trained(text)
        check_invariants(doc, pipe)
    assert len(doc) > 25_000
    found = {(start - offset, end - offset, label) for start, end, label in span_tuples(doc)}
    assert len(found & set(gold)) >= len(gold) // 2


@settings(max_examples=30, **PROPERTY_SETTINGS)
@given(text=TEXTS)
@example(text="\n\n\n")
@example(text="  \t  ")
@example(text="\u3000")
@example(text="  \n  北京大学  \n  ")
@example(text="他得了糖尿病 \n 血糖很高。\n\n")
def test_no_span_starts_or_ends_on_whitespace(trained, text):
    """Whitespace-only docs get no entities, and no span begins or ends on a whitespace token.

    Training data never has such spans (the converters drop them as misaligned), so predicting one is
    never right; at low thresholds the model does predict them on unseen whitespace runs.
    """
    with configured(trained, threshold=0.05) as pipe:
        doc = trained(text)
        check_invariants(doc, pipe)
    bad = [(span.text, span.label_) for span in doc.spans["sc"] if span[0].is_space or span[-1].is_space]
    assert bad == [], f"{doc.text!r}: spans with whitespace at an edge: {bad}"
    if all(token.is_space for token in doc):
        assert len(doc.spans["sc"]) == 0 and doc.ents == ()


def test_docs_tokenised_unlike_the_training_docs(trained):
    """Docs with multi-character tokens (words, an English tokenizer's output): no crash, spans over their own tokens."""
    pipe = trained.get_pipe(PIPE)
    words = ["北京大学", "附属医院", "的", "张医生", "说", "肺癌", "很", "危险", "。"]
    english = spacy.blank("en").tokenizer("Dr. Zhang works at Peking University Hospital in 2024.")
    docs = [
        Doc(trained.vocab, words=words, spaces=[False] * len(words)),
        Doc(trained.vocab, words=[t.text for t in english], spaces=[bool(t.whitespace_) for t in english]),
    ]
    with configured(trained, threshold=0.05):
        for doc in trained.pipe(docs):
            check_invariants(doc, pipe)
            assert len(doc.spans["sc"]) > 0


# --- training data ------------------------------------------------------------------------------


def test_overlapping_gold_spans_of_one_label_are_all_learnt(trained):
    text, gold = CROSSING
    assert sorted(span_tuples(trained(text))) == sorted(set(gold))
    for text, gold in NESTED:
        assert sorted(span_tuples(trained(text))) == sorted(gold)


def test_reference_tokenised_into_words_is_aligned(trained):
    assert sorted(span_tuples(trained("".join(WORDS)))) == sorted(WORD_SPANS_AS_CHARS)


def test_doc_spans_win_over_doc_ents(trained):
    """A gold doc with both: the span group is the gold and doc.ents is not read (not even its labels)."""
    pipe = trained.get_pipe(PIPE)
    assert "ENTS_ONLY" not in pipe.labels
    assert sorted(span_tuples(trained(BOTH_TEXT))) == sorted(BOTH_SPANS)
    examples = [eg for eg in training_examples(trained) if eg.reference.text == BOTH_TEXT]
    scores = trained.evaluate(examples)
    assert set(scores["spans_sc_per_type"]) == {"PER", "LOC"} and scores["spans_sc_f"] == 1.0


def test_empty_span_group_falls_back_to_ents():
    """An absent or empty group means "read doc.ents" (the converters write both, or ents are all there is)."""
    nlp = build_nlp()
    reference = nlp.make_doc(BOTH_TEXT)
    reference.spans["sc"] = []
    reference.set_ents([Span(reference, 0, 2, "PER")])
    nlp.initialize(lambda: [Example(nlp.make_doc(BOTH_TEXT), reference)])
    assert nlp.get_pipe(PIPE).labels == ("PER",)


def test_gold_span_that_cannot_be_aligned_is_reported():
    """A gold span whose boundary falls inside a token of the predicted doc cannot be learnt: say so.

    ``Example.get_aligned_spans_y2x`` returns only the spans it can align, so without a check in the
    component such spans vanish from the loss without a word.
    """
    nlp = build_nlp()
    reference = nlp.make_doc("北京大学附属医院")
    reference.spans["sc"] = [Span(reference, 0, 2, "LOC"), Span(reference, 0, 4, "ORG")]
    predicted = Doc(nlp.vocab, words=["北京大学", "附属医院"], spaces=[False, False])
    example = Example(predicted, reference)
    nlp.initialize(lambda: [example])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.update([example])
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("1 gold span" in m and "align" in m and "北京" in m for m in messages), messages


def test_labels_missing_from_initialize_are_an_error():
    nlp = build_nlp()
    examples = make_examples(nlp, FLAT, as_ents=True)
    nlp.get_pipe(PIPE).initialize(lambda: examples, nlp=nlp, labels=["PER"])
    with pytest.raises(ValueError, match=r"'LOC'.*\[initialize\.components\.globalpointer_spans\.labels\]"):
        nlp.update(examples)


def test_empty_training_sets():
    with pytest.raises(TypeError, match=r"GlobalPointerSpans\.initialize.*got: \[\]"):
        build_nlp().initialize(lambda: [])
    nlp = build_nlp()
    without_entities = make_examples(nlp, [("今天没有任何实体。", []), ("", [])])
    with pytest.raises(ValueError, match=r"E143.*'globalpointer_spans'.*add_label"):
        nlp.initialize(lambda: without_entities)
    # Entity-free docs are fine once labels exist; an empty batch updates nothing.
    nlp = build_nlp()
    nlp.initialize(lambda: without_entities + make_examples(nlp, FLAT))
    assert nlp.update(without_entities)[PIPE] > 0.0
    assert nlp.update([]) == {}


# --- persistence --------------------------------------------------------------------------------

PERSISTENCE_TEXTS = [text for text, _ in NESTED] + ["", "   ", "北京🙂大学 Beijing 2024年", "𠀀e\u0301" * 5, "中" * 120]

def test_saved_pipeline_predicts_the_same_in_a_fresh_process(trained, tmp_path):
    with configured(trained, threshold=0.2, max_length=6):
        trained.to_disk(tmp_path / "pipeline")
        expected = [doc_output(doc) for doc in trained.pipe(PERSISTENCE_TEXTS)]
    assert sum(len(out["spans"]) for out in expected) > 20
    got = predict_in_fresh_process(sys.executable, tmp_path / "pipeline", PERSISTENCE_TEXTS, cwd=tmp_path)
    assert got["imported_before_load"] is False
    assert_same_output(expected, got["outputs"])


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    trained.to_disk(path)
    return path


def copy_with_weights(saved: Path, tmp_path: Path, weights: bytes) -> Tuple[Path, Path]:
    """A copy of the saved pipeline whose weights file holds ``weights``."""
    target = tmp_path / "pipeline"
    shutil.copytree(saved, target)
    model_file = target / PIPE / "model"
    model_file.write_bytes(weights)
    return target, model_file


def assert_clear_load_error(error: BaseException, model_file: Optional[Path], *details: str) -> None:
    message = str(error)
    assert isinstance(error, ValueError), f"{type(error).__name__}: {message}"
    assert f"'{PIPE}'" in message, message
    if model_file is not None:
        assert str(model_file) in message, message
    for detail in details:
        assert detail in message, message


@pytest.mark.parametrize("cut", ["half", "ten_bytes", "empty", "garbage"])
def test_corrupted_weights_file_is_a_clear_error(saved, tmp_path, cut):
    weights = (saved / PIPE / "model").read_bytes()
    corrupted = {
        "half": weights[: len(weights) // 2],
        "ten_bytes": weights[:10],
        "empty": b"",
        "garbage": b"not a msgpack file" * 8,
    }[cut]
    path, model_file = copy_with_weights(saved, tmp_path, corrupted)
    with pytest.raises(Exception) as info:
        spacy.load(path)
    assert_clear_load_error(info.value, model_file)


MISMATCHED = {
    "head_size": (dict(head_size=8), NESTED, "size mismatch"),
    "labels": (dict(), FLAT, "nO"),
    "encoder_width": (dict(tok2vec=dict(SMALL_TOK2VEC, width=32)), NESTED, "nO"),
}


@pytest.mark.parametrize("mismatch", sorted(MISMATCHED))
def test_mismatched_weights_file_is_a_clear_error(saved, tmp_path, mismatch):
    settings_, data, detail = MISMATCHED[mismatch]
    other = build_nlp(**settings_)
    other.initialize(lambda: make_examples(other, data))
    other.to_disk(tmp_path / "other")
    path, model_file = copy_with_weights(saved, tmp_path, (tmp_path / "other" / PIPE / "model").read_bytes())
    with pytest.raises(Exception) as info:
        spacy.load(path)
    assert_clear_load_error(info.value, model_file, detail)


def test_corrupted_weights_in_bytes_are_a_clear_error(trained):
    data = srsly.msgpack_loads(trained.get_pipe(PIPE).to_bytes())
    data["model"] = data["model"][: len(data["model"]) // 2]
    fresh = build_nlp().get_pipe(PIPE)
    with pytest.raises(Exception) as info:
        fresh.from_bytes(srsly.msgpack_dumps(data))
    assert_clear_load_error(info.value, None)


# --- concurrency --------------------------------------------------------------------------------

CONCURRENCY_TEXTS = PERSISTENCE_TEXTS + ODD_TEXTS[:14] + [LONG_WITHOUT_LIMIT]


def unseen_texts(n: int, seed: int) -> List[str]:
    """Texts of CJK Extension A characters: strings the vocab has not seen, added by the threads themselves."""
    rng = numpy.random.default_rng(seed)
    return ["".join(map(chr, rng.integers(0x3400, 0x4DC0, size=rng.integers(1, 30)))) + "。" for _ in range(n)]


def test_threads_sharing_a_pipeline_match_sequential(trained):
    texts = CONCURRENCY_TEXTS + unseen_texts(40, seed=0)
    chunks = [texts[i::4] for i in range(4)]
    with configured(trained, threshold=0.2, max_length=12):
        # Threads first, so that they also race to add new strings to the shared vocab.
        with ThreadPoolExecutor(max_workers=4) as pool:
            single = list(pool.map(lambda text: doc_output(trained(text)), texts * 2))
            piped = list(pool.map(lambda chunk: [doc_output(d) for d in trained.pipe(chunk, batch_size=3)], chunks * 2))
        expected = [doc_output(trained(text)) for text in texts]
    assert_same_output(expected * 2, single)
    for i, outputs in enumerate(piped):
        assert_same_output(expected[i % 4 :: 4], outputs)


def test_n_process_2_matches_one_process_on_odd_inputs(trained):
    with configured(trained, threshold=0.2, max_length=12):
        expected = [doc_output(doc) for doc in trained.pipe(CONCURRENCY_TEXTS, batch_size=3)]
        got = [doc_output(doc) for doc in trained.pipe(CONCURRENCY_TEXTS, batch_size=3, n_process=2)]
    assert_same_output(expected, got)
