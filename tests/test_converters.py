"""Tests for the raw-corpus converters and the conversion CLI."""
import json
import os
import runpy
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_globalpointer.convert import main
from spacy_globalpointer.readers import (
    ConversionError,
    ConversionReport,
    convert,
    iter_docs,
    overlap_counts,
)

BOM = "\ufeff"
CHINESE_FORMATS = ["cluener", "cmeee", "cmeee_cblue", "people_daily"]
Entity = Tuple[int, int, str]  # start, inclusive end, label
Record = Tuple[str, List[Entity]]


def write(path: Path, text: str, newline: str = "\n") -> Path:
    """Write ``text`` as UTF-8 with ``newline`` line endings (a BOM, if wanted, is part of ``text``)."""
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


def read_back(doc_bin: DocBin) -> List[Doc]:
    """Docs after a serialisation round trip."""
    return list(DocBin().from_bytes(doc_bin.to_bytes()).get_docs(Vocab()))


def entities(spans: Sequence) -> List[Entity]:
    """Spans as (start_char, inclusive end_char, label), in their stored order."""
    return [(span.start_char, span.end_char - 1, span.label_) for span in spans]


def ents_annotated(doc: Doc) -> bool:
    return doc.has_annotation("ENT_IOB")


def cmeee_line(text: str, *spans: Entity) -> str:
    return "|||".join([text] + [f"{start}    {end}    {label}" for start, end, label in spans] + [""])


def cblue_entity(start: int, end: int, label: str, surface: str) -> Dict[str, Any]:
    return {"start_idx": start, "end_idx": end, "type": label, "entity": surface}


# --- CMeEE, CHIP-2020 text form -------------------------------------------------------------------

CMEEE_LINES = [
    BOM + cmeee_line(
        "（5）房室结消融和起搏器植入作为反复发作或难治性心房内折返性心动过速的替代疗法。",
        (3, 7, "pro"), (9, 13, "pro"), (16, 33, "dis"),
    ),
    cmeee_line("患者左肺癌伴骨转移。", (2, 4, "dis"), (2, 3, "bod"), (6, 8, "sym"), (6, 8, "dis"), (6, 6, "bod")),
    cmeee_line("头痛伴恶心", (0, 2, "sym"), (2, 4, "sym")),
    cmeee_line("发热三天", (1, 0, "sym"), (0, 1, "sym"), (0, 1, "sym"), (2, 9, "sym"), (-1, 0, "sym")),
    "",
    "无实体文本",
    cmeee_line("ab  cd", (0, 2, "x"), (2, 2, "x"), (4, 5, "y")),
]


@pytest.fixture
def cmeee_file(tmp_path: Path) -> Path:
    return write(tmp_path / "train_data.txt", "\n".join(CMEEE_LINES) + "\n", newline="\r\n")


def test_cmeee_docs_spans_and_ents(cmeee_file: Path) -> None:
    doc_bin, _ = convert("cmeee", cmeee_file)
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == [line.split("|||")[0].lstrip(BOM) for line in CMEEE_LINES if line]
    assert all(len(doc) == len(doc.text) for doc in docs[:-1])  # one token per character
    first = [(span.text, span.label_) for span in docs[0].spans["sc"]]
    assert first == [("房室结消融", "pro"), ("起搏器植入", "pro"), ("反复发作或难治性心房内折返性心动过速", "dis")]
    assert entities(docs[0].ents) == entities(docs[0].spans["sc"])
    # nested spans, one span with two labels and crossing spans are all kept; ents stay unannotated
    assert entities(docs[1].spans["sc"]) == [
        (2, 4, "dis"), (2, 3, "bod"), (6, 8, "sym"), (6, 8, "dis"), (6, 6, "bod")
    ]
    assert entities(docs[2].spans["sc"]) == [(0, 2, "sym"), (2, 4, "sym")]
    assert not ents_annotated(docs[1]) and not ents_annotated(docs[2])
    assert entities(docs[3].spans["sc"]) == entities(docs[3].ents) == [(0, 1, "sym")]
    assert list(docs[4].spans["sc"]) == [] and docs[4].ents == () and ents_annotated(docs[4])
    assert entities(docs[5].spans["sc"]) == entities(docs[5].ents) == [(4, 5, "y")]


def test_cmeee_report(cmeee_file: Path) -> None:
    _, report = convert("cmeee", cmeee_file)
    assert (report.docs, report.entities_read, report.entities_written) == (6, 18, 12)
    assert report.dropped == Counter(empty_span=1, out_of_range=2, duplicate=1, misaligned=2)
    assert (report.nested_pairs, report.crossing_pairs, report.same_span_multi_label) == (3, 1, 1)
    assert report.docs_with_overlap == 2
    assert report.labels == Counter(pro=2, dis=3, bod=2, sym=4, y=1)
    assert report.examples["empty_span"] == [f"{cmeee_file}:4: empty_span: sym [1, 0] ''"]
    assert report.examples["out_of_range"] == [
        f"{cmeee_file}:4: out_of_range: sym [2, 9] '三天'",
        f"{cmeee_file}:4: out_of_range: sym [-1, 0] '发'",
    ]
    assert report.examples["misaligned"] == [
        f"{cmeee_file}:7: misaligned: x [0, 2] 'ab '",
        f"{cmeee_file}:7: misaligned: x [2, 2] ' '",
    ]
    assert "same span, several labels" in report.format()


