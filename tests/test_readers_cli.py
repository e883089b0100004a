"""The convert CLI across formats: languages and tokenizers, alignment modes, dev split, progress."""
import json
from pathlib import Path

import pytest
import spacy
from reader_helpers import jsonl, spans_of, write
from spacy.tokens import DocBin

from spacy_globalpointer.convert import dev_path, main

# "Lovelace" cut inside its token at both ends; "Ada  " ending on the whitespace token between the names.
RECORDS = [
    {"text": "Ada  Lovelace wrote", "label": [[6, 12, "PER"], [0, 5, "PER"], [0, 3, "PER"], [5, 13, "PER"]]},
    {"text": "Ada Lovelace", "label": [[0, 12, "PER"]]},
    {"text": "Grace Hopper", "label": [[0, 5, "PER"]]},
    {"text": "Alan Turing", "label": [[5, 11, "PER"]]},
]


def load(path: Path, lang: str = "en") -> list:
    return list(DocBin().from_disk(path).get_docs(spacy.blank(lang).vocab))


@pytest.fixture
def doccano_file(tmp_path: Path) -> Path:
    return write(tmp_path / "people.jsonl", jsonl(RECORDS))


@pytest.mark.parametrize(
    "alignment,first_doc,dropped",
    [
        ("strict", [(0, 3, "PER"), (5, 13, "PER")], {"misaligned": 1, "whitespace_boundary": 1}),
        ("contract", [(0, 3, "PER"), (5, 13, "PER")], {"misaligned": 1, "whitespace_boundary": 1}),
        ("expand", [(5, 13, "PER"), (0, 3, "PER")], {"duplicate": 1, "whitespace_boundary": 1}),
    ],
)
def test_alignment_modes(
    doccano_file: Path, tmp_path: Path, alignment: str, first_doc: list, dropped: dict
) -> None:
    output, report_path = tmp_path / "out.spacy", tmp_path / "report.json"
    argv = ["doccano", str(doccano_file), str(output), "--lang", "en", "--alignment", alignment]
    assert main(argv + ["--report", str(report_path)]) == 0
    report = json.loads(report_path.read_text("utf-8"))
    assert spans_of(load(output)[0]) == first_doc
    assert {reason: n for reason, n in report["dropped"].items() if n} == dropped


def test_tokenizer_from_a_pipeline_folder(doccano_file: Path, tmp_path: Path) -> None:
    spacy.blank("de").to_disk(tmp_path / "de_pipeline")
    output = tmp_path / "out.spacy"
    assert main(["doccano", str(doccano_file), str(output), "--tokenizer", str(tmp_path / "de_pipeline")]) == 0
    assert [token.text for token in load(output, "de")[1]] == ["Ada", "Lovelace"]


def test_dev_split_is_deterministic(doccano_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    outputs = []
    for run in range(2):
        output = tmp_path / f"run{run}" / "train.spacy"
        argv = ["doccano", str(doccano_file), str(output), "--lang", "en", "--dev-fraction", "0.25", "--seed", "3"]
        assert main(argv) == 0
        assert dev_path(output) == output.parent / "train.dev.spacy"
        train, dev = load(output), load(dev_path(output))
        assert (len(train), len(dev)) == (3, 1)
        outputs.append(([doc.text for doc in train], [doc.text for doc in dev]))
    assert outputs[0] == outputs[1]
    assert sorted(outputs[0][0] + outputs[0][1]) == sorted(record["text"] for record in RECORDS)
    assert "wrote 1 docs to" in capsys.readouterr().out


def test_progress_on_stderr(doccano_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["doccano", str(doccano_file), str(tmp_path / "o.spacy"), "--progress-every", "2"]) == 0
    assert capsys.readouterr().err.splitlines() == ["... 2 records read", "... 4 records read"]


def test_conll_spacing_follows_the_tokenizer_language(tmp_path: Path) -> None:
    spacy.blank("en").to_disk(tmp_path / "en_pipeline")
    conll = write(tmp_path / "a.conll", "Ada B-PER\nLovelace I-PER\nwrote O\n")
    output = tmp_path / "out.spacy"
    assert main(["conll", str(conll), str(output), "--tokenizer", str(tmp_path / "en_pipeline")]) == 0
    (doc,) = load(output)
    assert doc.text == "Ada Lovelace wrote" and spans_of(doc) == [(0, 12, "PER")]


def test_unknown_language_is_an_error(doccano_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["doccano", str(doccano_file), str(tmp_path / "o.spacy"), "--lang", "xx_unknown"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
