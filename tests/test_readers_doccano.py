"""The doccano reader: both export layouts, exclusive ends, accounting, errors, round trips."""
from collections import Counter
from pathlib import Path
from typing import List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reader_helpers import BOM, Span, jsonl, read_back, spans_of, texts_with_spans, write

from spacy_globalpointer.readers import ConversionError, convert

RECORDS = [
    # nested (北京大学 ORG over 北京 LOC), two labels on one span, old "label" layout
    {"id": 1, "text": "我在北京大学读书", "label": [[2, 6, "ORG"], [2, 4, "LOC"], [2, 4, "GPE"]]},
    # newer "entities" layout, crossing spans, an emoji before a span
    {"text": "😀张三李四来了", "entities": [
        {"id": 7, "start_offset": 1, "end_offset": 3, "label": "PER"},
        {"id": 8, "start_offset": 2, "end_offset": 5, "label": "X"},
    ]},
    # an empty span (start == end), one past the end, a duplicate
    {"text": "上海", "label": [[0, 0, "LOC"], [0, 3, "LOC"], [0, 2, "LOC"], [0, 2, "LOC"]]},
    {"text": "没有实体"},
]


@pytest.mark.parametrize("newline,bom", [("\n", ""), ("\r\n", BOM)], ids=["lf", "bom-crlf"])
def test_doccano_spans_and_report(tmp_path: Path, newline: str, bom: str) -> None:
    path = write(tmp_path / "all.jsonl", bom + jsonl(RECORDS), newline)
    doc_bin, report = convert("doccano", path)
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == [record["text"] for record in RECORDS]
    assert spans_of(docs[0]) == [(2, 6, "ORG"), (2, 4, "LOC"), (2, 4, "GPE")]
    assert spans_of(docs[1]) == [(1, 3, "PER"), (2, 5, "X")]
    assert spans_of(docs[2]) == [(0, 2, "LOC")] and spans_of(docs[3]) == []
    assert [ent.text for ent in docs[2].ents] == ["上海"]
    assert (report.docs, report.entities_read, report.entities_written) == (4, 9, 6)
    assert report.dropped == Counter(empty_span=1, out_of_range=1, duplicate=1)
    assert (report.nested_pairs, report.crossing_pairs, report.same_span_multi_label) == (2, 1, 1)
    assert report.examples["empty_span"] == [f"{path}:3: empty_span: LOC [0, -1] ''"]


@pytest.mark.parametrize(
    "line,field,message",
    [
        ('{"label": []}', "text", "missing"),
        ('{"text": "ab", "label": [[0, 1]]}', "label[0]", "expected [start, end, label]"),
        ('{"text": "ab", "label": [[0, "1", "X"]]}', "label[0]", "expected [start, end, label]"),
        ('{"text": "ab", "entities": [{"start_offset": 0, "label": "X"}]}', "entities[0].end_offset", "missing"),
        ('{"text": "ab", "entities": [{"start_offset": 0, "end_offset": 1, "label": ""}]}',
         "entities[0].label", "empty label"),
    ],
)
def test_doccano_errors_name_line_and_field(tmp_path: Path, line: str, field: str, message: str) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "ok"}\n' + line + "\n")
    with pytest.raises(ConversionError) as info:
        convert("doccano", path)
    assert str(info.value).startswith(f"{path}:2: field '{field}': {message}")


@settings(max_examples=40, deadline=None)
@given(records=st.lists(texts_with_spans(), min_size=1, max_size=3), newer=st.booleans())
def test_doccano_round_trip(
    tmp_path_factory: pytest.TempPathFactory, records: List[Tuple[str, List[Span]]], newer: bool
) -> None:
    """Every entity survives text -> DocBin -> spans (texts without whitespace, one token per char)."""
    def record(text: str, spans: List[Span]) -> dict:
        if newer:
            return {"text": text, "entities": [
                {"start_offset": s, "end_offset": e, "label": label} for s, e, label in spans
            ]}
        return {"text": text, "label": [[s, e, label] for s, e, label in spans]}

    path = write(tmp_path_factory.mktemp("doccano") / "rt.jsonl", jsonl(record(*r) for r in records))
    doc_bin, report = convert("doccano", path)
    docs = read_back(doc_bin)
    assert [sorted(spans_of(doc)) for doc in docs] == [spans for _, spans in records]
    assert report.entities_written == report.entities_read == sum(len(spans) for _, spans in records)
