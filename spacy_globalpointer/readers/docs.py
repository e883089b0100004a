"""Records -> spaCy Docs: tokenisation, character-to-token alignment and the entity accounting.

Every entity a reader yields ends up either written (in ``doc.spans[spans_key]``, and in ``doc.ents``
when no two spans of the doc overlap) or dropped with a counted reason:

* ``empty_span``: start > end (an exclusive-end format: start == end);
* ``out_of_range``: an offset outside the text;
* ``surface_mismatch``: the recorded surface string differs from the text at the offsets;
* ``duplicate``: the same (start, end, label) already written from the record (a repeat of an entity
  dropped for another reason is dropped for that reason again);
* ``misaligned``: the offsets do not fall on token boundaries under the chosen alignment
  (``doc.char_span`` with ``alignment_mode`` strict, contract or expand);
* ``whitespace_boundary``: the aligned span starts or ends on a whitespace token (the component never
  predicts such a span, so it would only cost recall);
* reasons the readers give (a rejected record, a discontinuous brat entity, ...), see each reader.
"""
from collections import Counter
from typing import Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span

from .common import ConversionReport, PathLike, RawEntity, RawRecord

ALIGNMENTS = ("strict", "contract", "expand")


def _invalid_reason(text: str, entity: RawEntity) -> Optional[str]:
    """The drop reason for offsets that cannot describe a span of ``text``, else None."""
    if entity.start > entity.end:
        return "empty_span"
    if entity.start < 0 or entity.end >= len(text):
        return "out_of_range"
    if entity.surface is not None and text[entity.start : entity.end + 1] != entity.surface:
        return "surface_mismatch"
    return None


def drop_message(path: PathLike, record: RawRecord, entity: RawEntity, reason: str) -> str:
    """``file:location: reason: label [start, inclusive end] 'text at the offsets'``."""
    found = record.text[max(entity.start, 0) : entity.end + 1]
    expected = f" (expected {entity.surface!r})" if reason == "surface_mismatch" else ""
    return (
        f"{record.path or path}:{record.location}: {reason}: {entity.label} [{entity.start}, {entity.end}] "
        f"{found!r}{expected}"
    )


def _align(doc: Doc, entity: RawEntity, alignment: str) -> Tuple[Optional[Span], Optional[str]]:
    """The span for ``entity`` (or None) and the drop reason (or None)."""
    reason = _invalid_reason(doc.text, entity)
    if reason is not None:
        return None, reason
    span = doc.char_span(entity.start, entity.end + 1, label=entity.label, alignment_mode=alignment)
    if span is None or len(span) == 0:
        return None, "misaligned"
    if span[0].is_space or span[-1].is_space:
        return None, "whitespace_boundary"
    return span, None


def accept_entities(
    doc: Doc, record: RawRecord, path: PathLike, report: ConversionReport, alignment: str = "strict"
) -> List[Span]:
    """Turn a record's entities into spans of ``doc``, counting each as written or dropped."""
    spans: List[Span] = []
    seen: Set[Tuple[int, int, str]] = set()
    for entity in record.entities:
        report.entities_read += 1
        span, reason = _align(doc, entity, alignment)
        key = (span.start, span.end, entity.label) if span is not None else None
        if reason is None and key in seen:
            reason = "duplicate"
        if reason is not None:
            report.drop(reason, drop_message(path, record, entity, reason))
            continue
        seen.add(key)
        spans.append(span)
        report.entities_written += 1
        report.labels[entity.label] += 1
    return spans


def overlap_counts(spans: Sequence[Tuple[int, int, str]]) -> Tuple[int, int, int]:
    """Count (nested pairs, crossing pairs, offsets with several labels) in (start, end_excl, label) spans.

    A nested pair is two spans with different offsets, one inside the other; a crossing pair partially
    overlaps. The same offsets with two labels count once in the third number, not as a pair.
    """
    ordered = sorted(spans)
    nested = crossing = 0
    for i, (start1, end1, _) in enumerate(ordered):
        for start2, end2, _ in ordered[i + 1 :]:
            if start2 >= end1:
                break
            if (start1, end1) == (start2, end2):
                continue
            if start1 == start2 or end2 <= end1:
                nested += 1
            else:
                crossing += 1
    multi_label = sum(1 for n in Counter((s, e) for s, e, _ in ordered).values() if n > 1)
    return nested, crossing, multi_label


def record_to_doc(
    nlp: Language,
    record: RawRecord,
    path: PathLike,
    report: ConversionReport,
    spans_key: str = "sc",
    alignment: str = "strict",
) -> Doc:
    """Build the doc for one record: all spans in ``doc.spans``, ``doc.ents`` only if none overlap."""
    if record.words is not None:
        doc = Doc(nlp.vocab, words=record.words, spaces=record.spaces)
    else:
        doc = nlp.make_doc(record.text)
    spans = accept_entities(doc, record, path, report, alignment)
    nested, crossing, multi_label = overlap_counts([(s.start, s.end, s.label_) for s in spans])
    report.nested_pairs += nested
    report.crossing_pairs += crossing
    report.same_span_multi_label += multi_label
    doc.spans[spans_key] = spans
    if nested or crossing or multi_label:
        report.docs_with_overlap += 1
    else:
        doc.set_ents(spans, default="outside")
    report.docs += 1
    return doc


def records_to_docs(
    nlp: Language,
    records: Iterable[RawRecord],
    path: PathLike,
    report: ConversionReport,
    spans_key: str = "sc",
    alignment: str = "strict",
) -> Iterator[Doc]:
    """Docs of the records that are not skipped; every entity (also of skipped records) is counted."""
    for record in records:
        for reason, entity in record.dropped:
            report.entities_read += 1
            report.drop(reason, drop_message(path, record, entity, reason))
        if record.skip is not None:
            report.records_skipped[record.skip] += 1
            for entity in record.entities:
                report.entities_read += 1
                report.drop(record.skip, drop_message(path, record, entity, record.skip))
            continue
        yield record_to_doc(nlp, record, path, report, spans_key, alignment)
