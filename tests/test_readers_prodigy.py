"""The Prodigy reader: only accepted answers are written, the rest counted."""
from collections import Counter
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from reader_helpers import BOM, Span, jsonl, read_back, spans_of, texts_with_spans, write

from spacy_globalpointer.readers import ConversionError, convert


def span(start: int, end: int, label: str, **extra: object) -> dict:
    return {"start": start, "end": end, "label": label, **extra}


RECORDS = [
    {"text": "Apple Park in Cupertino", "spans": [span(0, 10, "FAC"), span(0, 5, "ORG"), span(14, 23, "GPE")],
     "answer": "accept"},
    {"text": "rejected Berlin", "spans": [span(9, 15, "GPE")], "answer": "reject"},
    {"text": "ignored Paris", "spans": [span(8, 13, "GPE")], "answer": "ignore"},
    {"text": "no answer", "spans": []},
    {"text": "🎉 Ada Lovelace", "spans": [span(2, 14, "PER", text="Ada Lovelace"), span(2, 5, "PER", text="Bob")],
     "answer": "accept"},
    {"text": "crossing a b c", "spans": [span(9, 12, "X"), span(11, 14, "Y")], "answer": "accept"},
]


@pytest.mark.parametrize("newline,bom", [("\n", ""), ("\r\n", BOM)], ids=["lf", "bom-crlf"])
def test_prodigy_accept_only(tmp_path: Path, newline: str, bom: str) -> None:
    path = write(tmp_path / "db-out.jsonl", bom + jsonl(RECORDS), newline)
    doc_bin, report = convert("prodigy", path, nlp=spacy.blank("en"))
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == ["Apple Park in Cupertino", "🎉 Ada Lovelace", "crossing a b c"]
    assert spans_of(docs[0]) == [(0, 10, "FAC"), (0, 5, "ORG"), (14, 23, "GPE")]
    assert spans_of(docs[1]) == [(2, 14, "PER")]
    assert spans_of(docs[2]) == [(9, 12, "X"), (11, 14, "Y")]
    assert report.records_skipped == Counter(answer_reject=1, answer_ignore=1, answer_missing=1)
    assert (report.entities_read, report.entities_written) == (9, 6)
    assert report.dropped == Counter(answer_reject=1, answer_ignore=1, surface_mismatch=1)
    assert (report.nested_pairs, report.crossing_pairs) == (1, 1)
    assert report.examples["answer_reject"] == [f"{path}:2: answer_reject: GPE [9, 14] 'Berlin'"]


def test_prodigy_error_names_field(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", jsonl([{"text": "ab", "spans": [{"start": 0, "label": "X"}]}]))
    with pytest.raises(ConversionError, match=r":1: field 'spans\[0\].end': missing"):
        convert("prodigy", path)


@settings(max_examples=40, deadline=None)
@given(records=st.lists(texts_with_spans(), min_size=1, max_size=3))
def test_prodigy_round_trip(tmp_path_factory: pytest.TempPathFactory, records: List[Tuple[str, List[Span]]]) -> None:
    lines = [{"text": text, "spans": [span(*s) for s in spans], "answer": "accept"} for text, spans in records]
    path = write(tmp_path_factory.mktemp("prodigy") / "rt.jsonl", jsonl(lines))
    doc_bin, report = convert("prodigy", path)
    assert [sorted(spans_of(doc)) for doc in read_back(doc_bin)] == [spans for _, spans in records]
    assert report.entities_written == report.entities_read
