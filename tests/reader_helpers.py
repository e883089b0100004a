"""Shared helpers for the tests/test_readers_*.py files."""
import json
from pathlib import Path
from typing import Any, Iterable, List, Sequence, Tuple

from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

BOM = "\ufeff"
Span = Tuple[int, int, str]  # start, exclusive end, label
LABELS = ["PER", "LOC", "ORG"]


def write(path: Path, text: str, newline: str = "\n") -> Path:
    """Write ``text`` as UTF-8 with ``newline`` line endings (a BOM, if wanted, is part of ``text``)."""
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def jsonl(records: Iterable[Any]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def read_back(doc_bin: DocBin) -> List[Doc]:
    """Docs after a serialisation round trip."""
    return list(DocBin().from_bytes(doc_bin.to_bytes()).get_docs(Vocab()))


def spans_of(doc: Doc, key: str = "sc") -> List[Span]:
    """The doc's spans as (start_char, end_char, label), in their stored order."""
    return [(span.start_char, span.end_char, span.label_) for span in doc.spans[key]]


@st.composite
def texts_with_spans(draw: st.DrawFn) -> Tuple[str, List[Span]]:
    """A text (CJK, ASCII letters and emoji, no whitespace) and up to 6 distinct spans, possibly nested,
    crossing or on the same offsets with two labels."""
    chars = st.one_of(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),
        st.sampled_from("abcXYZ019"),
        st.sampled_from("😀🎉𝔸"),
    )
    text = draw(st.text(chars, min_size=1, max_size=20))
    bounds = st.tuples(st.integers(0, len(text) - 1), st.integers(1, len(text)))
    pairs = draw(st.lists(bounds.filter(lambda p: p[0] < p[1]), max_size=6))
    spans = {(start, end, draw(st.sampled_from(LABELS))) for start, end in pairs}
    return text, sorted(spans)


def expected_spans(records: Sequence[Tuple[str, List[Span]]]) -> List[List[Span]]:
    return [sorted(spans) for _, spans in records]
