"""The Label Studio reader: annotation choice, cancelled and unannotated tasks, predictions, UTF-16 offsets."""
import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reader_helpers import BOM, Span, read_back, spans_of, texts_with_spans, write

from spacy_globalpointer.readers import ConversionError, ReadOptions, convert
from spacy_globalpointer.readers.common import iter_json_array


def region(start: int, end: int, text: str, *labels: str) -> Dict[str, Any]:
    return {"from_name": "label", "to_name": "text", "type": "labels",
            "value": {"start": start, "end": end, "text": text, "labels": list(labels)}}


def annotation(*result: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    return {"result": list(result), **extra}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


TEXT_EMOJI = "😀😀北京大学"
TASKS = [
    # two annotations: the first older, the second more recent; the last one is used by default
    {"id": 1, "data": {"text": "我在北京大学读书"}, "annotations": [
        annotation(region(2, 4, "北京", "LOC"), updated_at="2024-05-02T10:00:00Z"),
        annotation(region(2, 6, "北京大学", "ORG", "FAC"), region(2, 4, "北京", "LOC"),
                   {"type": "choices", "value": {"choices": ["news"]}}, updated_at="2024-05-01T10:00:00Z"),
    ]},
    # cancelled annotation only: not written, its region dropped as cancelled
    {"id": 2, "data": {"text": "上海"}, "annotations": [
        annotation(region(0, 2, "上海", "LOC"), was_cancelled=True)
    ]},
    # no annotation at all: unannotated, not a negative
    {"id": 3, "data": {"text": "无标注"}, "annotations": []},
    # an annotation with an empty result: a negative example
    {"id": 4, "data": {"text": "无实体"}, "annotations": [annotation()]},
    # offsets counted in UTF-16 units by the browser (each emoji is 2 units): resolved
    {"id": 5, "data": {"text": TEXT_EMOJI}, "annotations": [
        annotation(region(utf16_len("😀😀"), utf16_len("😀😀北京"), "北京", "LOC"),
                   region(2, 6, "北京大学", "ORG"))
    ]},
    # a region whose text matches neither reading: surface_mismatch
    {"id": 6, "data": {"text": "杭州西湖"}, "annotations": [annotation(region(0, 2, "西湖", "LOC"))]},
]


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return write(tmp_path / "export.json", BOM + json.dumps(TASKS, ensure_ascii=False, indent=2), "\r\n")


def test_label_studio_default_last_annotation(export: Path) -> None:
    doc_bin, report = convert("label_studio", export)
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == ["我在北京大学读书", "无实体", TEXT_EMOJI, "杭州西湖"]
    assert spans_of(docs[0]) == [(2, 6, "ORG"), (2, 6, "FAC"), (2, 4, "LOC")]
    assert spans_of(docs[1]) == [] and docs[1].has_annotation("ENT_IOB")
    assert spans_of(docs[2]) == [(2, 4, "LOC"), (2, 6, "ORG")]
    assert spans_of(docs[3]) == []
    assert report.records_skipped == Counter(unannotated=2)
    assert report.dropped == Counter(unused_annotation=1, cancelled_annotation=1, surface_mismatch=1)
    assert (report.entities_read, report.entities_written) == (8, 5)
    assert report.notes["utf16_offsets_resolved"] == 1 and report.notes["cancelled annotations"] == 1
    assert report.notes["label_studio result type 'choices' ignored"] == 1
    assert report.examples["surface_mismatch"] == [
        f"{export}:record 5: surface_mismatch: LOC [0, 1] '杭州' (expected '西湖')"
    ]


@pytest.mark.parametrize("rule,expected", [
    ("first", [(2, 4, "LOC")]),
    ("most-recent", [(2, 4, "LOC")]),
    ("last", [(2, 6, "ORG"), (2, 6, "FAC"), (2, 4, "LOC")]),
])
def test_label_studio_annotation_choice(export: Path, rule: str, expected: List[Span]) -> None:
    doc_bin, _ = convert("label_studio", export, limit=1, options=ReadOptions(ls_annotation=rule))
    assert spans_of(read_back(doc_bin)[0]) == expected


def test_label_studio_predictions_and_text_key(tmp_path: Path) -> None:
    tasks = [
        {"data": {"body": "Ada met Bob"}, "annotations": [annotation(region(0, 3, "Ada", "PER"))],
         "predictions": [{"model_version": "gp", "score": 0.9, "result": [region(8, 11, "Bob", "PER")]}]},
        {"data": {"body": "nothing predicted"}},
    ]
    path = write(tmp_path / "predicted.json", json.dumps(tasks))
    options = ReadOptions(text_key="body", ls_source="predictions", lang="en")
    doc_bin, report = convert("label_studio", path, options=options)
    (doc,) = read_back(doc_bin)
    assert spans_of(doc) == [(8, 11, "PER")]
    assert report.records_skipped == Counter(unannotated=1) and report.entities_read == 1


@pytest.mark.parametrize(
    "content,where,message",
    [
        ('[{"data": {}}]', "record 0", "field 'data.text': missing"),
        ('[{"data": {"text": "ab"}, "annotations": [{"result": [{"type": "labels", "value": '
         '{"start": 0, "labels": ["X"]}}]}]}]', "record 0", "field 'annotations[0].result[0].value.end': missing"),
        ('[{"data": {"text": "a"}},\n {"data": {"text": "b"},}]', "2", "invalid JSON: Expecting property name"),
        ('[{"data": {"text": "a"}},\n', "2", "invalid JSON: the list is not closed"),
        ('{"data": {}}', None, "expected a JSON list of records, got dict"),
    ],
)
def test_label_studio_errors(tmp_path: Path, content: str, where: str, message: str) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(ConversionError) as info:
        convert("label_studio", path)
    location = str(path) if where is None else f"{path}:{where}"
    assert str(info.value).startswith(f"{location}: {message}"), str(info.value)


def test_json_array_is_streamed_in_small_chunks(tmp_path: Path) -> None:
    """Elements cut across chunk borders (and across a multi-byte character) come out whole."""
    values = [{"text": "😀北\n" * 7, "n": 12345}, 678, [], "x"]
    path = write(tmp_path / "a.json", BOM + json.dumps(values, ensure_ascii=False, indent=1))
    for chunk_size in (1, 2, 3, 7, 64):
        assert [value for _, value in iter_json_array(path, chunk_size)] == values


@settings(max_examples=40, deadline=None)
@given(records=st.lists(texts_with_spans(), min_size=1, max_size=3), utf16=st.booleans())
def test_label_studio_round_trip(
    tmp_path_factory: pytest.TempPathFactory, records: List[Tuple[str, List[Span]]], utf16: bool
) -> None:
    """Every region survives, with code-point offsets and with the UTF-16 offsets a browser may store."""
    def offset(text: str, index: int) -> int:
        return utf16_len(text[:index]) if utf16 else index

    tasks = [
        {"data": {"text": text}, "annotations": [annotation(
            *[region(offset(text, s), offset(text, e), text[s:e], label) for s, e, label in spans]
        )]}
        for text, spans in records
    ]
    path = write(tmp_path_factory.mktemp("ls") / "rt.json", json.dumps(tasks, ensure_ascii=False))
    doc_bin, report = convert("label_studio", path)
    assert [sorted(spans_of(doc)) for doc in read_back(doc_bin)] == [spans for _, spans in records]
    assert report.entities_written == report.entities_read