def test_spans_key_and_limit(cmeee_file: Path) -> None:
    doc_bin, report = convert("cmeee", cmeee_file, spans_key="ents_all", limit=2)
    docs = read_back(doc_bin)
    assert len(docs) == report.docs == 2
    assert list(docs[1].spans) == ["ents_all"] and len(docs[1].spans["ents_all"]) == 5


def test_cmeee_test_split_without_entities(tmp_path: Path) -> None:
    doc_bin, report = convert("cmeee", write(tmp_path / "test1.txt", "第一句。\n第二句\n"))
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == ["第一句。", "第二句"]
    assert all(ents_annotated(doc) and doc.ents == () for doc in docs)
    assert (report.docs, report.entities_read) == (2, 0)


# --- CLUENER --------------------------------------------------------------------------------------


def test_cluener(tmp_path: Path) -> None:
    records = [
        {
            "text": "浙商银行企业信贷部叶老桂博士则从另一个角度",
            "label": {"name": {"叶老桂": [[9, 11]]}, "company": {"浙商银行": [[0, 3]]}},
        },
        {
            "text": "《招商银行：投资永隆银行》",
            "label": {
                "book": {"《招商银行：投资永隆银行》": [[0, 12]]},
                "company": {"招商银行": [[1, 4]], "永隆银行": [[8, 11], [8, 11]]},
            },
        },
        {"text": "北京市海淀区", "label": {"address": {"北京市": [[0, 2]], "上海市": [[3, 5]]}}},
        {"id": 0, "text": "四川敦煌学"},
    ]
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    path = write(tmp_path / "train.json", BOM + "\n".join(lines[:2] + [""] + lines[2:]) + "\n")
    doc_bin, report = convert("cluener", path)
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == [record["text"] for record in records]
    assert entities(docs[0].spans["sc"]) == [(9, 11, "name"), (0, 3, "company")]
    assert entities(docs[0].ents) == [(0, 3, "company"), (9, 11, "name")]
    assert entities(docs[1].spans["sc"]) == [(0, 12, "book"), (1, 4, "company"), (8, 11, "company")]
    assert not ents_annotated(docs[1])
    assert entities(docs[2].spans["sc"]) == [(0, 2, "address")]
    assert list(docs[3].spans["sc"]) == [] and ents_annotated(docs[3])
    assert (report.docs, report.entities_read, report.entities_written) == (4, 8, 6)
    assert report.dropped == Counter(duplicate=1, surface_mismatch=1)
    assert report.examples["surface_mismatch"] == [
        f"{path}:4: surface_mismatch: address [3, 5] '海淀区' (expected '上海市')"
    ]
    assert (report.nested_pairs, report.crossing_pairs, report.docs_with_overlap) == (2, 0, 1)


# --- People's Daily BIO ---------------------------------------------------------------------------


def test_people_daily(tmp_path: Path) -> None:
    first = "海 O\n钓 O\n在 O\n厦 B-LOC\n门 I-LOC\n金 B-LOC\n门 I-LOC\n"
    second = "李 B-PER\n明 I-PER\n说 O\n新 B-ORG\n华 I-ORG\n社 I-ORG"  # no final newline
    path = write(tmp_path / "example.train", BOM + first + "\n\n\n" + second, newline="\r\n")
    doc_bin, report = convert("people_daily", path)
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == ["海钓在厦门金门", "李明说新华社"]
    assert entities(docs[0].spans["sc"]) == entities(docs[0].ents) == [(3, 4, "LOC"), (5, 6, "LOC")]
    assert entities(docs[1].spans["sc"]) == entities(docs[1].ents) == [(0, 1, "PER"), (3, 5, "ORG")]
    assert (report.docs, report.entities_read, report.entities_written) == (2, 4, 4)
    assert report.labels == Counter(LOC=2, PER=1, ORG=1)


def test_people_daily_space_char_is_misaligned(tmp_path: Path) -> None:
    """A space 'character' attaches to the previous token, so an entity ending on it cannot be aligned."""
    path = write(tmp_path / "pd.txt", "A B-ORG\n  I-ORG\nB O\n")
    _, report = convert("people_daily", path)
    assert report.dropped == Counter(misaligned=1)
    assert report.examples["misaligned"] == [f"{path}:1: misaligned: ORG [0, 1] 'A '"]


# --- CMeEE, CBLUE JSON form -----------------------------------------------------------------------


