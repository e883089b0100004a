"""Own data in English and German: convert -> spacy train (a tiny CNN, a few steps) -> spacy.load."""
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
from reader_helpers import write
from util import tiny_cnn_train_config

from spacy_globalpointer.convert import main as convert_main

Gold = List[Tuple[str, str]]  # (span text, label)

# English, as a Label Studio export: nested (the University of Oxford / Oxford), two labels on one span.
ENGLISH = [
    ("Ada studied at the University of Oxford .",
     [(0, 3, "PER"), (19, 39, "ORG"), (33, 39, "GPE")]),
    ("Alan visited Paris in May .", [(0, 4, "PER"), (13, 18, "GPE"), (13, 18, "LOC")]),
    ("The Bank of England is in London .", [(4, 19, "ORG"), (12, 19, "GPE"), (26, 32, "GPE")]),
]

# German, as CoNLL with two tag layers (outer entities, inner ones).
GERMAN = """Die O O
Universität B-ORG O
Heidelberg I-ORG B-GPE
liegt O O
am O O
Neckar B-LOC O
. O O

Angela B-PER O
Merkel I-PER O
besuchte O O
die O O
Freie B-ORG O
Universität I-ORG O
Berlin I-ORG B-GPE
. O O

Hamburg B-GPE O
ist O O
groß O O
. O O
"""
GERMAN_GOLD = [
    [("Universität Heidelberg", "ORG"), ("Neckar", "LOC"), ("Heidelberg", "GPE")],
    [("Angela Merkel", "PER"), ("Freie Universität Berlin", "ORG"), ("Berlin", "GPE")],
    [("Hamburg", "GPE")],
]


def label_studio_export(records) -> str:
    tasks = [
        {"data": {"text": text}, "annotations": [{"result": [
            {"type": "labels", "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
            for s, e, label in spans
        ]}]}
        for text, spans in records
    ]
    return json.dumps(tasks, ensure_ascii=False)


def spacy_cli(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "spacy", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def train_and_load(tmp_path: Path, lang: str) -> spacy.language.Language:
    (tmp_path / "partial.cfg").write_text(tiny_cnn_train_config(lang, eval_frequency=40), encoding="utf8")
    spacy_cli("init", "fill-config", "partial.cfg", "config.cfg", cwd=tmp_path)
    spacy_cli("train", "config.cfg", "--output", "out", "--paths.train", "train.spacy",
              "--paths.dev", "train.spacy", cwd=tmp_path)
    return spacy.load(tmp_path / "out" / "model-last")


def predicted(nlp: spacy.language.Language, text: str) -> List[Tuple[str, str]]:
    doc = nlp(text)
    return sorted((span.text, span.label_) for span in doc.spans["sc"])


@pytest.mark.slow
def test_english_label_studio_to_trained_pipeline(tmp_path: Path) -> None:
    export = write(tmp_path / "export.json", label_studio_export(ENGLISH))
    assert convert_main(["label_studio", str(export), str(tmp_path / "train.spacy"), "--lang", "en"]) == 0
    nlp = train_and_load(tmp_path, "en")
    assert nlp.lang == "en" and nlp.pipe_names == ["globalpointer_spans"]
    for text, spans in ENGLISH:
        assert predicted(nlp, text) == sorted((text[s:e], label) for s, e, label in spans)


@pytest.mark.slow
def test_german_layered_conll_to_trained_pipeline(tmp_path: Path) -> None:
    conll = write(tmp_path / "train.conll", GERMAN)
    assert convert_main(["conll", str(conll), str(tmp_path / "train.spacy"), "--lang", "de"]) == 0
    nlp = train_and_load(tmp_path, "de")
    assert nlp.lang == "de"
    texts = [" ".join(line.split()[0] for line in block.splitlines()) for block in GERMAN.strip().split("\n\n")]
    assert texts[0] == "Die Universität Heidelberg liegt am Neckar ."
    for text, gold in zip(texts, GERMAN_GOLD):
        assert predicted(nlp, text) == sorted(gold)
