"""Annotated docs as plain dicts, and as Label Studio tasks with predictions."""
from typing import Any, Dict, Iterable, Iterator, Optional

from spacy.language import Language
from spacy.tokens import Doc

FACTORY = "globalpointer_spans"
OUTPUT_FORMATS = ("records", "label_studio")


def spans_key(nlp: Language) -> str:
    """The ``doc.spans`` key written by the pipeline's ``globalpointer_spans`` component."""
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == FACTORY:
            return nlp.get_pipe(name).key
    raise ValueError(f"the pipeline has no '{FACTORY}' component (components: {', '.join(nlp.pipe_names) or 'none'})")


def doc_to_record(doc: Doc, record_id: Any, key: str, *, keep_text: bool = False) -> Dict[str, Any]:
    """``{"id", "spans", "ents"[, "text"]}``: every predicted span with its score, and ``doc.ents``.

    ``start_char``/``end_char`` are code-point offsets into the text, ``start``/``end``
    token offsets (end exclusive).
    """
    group = doc.spans[key] if key in doc.spans else []
    scores = group.attrs.get("scores", []) if len(group) else []
    record: Dict[str, Any] = {
        "id": record_id,
        "spans": [dict(_offsets(span), score=float(score)) for span, score in zip(group, scores)],
        "ents": [_offsets(span) for span in doc.ents],
    }
    if keep_text:
        record["text"] = doc.text
    return record


def _offsets(span) -> Dict[str, Any]:
    return {
        "start_char": span.start_char,
        "end_char": span.end_char,
        "start": span.start,
        "end": span.end,
        "label": span.label_,
    }


def to_label_studio(record: Dict[str, Any], text: str, model_version: str) -> Dict[str, Any]:
    """A Label Studio task: ``data.text`` (and ``data.id``) with one prediction of ``labels`` results.

    Results use ``from_name="label"`` and ``to_name="text"`` (a ``<Labels name="label"
    toName="text">`` over ``<Text name="text">``), code-point offsets, and the span's
    probability as ``score``; the prediction's ``score`` is the mean over its spans (0 without any).
    """
    results = [
        {
            "id": f"{index}",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {
                "start": span["start_char"],
                "end": span["end_char"],
                "text": text[span["start_char"] : span["end_char"]],
                "labels": [span["label"]],
            },
            "score": span["score"],
        }
        for index, span in enumerate(record["spans"])
    ]
    mean = sum(r["score"] for r in results) / len(results) if results else 0.0
    prediction = {"model_version": model_version, "score": mean, "result": results}
    return {"data": {"text": text, "id": record["id"]}, "predictions": [prediction]}


def model_version(nlp: Language) -> str:
    """``lang_name-version`` from the pipeline's meta, as Label Studio's ``model_version``."""
    meta = nlp.meta
    return f"{meta.get('lang', 'xx')}_{meta.get('name', 'pipeline')}-{meta.get('version', '0.0.0')}"


def annotate_records(
    nlp: Language,
    records: Iterable[Dict[str, Any]],
    *,
    text_key: str = "text",
    id_key: Optional[str] = None,
    keep_text: bool = False,
    output_format: str = "records",
    batch_size: int = 64,
) -> Iterator[Dict[str, Any]]:
    """Annotate dict records in order: one plain dict out per record in.

    The id is ``record[id_key]``, or the record's 0-based index without ``id_key``.
    A record whose text is missing or not a string raises ``ValueError`` naming it.
    ``output_format="label_studio"`` yields Label Studio tasks instead.
    """
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
    key = spans_key(nlp)
    version = model_version(nlp)

    def texts_with_ids() -> Iterator[tuple]:
        for index, record in enumerate(records):
            text = record.get(text_key)
            if not isinstance(text, str):
                problem = "missing" if text is None else "not a string"
                raise ValueError(f"record {index}: field '{text_key}' is {problem}")
            if id_key is not None and record.get(id_key) is None:
                raise ValueError(f"record {index}: field '{id_key}' is missing")
            yield text, (record[id_key] if id_key is not None else index)

    for doc, record_id in nlp.pipe(texts_with_ids(), as_tuples=True, batch_size=batch_size):
        yield format_record(doc_to_record(doc, record_id, key), doc.text, output_format, version, keep_text)


def format_record(record: Dict[str, Any], text: str, output_format: str, version: str, keep_text: bool) -> Dict[str, Any]:
    """An annotated record in the output format: a plain record (with ``text`` if kept) or a Label Studio task."""
    if output_format == "label_studio":
        return to_label_studio(record, text, version)
    return dict(record, text=text) if keep_text else record