def test_cmeee_cblue(tmp_path: Path) -> None:
    records = [
        {
            "text": "患者左肺癌伴骨转移。",
            "entities": [
                cblue_entity(2, 4, "dis", "左肺癌"),
                cblue_entity(2, 3, "bod", "左肺"),
                cblue_entity(6, 8, "sym", "骨转移"),
                cblue_entity(6, 8, "dis", "骨转移"),
                cblue_entity(7, 8, "sym", "骨转"),
            ],
        },
        {
            "text": "头痛伴恶心",
            "entities": [
                cblue_entity(0, 1, "sym", "头痛"),
                cblue_entity(0, 2, "sym", "头痛伴"),
                cblue_entity(2, 4, "sym", "伴恶心"),
            ],
        },
        {"text": "无实体"},
    ]
    path = write(tmp_path / "CMeEE_dev.json", BOM + json.dumps(records, ensure_ascii=False, indent=2))
    doc_bin, report = convert("cmeee_cblue", path)
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == [record["text"] for record in records]
    assert entities(docs[0].spans["sc"]) == [(2, 4, "dis"), (2, 3, "bod"), (6, 8, "sym"), (6, 8, "dis")]
    assert entities(docs[1].spans["sc"]) == [(0, 1, "sym"), (0, 2, "sym"), (2, 4, "sym")]
    assert not ents_annotated(docs[0]) and not ents_annotated(docs[1]) and ents_annotated(docs[2])
    assert (report.entities_read, report.entities_written) == (8, 7)
    assert report.dropped == Counter(surface_mismatch=1)
    assert report.examples["surface_mismatch"] == [
        f"{path}:record 0: surface_mismatch: sym [7, 8] '转移' (expected '骨转')"
    ]
    assert (report.nested_pairs, report.crossing_pairs, report.same_span_multi_label) == (2, 1, 1)


# --- BOM, UTF-8, unknown format -------------------------------------------------------------------

SAMPLES = {
    "people_daily": "海 B-LOC\n钓 I-LOC\n",
    "cluener": '{"text": "海钓", "label": {"LOC": {"海钓": [[0, 1]]}}}\n',
    "cmeee": "海钓|||0    1    LOC|||\n",
    "cmeee_cblue": json.dumps([{"text": "海钓", "entities": [cblue_entity(0, 1, "LOC", "海钓")]}]),
    "doccano": '{"text": "海钓", "label": [[0, 2, "LOC"]]}\n',
    "prodigy": '{"text": "海钓", "spans": [{"start": 0, "end": 2, "label": "LOC"}], "answer": "accept"}\n',
    "label_studio": json.dumps([{"data": {"text": "海钓"}, "annotations": [{"result": [
        {"type": "labels", "value": {"start": 0, "end": 2, "text": "海钓", "labels": ["LOC"]}}
    ]}]}], indent=1),
}


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_bom_is_stripped(tmp_path: Path, fmt: str) -> None:
    plain, _ = convert(fmt, write(tmp_path / "plain", SAMPLES[fmt]))
    with_bom, report = convert(fmt, write(tmp_path / "bom", BOM + SAMPLES[fmt]))
    (doc,) = read_back(with_bom)
    assert [doc.text for doc in read_back(plain)] == [doc.text] == ["海钓"]
    assert entities(doc.spans["sc"]) == [(0, 1, "LOC")]
    assert report.entities_written == 1


