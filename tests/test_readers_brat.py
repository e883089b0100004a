"""The brat reader: T lines only, discontinuous entities dropped, other lines counted."""
from collections import Counter
from pathlib import Path

import pytest
import spacy
from reader_helpers import BOM, read_back, spans_of, write

from spacy_globalpointer.readers import ConversionError, convert

TEXT_1 = "Ada Lovelace worked at the University of London.\nShe met 😀 Babbage."
ANN_1 = "\n".join([
    "T1\tPER 0 12\tAda Lovelace",
    "T2\tORG 27 47\tUniversity of London",
    "T3\tGPE 41 47\tLondon",
    "T4\tLOC 41 47\tLondon",          # same span, second label
    "T5\tPER 59 66\tBabbage",         # after an emoji (one code point)
    "T6\tORG 0 3;13 19\tAda worked",  # discontinuous
    "R1\tWorks_at Arg1:T1 Arg2:T2",
    "A1\tNegated T5",
    "#1\tAnnotatorNotes T1\tfirst",
    "N1\tReference T3 Wikipedia:84 London",
    "T7\tPER 1 3\tda",                # inside a token: misaligned
    "T8\tPER 4 11\tWrong",            # surface mismatch
]) + "\n"


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "brat"
    (folder / "sub").mkdir(parents=True)
    write(folder / "a.txt", TEXT_1)
    write(folder / "a.ann", ANN_1)
    write(folder / "sub" / "b.txt", BOM + "Paris\nis big", newline="\r\n")
    write(folder / "sub" / "b.ann", "T1\tGPE 1 6\tParis\n", newline="\r\n")  # 1: the BOM counted
    write(folder / "c.txt", "no annotation file")
    return folder


def test_brat_folder(corpus: Path) -> None:
    doc_bin, report = convert("brat", corpus, nlp=spacy.blank("en"))
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == [TEXT_1, "Paris\r\nis big"]
    assert spans_of(docs[0]) == [
        (0, 12, "PER"), (27, 47, "ORG"), (41, 47, "GPE"), (41, 47, "LOC"), (59, 66, "PER")
    ]
    assert spans_of(docs[1]) == [(0, 5, "GPE")]
    assert report.dropped == Counter(discontinuous=1, misaligned=1, surface_mismatch=1)
    assert (report.entities_read, report.entities_written) == (9, 6)
    assert report.records_skipped == Counter(missing_ann=1)
    assert report.notes == Counter({
        "brat R lines ignored": 1, "brat A lines ignored": 1, "brat # lines ignored": 1, "brat N lines ignored": 1
    })
    assert report.examples["discontinuous"] == [f"{corpus}:a.ann: discontinuous: ORG [0, 18] 'Ada Lovelace worked'"]


@pytest.mark.parametrize(
    "line,field,message",
    [
        ("T1\tPER 0\tx", "offsets", "expected 'start end[;start end...]'"),
        ("T1 PER 0 1 x", None, "expected 'ID<TAB>Label start end<TAB>text'"),
    ],
)
def test_brat_errors(tmp_path: Path, line: str, field: str, message: str) -> None:
    write(tmp_path / "d.txt", "text")
    write(tmp_path / "d.ann", "T1\tX 0 1\tt\n" + line + "\n")
    with pytest.raises(ConversionError) as info:
        convert("brat", tmp_path)
    prefix = f"{tmp_path / 'd.ann'}:2: " + (f"field '{field}': " if field else "")
    assert str(info.value).startswith(prefix + message)


def test_brat_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="expected a folder"):
        convert("brat", write(tmp_path / "x.ann", ""))
