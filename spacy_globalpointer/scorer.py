"""Scoring: P/R/F (overall and per label) for the spans key, plus ents when written."""
from typing import Any, Callable, Dict, Iterable, Sequence

from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import registry


def annotated_spans(doc: Doc, spans_key: str) -> Sequence[Span]:
    """A gold doc's entities: ``doc.spans[spans_key]``, or ``doc.ents`` if that group is absent or empty.

    For reference docs only: a predicted doc's ``doc.ents`` may come from another
    component, so predictions are read from ``doc.spans[spans_key]`` alone.
    """
    spans = doc.spans.get(spans_key)
    if spans:
        return spans
    return doc.ents


def has_span_annotation(doc: Doc, spans_key: str) -> bool:
    return spans_key in doc.spans or doc.has_annotation("ENT_IOB")


def score_globalpointer(
    examples: Iterable[Example], *, spans_key: str = "sc", write_ents: bool = True, **kwargs
) -> Dict[str, Any]:
    """``spans_{key}_{p,r,f,per_type}`` with overlaps allowed; ``ents_*`` if ents are written.

    Gold spans are ``annotated_spans`` of the reference docs; predicted spans are
    ``doc.spans[spans_key]`` of the predicted docs (none if the group is absent).
    """
    examples = list(examples)
    reference_docs = {id(eg.reference) for eg in examples}

    def get_spans(doc: Doc, _attr: str) -> Sequence[Span]:
        if id(doc) in reference_docs:
            return annotated_spans(doc, spans_key)
        return doc.spans.get(spans_key, [])

    scores = Scorer.score_spans(
        examples,
        attr=f"spans_{spans_key}",
        getter=get_spans,
        has_annotation=lambda doc: has_span_annotation(doc, spans_key),
        allow_overlap=True,
        labeled=True,
    )
    if write_ents:
        scores.update(get_ner_prf(examples))
    return scores


@registry.scorers("spacy-globalpointer.spans_scorer.v1")
def make_globalpointer_scorer() -> Callable[..., Dict[str, Any]]:
    return score_globalpointer