@pytest.mark.parametrize("fmt", sorted(SAMPLES))
def test_invalid_utf8_names_line(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "bad"
    path.write_bytes(SAMPLES[fmt].encode("utf-8") + b"\n\xff\xfe\n")
    with pytest.raises(ConversionError, match="invalid UTF-8") as info:
        convert(fmt, path)
    assert str(info.value).startswith(f"{path}:{SAMPLES[fmt].count(chr(10)) + 2}: ")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        convert("xml", tmp_path / "x")


# --- error paths: every message names the file, the line (or record) and the field -----------------


def cblue_error(entity: Dict[str, Any]) -> str:
    """A CBLUE file whose first record's second entity is ``entity``."""
    return json.dumps([{"text": "ab", "entities": [cblue_entity(0, 1, "x", "ab"), entity]}])


ERRORS = [
    ("people_daily", "海 O\n钓O\n", "2", None, "expected 'CHAR TAG', got '钓O'"),
    ("people_daily", "海 O\n钓 O extra\n", "2", None, "expected 'CHAR TAG'"),
    ("people_daily", "海\n", "1", None, "expected 'CHAR TAG'"),
    ("people_daily", "海 O\n钓 X-LOC\n", "2", "tag", "unknown tag 'X-LOC'"),
    ("people_daily", "海 O\n钓 I-LOC\n", "2", "tag", "'I-LOC' without a preceding B-LOC or I-LOC"),
    ("people_daily", "海 B-PER\n钓 I-LOC\n", "2", "tag", "'I-LOC' without a preceding B-LOC"),
    ("people_daily", "海 B-LOC\n\n钓 I-LOC\n", "3", "tag", "'I-LOC' without a preceding B-LOC"),
    ("cluener", '{"text": "a"}\n{"text": "b",}\n', "2", None, "invalid JSON: Expecting property name"),
    ("cluener", "[1, 2]\n", "1", None, "expected a JSON object, got list"),
    ("cluener", '{"label": {}}\n', "1", "text", "missing"),
    ("cluener", '{"text": 3}\n', "1", "text", "expected str, got int 3"),
    ("cluener", '{"text": "ab", "label": []}\n', "1", "label", "expected an object"),
    ("cluener", '{"text": "ab", "label": {"": {}}}\n', "1", "label", "empty label"),
    ("cluener", '{"text": "ab", "label": {"name": [[0, 1]]}}\n', "1", "label.name", "expected an object"),
    ("cluener", '{"text": "ab", "label": {"name": {"ab": "0,1"}}}\n', "1", "label.name.ab",
     "expected a list"),
    ("cluener", '{"text": "ab", "label": {"name": {"ab": [0, 1]}}}\n', "1", "label.name.ab[0]",
     "expected [start, end] integers, got 0"),
    ("cluener", '{"text": "ab", "label": {"name": {"ab": [[0, 1.0]]}}}\n', "1", "label.name.ab[0]",
     "expected [start, end] integers, got [0, 1.0]"),
    ("cmeee", "文本|||0    1    dis|||\n文本|||3    7|||\n", "2", "entity 1",
     "expected 'start end type', got '3    7'"),
    ("cmeee", "文本|||0    1    dis    x|||\n", "1", "entity 1", "expected 'start end type'"),
    ("cmeee", "文本||||||0    1    dis|||\n", "1", "entity 1", "expected 'start end type', got ''"),
    ("cmeee", "文本|||a    1    dis|||\n", "1", "entity 1 start", "not an integer: 'a'"),
    ("cmeee", "文本|||0    1    dis|||1    １    sym|||\n", "1", "entity 2 end", "not an integer: '１'"),
    ("cmeee_cblue", '[{"text": "a"},\n {"text": "b",}]', "2", None, "invalid JSON: Expecting property name"),
    ("cmeee_cblue", '{"text": "a"}', None, None, "expected a JSON list of records, got dict"),
    ("cmeee_cblue", '[{"text": "a"}, "b"]', "record 1", None, "expected an object, got str"),
    ("cmeee_cblue", '[{"text": "a"}, {"entities": []}]', "record 1", "text", "missing"),
    ("cmeee_cblue", '[{"text": "a", "entities": {}}]', "record 0", "entities", "expected list, got dict"),
    ("cmeee_cblue", '[{"text": "ab", "entities": [3]}]', "record 0", "entities[0]",
     "expected an object, got 3"),
    ("cmeee_cblue", cblue_error({"end_idx": 1, "type": "x", "entity": "ab"}), "record 0",
     "entities[1].start_idx", "missing"),
    ("cmeee_cblue", cblue_error({"start_idx": "0", "end_idx": 1, "type": "x", "entity": "ab"}), "record 0",
     "entities[1].start_idx", "expected int, got str '0'"),
    ("cmeee_cblue", cblue_error({"start_idx": 0, "end_idx": True, "type": "x", "entity": "ab"}), "record 0",
     "entities[1].end_idx", "expected int, got bool True"),
    ("cmeee_cblue", cblue_error({"start_idx": 0, "end_idx": 1, "entity": "ab"}), "record 0",
     "entities[1].type", "missing"),
    ("cmeee_cblue", cblue_error({"start_idx": 0, "end_idx": 1, "type": "", "entity": "ab"}), "record 0",
     "entities[1].type", "empty label"),
    ("cmeee_cblue", cblue_error({"start_idx": 0, "end_idx": 1, "type": "x"}), "record 0",
     "entities[1].entity", "missing"),
    # Truncated input: a tag cut to its prefix, a CMeEE line cut inside its entities.
    ("people_daily", "海 B-LOC\n钓 I-\n", "2", "tag", "unknown tag 'I-'"),
    ("cmeee", "文本|||0    1    dis|||\n文本|||0    1    di\n", "2", "entity 1",
     "expected the line to end with '|||', got '0    1    di' (truncated line?)"),
    ("cmeee", "文本|||0    1    dis|||2    3    sym\n", "1", "entity 2",
     "expected the line to end with '|||', got '2    3    sym'"),
]


@pytest.mark.parametrize("fmt,content,where,field,message", ERRORS)
def test_errors_name_file_line_and_field(
    tmp_path: Path, fmt: str, content: str, where: Optional[str], field: Optional[str], message: str
) -> None:
    path = write(tmp_path / "input", content)
    with pytest.raises(ConversionError) as info:
        convert(fmt, path)
    location = str(path) if where is None else f"{path}:{where}"
    prefix = f"{location}: " + (f"field '{field}': " if field else "")
    assert str(info.value).startswith(prefix + message), str(info.value)
    assert (info.value.path, info.value.field) == (str(path), field)


# --- overlap counting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spans,expected",
    [
        ([], (0, 0, 0)),
        ([(0, 2, "a"), (2, 4, "a")], (0, 0, 0)),  # adjacent (exclusive ends)
        ([(0, 4, "a"), (0, 2, "b"), (1, 4, "c"), (1, 2, "d")], (5, 1, 0)),  # b and c cross
        ([(0, 3, "a"), (2, 5, "b")], (0, 1, 0)),
        ([(0, 3, "a"), (0, 3, "b"), (1, 2, "c")], (2, 0, 1)),
        ([(0, 3, "a"), (0, 3, "b"), (0, 3, "c"), (2, 5, "d")], (0, 3, 1)),
    ],
)
def test_overlap_counts(spans: List[Entity], expected: Tuple[int, int, int]) -> None:
    assert overlap_counts(spans) == expected


