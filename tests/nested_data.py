"""Small Chinese training sets with real nesting shapes, shared by the tests."""
from typing import List, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

# A small CNN encoder that trains fast in tests.
SMALL_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2",
    "pretrained_vectors": None,
    "width": 64,
    "depth": 2,
    "embed_size": 500,
    "window_size": 1,
    "maxout_pieces": 3,
    "subword_features": True,
}

Entity = Tuple[int, int, str]  # token start, token end (exclusive), label

# One token per character (spacy.blank("zh")): offsets are character offsets.
NESTED: List[Tuple[str, List[Entity]]] = [
    # An ORG inside an ORG inside an ORG, a LOC at the start of both.
    ("北京大学附属医院的张医生说肺癌很危险。", [(0, 2, "LOC"), (0, 4, "ORG"), (0, 8, "ORG"), (9, 10, "PER"), (13, 15, "DIS"), (13, 14, "BOD")]),
    ("上海市长在复旦大学演讲。", [(0, 3, "LOC"), (0, 4, "PER"), (5, 9, "ORG"), (5, 7, "LOC")]),
    # Two labels on the same span.
    ("他得了糖尿病，血糖很高。", [(0, 1, "PER"), (3, 6, "DIS"), (3, 6, "SYM"), (7, 9, "ITE")]),
    ("今天没有任何实体。", []),
]

FLAT: List[Tuple[str, List[Entity]]] = [
    ("海钓比赛地点在厦门与金门之间的海域。", [(7, 9, "LOC"), (10, 12, "LOC")]),
    ("中国人民银行行长易纲在北京讲话。", [(0, 6, "ORG"), (8, 10, "PER"), (11, 13, "LOC")]),
    ("这是一个普通的句子。", []),
]


def make_examples(nlp: Language, data, *, as_ents: bool = False, key: str = "sc") -> List[Example]:
    examples = []
    for text, entities in data:
        reference = nlp.make_doc(text)
        spans = [Span(reference, start, end, label=label) for start, end, label in entities]
        if as_ents:
            reference.set_ents(spans, default="outside")
        else:
            reference.spans[key] = spans
        examples.append(Example(nlp.make_doc(text), reference))
    return examples


def span_tuples(doc: Doc, key: str = "sc"):
    return [(span.start, span.end, span.label_) for span in doc.spans[key]]
