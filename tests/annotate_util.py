"""A tiny trained pipeline and input files shared by the annotate tests."""
import json
from pathlib import Path
from typing import Any, Dict, List

import spacy

from nested_data import FLAT, NESTED, SMALL_TOK2VEC, make_examples

TEXTS = [text for text, _ in NESTED + FLAT]


def train_tiny_pipeline(path: Path) -> Path:
    """A globalpointer_spans pipeline fitted a few steps on the nested test data, saved to ``path``."""
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "globalpointer_spans",
        config={"model": {"@architectures": "spacy-globalpointer.EfficientGlobalPointer.v1", "head_size": 16, "tok2vec": SMALL_TOK2VEC}},
    )
    examples = make_examples(nlp, NESTED + FLAT)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(path)
    return path


def write_jsonl(path: Path, records: List[Dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]