# --- CLI ------------------------------------------------------------------------------------------


def test_cli_writes_docbin_and_report(
    cmeee_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output, report_path = tmp_path / "out" / "train.spacy", tmp_path / "out" / "report.json"
    argv = ["cmeee", str(cmeee_file), str(output), "--spans-key", "gp", "--limit", "4"]
    assert main(argv + ["--report", str(report_path)]) == 0
    docs = list(DocBin().from_disk(output).get_docs(Vocab()))
    assert len(docs) == 4 and len(docs[1].spans["gp"]) == 5
    report = json.loads(report_path.read_text("utf-8"))
    assert (report["docs"], report["entities_read"], report["entities_written"]) == (4, 15, 11)
    assert report["dropped"] == {
        "empty_span": 1, "out_of_range": 2, "surface_mismatch": 0, "duplicate": 1, "misaligned": 0,
        "whitespace_boundary": 0,
    }
    out = capsys.readouterr().out
    assert "entities read" in out and "nested pairs" in out and f"wrote 4 docs to {output}" in out
    assert f"{cmeee_file}:4: empty_span: sym [1, 0]" in out


def test_cli_error_exits_nonzero_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = write(tmp_path / "bad.txt", "文本|||a    1    dis|||\n")
    output = tmp_path / "out.spacy"
    assert main(["cmeee", str(bad), str(output)]) == 1
    assert capsys.readouterr().err == f"error: {bad}:1: field 'entity 1 start': not an integer: 'a'\n"
    assert not output.exists()
    assert main(["cmeee", str(tmp_path / "missing.txt"), str(output)]) == 1
    assert "error:" in capsys.readouterr().err and not output.exists()


def test_cli_as_module(cmeee_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "out.spacy"
    monkeypatch.setattr(sys, "argv", ["convert", "cmeee", str(cmeee_file), str(output)])
    monkeypatch.delitem(sys.modules, "spacy_globalpointer.convert")  # run it afresh, as `python -m` does
    with pytest.raises(SystemExit) as info:
        runpy.run_module("spacy_globalpointer.convert", run_name="__main__")
    assert info.value.code == 0 and output.exists()


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["xml", "in", "out.spacy"])
    assert info.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cmeee", "in", "out.spacy", "--limit", "0"])


# --- property: random records survive each raw format ---------------------------------------------

LABELS = ["dis", "sym", "PER", "LOC"]
CHARS = st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), st.sampled_from("abcXYZ0189"))


@st.composite
def raw_records(draw: st.DrawFn) -> Record:
    """A text without whitespace and up to 8 spans, possibly nested, crossing or repeated."""
    text = draw(st.text(CHARS, min_size=1, max_size=24))
    position = st.integers(0, len(text) - 1)
    spans = draw(st.lists(st.tuples(position, position, st.sampled_from(LABELS)), max_size=8))
    return text, [(min(s, e), max(s, e), label) for s, e, label in spans]


def non_overlapping(spans: List[Entity]) -> List[Entity]:
    """A greedy non-overlapping subset (what BIO can express)."""
    kept: List[Entity] = []
    for span in sorted(set(spans)):
        if not kept or span[0] > kept[-1][1]:
            kept.append(span)
    return kept


def write_raw(fmt: str, records: List[Record]) -> str:
    """Serialise records in a raw format."""
    if fmt == "people_daily":
        return "\n".join(bio_sentence(text, spans) for text, spans in records)
    if fmt == "cmeee":
        return "".join(cmeee_line(text, *spans) + "\n" for text, spans in records)
    if fmt == "cluener":
        return "".join(cluener_line(text, spans) + "\n" for text, spans in records)
    return json.dumps([{"text": text, "entities": cblue_entities(text, spans)} for text, spans in records])


