"""Read NER corpora and annotation-tool exports into spaCy Docs (``python -m spacy_globalpointer.convert``).

One module per format family (``chinese``, ``jsonl_tools``, ``brat``, ``conll``); ``common`` holds the
record types, the report and the streaming input helpers, ``docs`` the records -> Docs step.
"""
from collections import Counter
from functools import lru_cache
from itertools import islice
from typing import Callable, Dict, Iterator, Optional, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from . import brat, chinese, conll, jsonl_tools
from .common import ConversionError, ConversionReport, PathLike, RawEntity, RawRecord
from .docs import ALIGNMENTS, overlap_counts, records_to_docs
from .options import ReadOptions

Reader = Callable[[PathLike, ReadOptions, Counter], Iterator[RawRecord]]


def _path_only(read: Callable[[PathLike], Iterator[RawRecord]]) -> Reader:
    def reader(path: PathLike, options: ReadOptions, notes: Counter) -> Iterator[RawRecord]:
        return read(path)

    reader.__doc__ = read.__doc__
    return reader


FORMATS: Dict[str, Reader] = {
    "people_daily": _path_only(chinese.read_people_daily),
    "cluener": _path_only(chinese.read_cluener),
    "cmeee": _path_only(chinese.read_cmeee),
    "cmeee_cblue": _path_only(chinese.read_cmeee_cblue),
    "doccano": jsonl_tools.read_doccano,
    "prodigy": jsonl_tools.read_prodigy,
    "label_studio": jsonl_tools.read_label_studio,
    "brat": brat.read_brat,
    "conll": conll.read_conll,
}


def make_nlp(lang: str = "zh", tokenizer: Optional[str] = None) -> Language:
    """The pipeline whose tokenizer splits the texts: ``tokenizer`` (a package or path) if given,
    else ``spacy.blank(lang)`` (built once per language). Only the tokenizer is used."""
    return spacy.load(tokenizer) if tokenizer is not None else _blank(lang)


@lru_cache(maxsize=None)
def _blank(lang: str) -> Language:
    return spacy.blank(lang)


def read_records(
    fmt: str, input_path: PathLike, report: ConversionReport, options: ReadOptions = ReadOptions()
) -> Iterator[RawRecord]:
    """The raw records of ``input_path`` in format ``fmt``; reader notes are counted into ``report``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[fmt](input_path, options, report.notes)


def iter_docs(
    fmt: str,
    input_path: PathLike,
    report: ConversionReport,
    spans_key: str = "sc",
    limit: Optional[int] = None,
    options: ReadOptions = ReadOptions(),
    nlp: Optional[Language] = None,
    alignment: str = "strict",
) -> Iterator[Doc]:
    """Yield the docs of the first ``limit`` records (all if None), counting into ``report``."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {alignment!r}; expected one of {', '.join(ALIGNMENTS)}")
    records = islice(read_records(fmt, input_path, report, options), limit)
    if fmt == "people_daily" and limit is None:
        warning = chinese.unterminated_warning(input_path)
        if warning is not None:
            report.warnings.append(warning)
    nlp = nlp if nlp is not None else make_nlp(options.lang)
    yield from records_to_docs(nlp, records, input_path, report, spans_key, alignment)
    assert report.entities_read == report.entities_written + sum(report.dropped.values())


def convert(
    fmt: str,
    input_path: PathLike,
    spans_key: str = "sc",
    limit: Optional[int] = None,
    options: ReadOptions = ReadOptions(),
    nlp: Optional[Language] = None,
    alignment: str = "strict",
) -> Tuple[DocBin, ConversionReport]:
    """Convert ``input_path`` in format ``fmt`` (see ``FORMATS``) to a DocBin and its report."""
    report = ConversionReport()
    docs = iter_docs(fmt, input_path, report, spans_key, limit, options, nlp, alignment)
    return DocBin(docs=docs), report


__all__ = [
    "FORMATS", "ALIGNMENTS", "ConversionError", "ConversionReport", "RawEntity", "RawRecord", "ReadOptions",
    "convert", "iter_docs", "make_nlp", "overlap_counts", "read_records",
]
