"""Annotate large corpora with a ``globalpointer_spans`` pipeline: ``python -m spacy_globalpointer.annotate``.

Python API: :func:`annotate_records` (dict records in, plain dicts out) and the
Ray Data actor :class:`SpanAnnotator` for your own ``ds.map_batches`` jobs.
"""
from .engines import SpanAnnotator
from .records import annotate_records, doc_to_record, to_label_studio

__all__ = ["annotate_records", "doc_to_record", "to_label_studio", "SpanAnnotator"]