def cblue_entities(text: str, spans: List[Entity]) -> List[Dict[str, Any]]:
    return [cblue_entity(start, end, label, text[start : end + 1]) for start, end, label in spans]


def bio_sentence(text: str, spans: List[Entity]) -> str:
    tags = ["O"] * len(text)
    for start, end, label in spans:
        tags[start : end + 1] = [f"B-{label}"] + [f"I-{label}"] * (end - start)
    return "".join(f"{char} {tag}\n" for char, tag in zip(text, tags))


def cluener_line(text: str, spans: List[Entity]) -> str:
    labels: Dict[str, Dict[str, List[List[int]]]] = {}
    for start, end, label in spans:
        labels.setdefault(label, {}).setdefault(text[start : end + 1], []).append([start, end])
    return json.dumps({"text": text, "label": labels}, ensure_ascii=False)


@settings(max_examples=50, deadline=None)
@given(records=st.lists(raw_records(), min_size=1, max_size=3))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, records: List[Record]) -> None:
    folder = tmp_path_factory.mktemp("roundtrip")
    for fmt in CHINESE_FORMATS:
        given_records = records
        if fmt == "people_daily":
            given_records = [(text, non_overlapping(spans)) for text, spans in records]
        doc_bin, report = convert(fmt, write(folder / fmt, write_raw(fmt, given_records)))
        docs = read_back(doc_bin)
        assert [doc.text for doc in docs] == [text for text, _ in given_records]
        duplicates = 0
        for doc, (_, spans) in zip(docs, given_records):
            read = entities(doc.spans["sc"])
            assert sorted(read) == sorted(set(spans)) and len(read) == len(set(read))
            overlapping = any(overlap_counts([(s, e + 1, label) for s, e, label in set(spans)]))
            assert ents_annotated(doc) is not overlapping
            assert overlapping or sorted(entities(doc.ents)) == sorted(read)
            duplicates += len(spans) - len(set(spans))
        assert report.entities_read == sum(len(spans) for _, spans in given_records)
        assert report.dropped == Counter(duplicate=duplicates)


# --- truncated files -----------------------------------------------------------------------------

COMPLETE = {
    "people_daily": "海 O\n钓 O\n厦 B-LOC\n门 I-LOC\n\n李 B-PER\n明 I-PER\n说 O\n\n",
    "cluener": "".join(
        cluener_line(text, spans) + "\n"
        for text, spans in [("浙商银行叶老桂", [(0, 3, "company"), (4, 6, "name")]), ("北京", [(0, 1, "address")])]
    ),
    "cmeee": cmeee_line("患者左肺癌伴骨转移。", (2, 4, "dis"), (6, 8, "sym")) + "\n" + cmeee_line("头痛伴恶心", (0, 1, "sym")),
    "cmeee_cblue": json.dumps(
        [
            {"text": "患者左肺癌", "entities": [cblue_entity(2, 4, "dis", "左肺癌")]},
            {"text": "头痛", "entities": [cblue_entity(0, 1, "sym", "头痛")]},
        ],
        ensure_ascii=False,
        indent=1,
    ),
}


def written(docs: Sequence[Doc]) -> Set[Tuple[str, int, int, str]]:
    """Every written entity with the text of its doc: (text, start_char, end_char, label)."""
    return {(doc.text, span.start_char, span.end_char, span.label_) for doc in docs for span in doc.spans["sc"]}


@pytest.mark.parametrize("fmt", CHINESE_FORMATS)
@pytest.mark.parametrize("newline,bom", [("\n", ""), ("\r\n", BOM)], ids=["lf", "bom-crlf"])
def test_truncated_files(tmp_path: Path, fmt: str, newline: str, bom: str) -> None:
    """A file cut at any byte: a ConversionError naming the file and line, or only entities of the whole
    file (nothing invented or shortened), or (People's Daily cut mid-sentence) a warning in the report."""
    data = (bom + COMPLETE[fmt].replace("\n", newline)).encode("utf-8")
    path = tmp_path / "input"
    path.write_bytes(data)
    report = ConversionReport()
    complete = written(list(iter_docs(fmt, path, report)))
    assert len(complete) == report.entities_read >= 2 and report.warnings == []
    outcomes: Counter = Counter()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        report = ConversionReport()
        try:
            got = written(list(iter_docs(fmt, path, report)))
        except ConversionError as err:
            assert err.path == str(path) and err.where is not None, str(err)
            assert str(err).startswith(f"{path}:{err.where}: "), str(err)
            outcomes["error"] += 1
            continue
        if got <= complete:
            outcomes["subset"] += 1
        else:
            assert fmt == "people_daily" and report.warnings, (cut, data[:cut], got - complete)
            assert "may be truncated" in report.format()
            outcomes["warned"] += 1
    assert outcomes["error"] > 0
    assert outcomes["subset"] > 0 or fmt == "cmeee_cblue"  # every cut of a JSON document is invalid JSON


