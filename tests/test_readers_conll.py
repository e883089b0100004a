"""The CoNLL reader: layered tag columns, the tag schemes, token spacing per language."""
from collections import Counter
from pathlib import Path

import pytest
import spacy
from reader_helpers import BOM, read_back, spans_of, write

from spacy_globalpointer.readers import ConversionError, ReadOptions, convert

# Two layers: layer 1 the outer entities, layer 2 the inner ones (nested), one token with two labels.
LAYERED_EN = """-DOCSTART- O O

The O O
University B-ORG O
of I-ORG O
London I-ORG B-GPE
hired O O
Ada B-PER B-PER

Berlin B-GPE B-LOC
"""


@pytest.mark.parametrize("newline,bom", [("\n", ""), ("\r\n", BOM)], ids=["lf", "bom-crlf"])
def test_conll_layers_in_english(tmp_path: Path, newline: str, bom: str) -> None:
    path = write(tmp_path / "train.conll", bom + LAYERED_EN, newline)
    options = ReadOptions(lang="en")
    doc_bin, report = convert("conll", path, options=options, nlp=spacy.blank("en"))
    docs = read_back(doc_bin)
    assert [doc.text for doc in docs] == ["The University of London hired Ada", "Berlin"]
    assert [token.text for token in docs[0]] == ["The", "University", "of", "London", "hired", "Ada"]
    assert spans_of(docs[0]) == [(4, 24, "ORG"), (31, 34, "PER"), (18, 24, "GPE")]
    assert spans_of(docs[1]) == [(0, 6, "GPE"), (0, 6, "LOC")]
    assert report.dropped == Counter(duplicate=1)  # Ada is PER in both layers
    assert (report.nested_pairs, report.same_span_multi_label) == (1, 1)
    assert report.notes == Counter({"conll scheme detected: bio": 1})


def test_conll_bmes_in_chinese_has_no_spaces(tmp_path: Path) -> None:
    path = write(tmp_path / "msra.bmes", "北 B-LOC\n京 E-LOC\n大 B-ORG\n学 M-ORG\n堂 E-ORG\n人 S-PER\n\n")
    doc_bin, report = convert("conll", path)
    (doc,) = read_back(doc_bin)
    assert doc.text == "北京大学堂人" and len(doc) == 6
    assert spans_of(doc) == [(0, 2, "LOC"), (2, 5, "ORG"), (5, 6, "PER")]
    assert report.notes == Counter({"conll scheme detected: bmes": 1})


def test_conll_bioes_and_tag_columns(tmp_path: Path) -> None:
    """CoNLL-2003 style: POS and chunk columns before the tag; only the last column is a layer."""
    content = "EU NNP B-NP S-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP E-MISC\n"
    path = write(tmp_path / "bioes.txt", content)
    options = ReadOptions(lang="en", tag_columns=1)
    doc_bin, report = convert("conll", path, options=options, nlp=spacy.blank("en"))
    (doc,) = read_back(doc_bin)
    assert spans_of(doc) == [(0, 2, "ORG"), (11, 22, "MISC")]
    assert report.notes == Counter({"conll scheme detected: bioes": 1})
    with pytest.raises(ConversionError, match=r":1: field 'column 2': unknown tag 'NNP'.*--tag-columns"):
        convert("conll", path, options=ReadOptions(lang="en"))


def test_conll_iob1_lets_i_start(tmp_path: Path) -> None:
    path = write(tmp_path / "iob1.txt", "Ada I-PER\nand O\nBob I-PER\nCarl B-PER\n")
    with pytest.raises(ConversionError, match=r":1: field 'column 2': 'I-PER' without a preceding B-PER"):
        convert("conll", path, options=ReadOptions(lang="en"))
    doc_bin, _ = convert("conll", path, options=ReadOptions(lang="en", scheme="iob1"), nlp=spacy.blank("en"))
    assert spans_of(read_back(doc_bin)[0]) == [(0, 3, "PER"), (8, 11, "PER"), (12, 16, "PER")]


@pytest.mark.parametrize(
    "content,options,where,message",
    [
        ("a O\nb O O\n", ReadOptions(), "2", "expected 2 columns like the first token line, got 3"),
        ("a B-X\nb E-Y\n", ReadOptions(), "2", "field 'column 2': 'E-Y' without a preceding B-Y"),
        ("a M-X\n", ReadOptions(scheme="bio"), "1", "field 'column 2': unknown tag 'M-X' for scheme bio"),
        ("a\n", ReadOptions(), "1", "1 columns leave no room for 0 tag column(s)"),
    ],
)
def test_conll_errors(tmp_path: Path, content: str, options: ReadOptions, where: str, message: str) -> None:
    path = write(tmp_path / "bad.conll", content)
    with pytest.raises(ConversionError) as info:
        convert("conll", path, options=options)
    assert str(info.value).startswith(f"{path}:{where}: {message}"), str(info.value)