def test_people_daily_unterminated_file_is_reported(tmp_path: Path) -> None:
    cut = write(tmp_path / "cut.txt", "海 O\n厦 B-LOC\n门 I-LOC\n\n李 B-PE")
    _, report = convert("people_daily", cut)
    assert report.labels == Counter(LOC=1, PE=1)  # B-PER cut to a well-formed B-PE: only the warning tells
    assert report.warnings == [f"{cut}: no blank line after the last sentence: the file may be truncated "
                               "(check its last sentence)"]
    assert report.to_dict()["warnings"] == report.warnings and report.warnings[0] in report.format()
    for name, text in [("whole.txt", "海 O\n厦 B-LOC\n\n"), ("crlf.txt", "海 O\r\n厦 B-LOC\r\n\r\n"), ("empty.txt", "")]:
        _, report = convert("people_daily", write(tmp_path / name, text))
        assert report.warnings == [], name
    _, report = convert("people_daily", write(tmp_path / "limit.txt", "海 O\n\n厦 B-LOC"), limit=1)
    assert report.warnings == []  # the end of the file was not read


# --- property: any text, BOM and CRLF; accepted entities survive exactly, the rest are counted --------

ANY_CHARS = st.one_of(
    CHARS,
    st.sampled_from([" ", "\t", "\u3000", "\u00a0", "\u2028", "\r", "\x00", "\u200d", "\u0301", "\u20e3"]),
    st.sampled_from(["😀", "👍", "🇨", "𠀀", "𪚥", "\U0010ffff"]),
    st.characters(codec="utf-8", exclude_characters="\n|\ufeff"),
)


@st.composite
def any_records(draw: st.DrawFn) -> Record:
    """Like ``raw_records``, over any text without newlines or '|' (the formats' separators)."""
    text = draw(st.text(ANY_CHARS, min_size=1, max_size=24))
    position = st.integers(0, len(text) - 1)
    spans = draw(st.lists(st.tuples(position, position, st.sampled_from(LABELS)), max_size=8))
    return text, [(min(s, e), max(s, e), label) for s, e, label in spans]


def token_aligned(doc: Doc, start: int, end: int) -> bool:
    """Do the characters [start, end] (inclusive) begin and end on token boundaries?"""
    return start in {token.idx for token in doc} and end + 1 in {token.idx + len(token) for token in doc}


def on_whitespace(doc: Doc, start: int, end: int) -> bool:
    """Whether the aligned span [start, end] (inclusive) starts or ends on a whitespace token."""
    span = doc.char_span(start, end + 1)
    return span[0].text.isspace() or span[-1].text.isspace()  # a read-back vocab has no lexeme attrs


@settings(max_examples=50, deadline=None)
@given(records=st.lists(any_records(), min_size=1, max_size=3), crlf=st.booleans(), bom=st.booleans())
def test_round_trip_property_any_text(
    tmp_path_factory: pytest.TempPathFactory, records: List[Record], crlf: bool, bom: bool
) -> None:
    folder = tmp_path_factory.mktemp("anytext")
    for fmt in CHINESE_FORMATS:
        given_records = records
        if fmt == "people_daily":
            given_records = [(text, non_overlapping(spans)) for text, spans in records]
        raw = (BOM if bom else "") + write_raw(fmt, given_records) + ("\n" if fmt == "people_daily" else "")
        doc_bin, report = convert(fmt, write(folder / fmt, raw, newline="\r\n" if crlf else "\n"))
        docs = read_back(doc_bin)
        assert [doc.text for doc in docs] == [text for text, _ in given_records]
        duplicates = misaligned = on_space = 0
        for doc, (text, spans) in zip(docs, given_records):
            unique = sorted(set(spans))
            aligned = [span for span in unique if token_aligned(doc, span[0], span[1])]
            accepted = [span for span in aligned if not on_whitespace(doc, span[0], span[1])]
            assert sorted(entities(doc.spans["sc"])) == accepted
            assert all(span.text == text[span.start_char : span.end_char] for span in doc.spans["sc"])
            overlapping = any(overlap_counts([(s, e + 1, label) for s, e, label in accepted]))
            assert ents_annotated(doc) is not overlapping
            assert overlapping or sorted(entities(doc.ents)) == accepted
            # Each entity is dropped for its own defect first: a repeat of a misaligned one is misaligned too.
            misaligned += sum(1 for span in spans if span not in aligned)
            on_space += sum(1 for span in spans if span in aligned and span not in accepted)
            duplicates += sum(1 for span in spans if span in accepted) - len(accepted)
        assert report.entities_read == sum(len(spans) for _, spans in given_records)
        expected = Counter(duplicate=duplicates, misaligned=misaligned, whitespace_boundary=on_space)
        assert report.dropped == +expected
        assert report.entities_written == report.entities_read - duplicates - misaligned - on_space
        assert report.warnings == []


# --- the real corpora (skipped when the data folder is absent) ------------------------------------


def data_dir() -> Path:
    override = os.environ.get("GLOBALPOINTER_DATA_DIR")
    return Path(override) if override else Path(__file__).parents[1].parent / "shared" / "data"


def real_file(name: str) -> Path:
    path = data_dir() / name
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    return path


CLUENER_TRAIN_LABELS = Counter(
    address=2891, book=1139, company=2980, game=2376, government=1835,
    movie=1123, name=3755, organization=3210, position=3141, scene=1521,
)
CLUENER_DEV_LABELS = Counter(
    address=373, book=154, company=378, game=295, government=247,
    movie=151, name=465, organization=367, position=433, scene=209,
)
CMEEE_TRAIN_LABELS = Counter(
    bod=17697, dis=15843, sym=12269, pro=6332, dru=3930, ite=2581, mic=1908, equ=888, dep=348
)
CMEEE_DEV_LABELS = Counter(
    bod=5883, dis=4935, sym=4130, pro=2057, dru=1440, ite=923, mic=584, equ=238, dep=110
)

# The counts of each SOURCE.md; docs_with_overlap ("overlap_docs") was measured here.
REAL_SPLITS: Dict[str, Dict[str, Any]] = {
    "people_daily/example.train": dict(
        docs=20864, read=33992, chars=979180, labels=Counter(LOC=16571, ORG=9277, PER=8144)
    ),
    "people_daily/example.dev": dict(
        docs=2318, read=3819, chars=109870, labels=Counter(LOC=1951, ORG=984, PER=884)
    ),
    "people_daily/example.test": dict(
        docs=4636, read=7707, chars=219197, labels=Counter(LOC=3658, ORG=2185, PER=1864)
    ),
    "cluener/train.json": dict(docs=10748, read=23971, nested=2, overlap_docs=1, labels=CLUENER_TRAIN_LABELS),
    "cluener/dev.json": dict(docs=1343, read=3072, labels=CLUENER_DEV_LABELS),
    "cluener/test.json": dict(docs=1345, read=0, labels=Counter()),
    "cmeee/train_data.txt": dict(
        docs=15000, read=61796, nested=3645, crossing=3, multi=33, overlap_docs=1666,
        dropped=Counter(empty_span=2),
        examples={"empty_span": [":6052: empty_span: pro [16, 15] ''", ":6422: empty_span: mic [15, 14] ''"]},
        labels=CMEEE_TRAIN_LABELS - Counter(pro=1, mic=1),  # SOURCE.md counts the two dropped empty spans
    ),
    "cmeee/val_data.txt": dict(
        docs=5000, read=20300, nested=1209, multi=16, overlap_docs=524, labels=CMEEE_DEV_LABELS
    ),
    "cmeee/test1.txt": dict(docs=3000, read=0, labels=Counter()),
}


def check_report(report: ConversionReport, expected: Dict[str, Any], path: Path) -> None:
    dropped = expected.get("dropped", Counter())
    assert report.docs == expected["docs"]
    assert report.entities_read == expected["read"]
    assert report.entities_written == expected["read"] - sum(dropped.values())
    assert report.dropped == dropped  # in particular, nothing is misaligned
    assert report.nested_pairs == expected.get("nested", 0)
    assert report.crossing_pairs == expected.get("crossing", 0)
    assert report.same_span_multi_label == expected.get("multi", 0)
    assert report.docs_with_overlap == expected.get("overlap_docs", 0)
    assert report.labels == expected["labels"]
    assert report.warnings == []
    examples = expected.get("examples", {})
    assert report.examples == {reason: [f"{path}{m}" for m in msgs] for reason, msgs in examples.items()}


@pytest.mark.parametrize("name", list(REAL_SPLITS))
def test_real_split_counts(name: str) -> None:
    """Every record of every split, with all the accounting. The DocBin step is left out: its per-doc
    serialisation dominates the run time (it is exercised on CMeEE dev below)."""
    path = real_file(name)
    report = ConversionReport()
    chars = sum(len(doc.text) for doc in iter_docs(name.split("/")[0], path, report))
    check_report(report, REAL_SPLITS[name], path)
    assert chars == REAL_SPLITS[name].get("chars", chars)


def test_real_cmeee_dev_docbin_round_trip() -> None:
    """The stored docs agree with the report (first 1000 records: DocBin (de)serialisation is slow)."""
    doc_bin, report = convert("cmeee", real_file("cmeee/val_data.txt"), limit=1000)
    docs = read_back(doc_bin)
    assert len(docs) == report.docs == 1000
    assert sum(len(doc.spans["sc"]) for doc in docs) == report.entities_written
    assert sum(not ents_annotated(doc) for doc in docs) == report.docs_with_overlap > 0
    flat = [doc for doc in docs if ents_annotated(doc)]
    assert [entities(doc.ents) for doc in flat] == [sorted(entities(doc.spans["sc"])) for doc in flat]
