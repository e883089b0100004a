"""Convert raw Chinese NER corpora into spaCy ``DocBin`` data.

Supported formats (see ``FORMATS``):

* ``people_daily``: one ``CHAR TAG`` line per character, BIO tags, blank line between sentences.
* ``cluener``: CLUENER2020 JSON lines, ``{"text", "label": {type: {surface: [[start, end], ...]}}}``.
* ``cmeee``: CMeEE in the CHIP-2020 text form, ``TEXT|||start end type|||...|||`` per line.
* ``cmeee_cblue``: CMeEE in the CBLUE JSON form, a list of ``{"text", "entities": [...]}``.

All offsets in the raw data are character offsets with an inclusive end. Docs are tokenised by
``spacy.blank("zh")`` (one token per character). Every entity goes to ``doc.spans[spans_key]``;
``doc.ents`` is set only when a doc's entities do not overlap, otherwise it is left missing.

Malformed input raises ``ConversionError``, naming the file, the line (or JSON record) and the field. A
truncated file is malformed wherever the cut makes it so: invalid JSON (``cluener``, ``cmeee_cblue``), a
CMeEE line with entities that does not end with ``|||``, invalid UTF-8 (a cut inside a character). A
People's Daily file cut mid-sentence is still well-formed (``B-LOC`` cut to ``B-LO`` is a valid tag), so
the report warns when such a file does not end with a blank line after its last sentence. A cut exactly
at the end of a record or line cannot be detected.

Entities that are well-formed but unusable are dropped and counted by reason in the ``ConversionReport``:

* ``empty_span``: start > end;
* ``out_of_range``: an offset outside the text;
* ``surface_mismatch``: the recorded surface string differs from the text at the offsets;
* ``duplicate``: the same (start, end, label) already written from the record (a repeat of an entity
  dropped for another reason is dropped for that reason again);
* ``misaligned``: the offsets do not fall on token boundaries (``doc.char_span`` in strict mode),
  e.g. a span that starts or ends inside a run of whitespace.
"""
import codecs
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span

PathLike = Union[str, Path]

DROP_REASONS = ("empty_span", "out_of_range", "surface_mismatch", "duplicate", "misaligned")
MAX_EXAMPLES = 5
_PD_TAG = re.compile(r"O|[BI]-\S+")
_INTEGER = re.compile(r"-?[0-9]+")


class ConversionError(ValueError):
    """Malformed input. The message names the file, the line (or JSON record) and the field."""

    def __init__(
        self, path: PathLike, where: Optional[Union[int, str]], message: str, field: Optional[str] = None
    ) -> None:
        location = str(path) if where is None else f"{path}:{where}"
        prefix = f"field '{field}': " if field is not None else ""
        super().__init__(f"{location}: {prefix}{message}")
        self.path = str(path)
        self.where = where
        self.field = field


class RawEntity(NamedTuple):
    """One entity as read: character offsets with an inclusive end, and the surface if the format has one."""

    start: int
    end: int
    label: str
    surface: Optional[str] = None


@dataclass
class RawRecord:
    """One sample as read: its text, its entities and where it starts in the file.

    ``location`` is the 1-based line number, or ``record N`` (0-based list index) for JSON lists.
    """

    text: str
    entities: List[RawEntity]
    location: str


@dataclass
class ConversionReport:
    """Counts for one conversion. ``labels`` counts written entities per label."""

    docs: int = 0
    entities_read: int = 0
    entities_written: int = 0
    dropped: Counter = field(default_factory=Counter)
    nested_pairs: int = 0
    crossing_pairs: int = 0
    same_span_multi_label: int = 0
    docs_with_overlap: int = 0
    labels: Counter = field(default_factory=Counter)
    examples: Dict[str, List[str]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)

    def drop(self, reason: str, message: str) -> None:
        """Count a dropped entity and keep the first few messages for each reason."""
        self.dropped[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(message)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable view (counters as plain dicts, sorted by key)."""
        return {
            "docs": self.docs,
            "entities_read": self.entities_read,
            "entities_written": self.entities_written,
            "dropped": {reason: self.dropped[reason] for reason in DROP_REASONS},
            "nested_pairs": self.nested_pairs,
            "crossing_pairs": self.crossing_pairs,
            "same_span_multi_label": self.same_span_multi_label,
            "docs_with_overlap": self.docs_with_overlap,
            "labels": dict(sorted(self.labels.items())),
            "examples": {reason: list(msgs) for reason, msgs in sorted(self.examples.items())},
            "warnings": list(self.warnings),
        }

    def format(self) -> str:
        """A human-readable table, followed by the first dropped entities of each reason."""
        counts = [
            ("docs", self.docs),
            ("entities read", self.entities_read),
            ("entities written", self.entities_written),
            ("entities dropped", sum(self.dropped.values())),
            *[(f"  {reason}", self.dropped[reason]) for reason in DROP_REASONS],
            ("nested pairs", self.nested_pairs),
            ("crossing pairs", self.crossing_pairs),
            ("same span, several labels", self.same_span_multi_label),
            ("docs with overlap (no ents)", self.docs_with_overlap),
        ]
        per_label = [(f"  {label}", count) for label, count in sorted(self.labels.items())]
        width = max(len(name) for name, _ in counts + per_label)
        lines = [f"{name:<{width}}  {value:>8}" for name, value in counts]
        lines.append("entities written per label:")
        lines += [f"{name:<{width}}  {value:>8}" for name, value in per_label]
        for reason, messages in sorted(self.examples.items()):
            lines.append(f"first {reason} drops:")
            lines += [f"  {message}" for message in messages]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  {warning}" for warning in self.warnings]
        return "\n".join(lines)


# --- reading -------------------------------------------------------------------------------------


def _decode(path: PathLike, data: bytes, first_line: int) -> str:
    """Decode UTF-8, raising ConversionError with the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data[: err.start].count(b"\n")
        raise ConversionError(path, line, f"invalid UTF-8: {err.reason}") from None


def _read_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """Yield (1-based line number, line without LF/CRLF ending); a leading UTF-8 BOM is dropped.

    Lines are split on LF only, so a stray CR or U+2028 inside a text stays part of it.
    """
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            yield number, _decode(path, raw, number)


def _read_json_file(path: PathLike) -> Any:
    """Parse a whole JSON file (BOM allowed), raising ConversionError with the line on bad JSON."""
    data = Path(path).read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return json.loads(_decode(path, data, 1))
    except json.JSONDecodeError as err:
        raise ConversionError(path, err.lineno, f"invalid JSON: {err.msg} (column {err.colno})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _get(record: Dict[str, Any], key: str, kind: type, path: PathLike, where: str, name: str) -> Any:
    """``record[key]`` if present and of type ``kind``; else ConversionError naming field ``name``."""
    if key not in record:
        raise ConversionError(path, where, "missing", field=name)
    value = record[key]
    valid = _is_int(value) if kind is int else isinstance(value, kind)
    if not valid:
        raise ConversionError(
            path, where, f"expected {kind.__name__}, got {type(value).__name__} {value!r}", field=name
        )
    return value


def _get_label(record: Dict[str, Any], key: str, path: PathLike, where: str, name: str) -> str:
    label = _get(record, key, str, path, where, name)
    if not label:
        raise ConversionError(path, where, "empty label", field=name)
    return label


def _split_char_tag(path: PathLike, number: int, line: str) -> Tuple[str, str]:
    """Split a People's Daily line ``CHAR TAG`` (the char may itself be a space)."""
    char, sep, tag = line[:1], line[1:2], line[2:]
    if sep != " " or tag.split() != [tag]:
        raise ConversionError(path, number, f"expected 'CHAR TAG', got {line!r}")
    if not _PD_TAG.fullmatch(tag):
        raise ConversionError(path, number, f"unknown tag {tag!r} (expected O, B-X or I-X)", field="tag")
    return char, tag


def _bio_record(path: PathLike, rows: Sequence[Tuple[int, str, str]]) -> RawRecord:
    """Build a record from one sentence of (line number, char, tag) rows."""
    entities: List[RawEntity] = []
    start, label = 0, None
    for i, (number, _, tag) in enumerate(rows):
        prefix, _, tag_label = tag.partition("-")
        if prefix == "I":
            if tag_label != label:
                raise ConversionError(
                    path, number, f"{tag!r} without a preceding B-{tag_label} or I-{tag_label}", field="tag"
                )
            continue
        if label is not None:
            entities.append(RawEntity(start, i - 1, label))
        start, label = i, (tag_label if prefix == "B" else None)
    if label is not None:
        entities.append(RawEntity(start, len(rows) - 1, label))
    text = "".join(char for _, char, _ in rows)
    return RawRecord(text, entities, str(rows[0][0]))


def read_people_daily(path: PathLike) -> Iterator[RawRecord]:
    """Read People's Daily BIO data: ``CHAR TAG`` per line, blank lines between sentences."""
    rows: List[Tuple[int, str, str]] = []
    for number, line in _read_lines(path):
        if line.strip():
            rows.append((number, *_split_char_tag(path, number, line)))
        elif rows:
            yield _bio_record(path, rows)
            rows = []
    if rows:
        yield _bio_record(path, rows)


def _cluener_entities(labels: Any, path: PathLike, number: int) -> Iterator[RawEntity]:
    """Validate and flatten a CLUENER ``label`` object ({type: {surface: [[start, end], ...]}})."""
    if not isinstance(labels, dict):
        raise ConversionError(path, number, f"expected an object, got {labels!r}", field="label")
    for label, surfaces in labels.items():
        if not label:
            raise ConversionError(path, number, "empty label", field="label")
        if not isinstance(surfaces, dict):
            message = f"expected an object, got {surfaces!r}"
            raise ConversionError(path, number, message, field=f"label.{label}")
        for surface, positions in surfaces.items():
            name = f"label.{label}.{surface}"
            if not isinstance(positions, list):
                raise ConversionError(path, number, f"expected a list, got {positions!r}", field=name)
            for k, position in enumerate(positions):
                if not (isinstance(position, list) and len(position) == 2 and all(map(_is_int, position))):
                    message = f"expected [start, end] integers, got {position!r}"
                    raise ConversionError(path, number, message, field=f"{name}[{k}]")
                yield RawEntity(position[0], position[1], label, surface)


def read_cluener(path: PathLike) -> Iterator[RawRecord]:
    """Read CLUENER2020 JSON lines; records without ``label`` (the test split) have no entities."""
    for number, line in _read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConversionError(path, number, f"invalid JSON: {err}") from None
        if not isinstance(record, dict):
            raise ConversionError(path, number, f"expected a JSON object, got {type(record).__name__}")
        text = _get(record, "text", str, path, str(number), "text")
        entities = list(_cluener_entities(record.get("label", {}), path, number))
        yield RawRecord(text, entities, str(number))


def _cmeee_entity(path: PathLike, number: int, k: int, raw: str) -> RawEntity:
    """Parse the k-th (1-based) CHIP-2020 entity field ``start end type``."""
    parts = raw.split()
    if len(parts) != 3:
        raise ConversionError(path, number, f"expected 'start end type', got {raw!r}", field=f"entity {k}")
    for name, value in zip(("start", "end"), parts):
        if not _INTEGER.fullmatch(value):
            raise ConversionError(path, number, f"not an integer: {value!r}", field=f"entity {k} {name}")
    return RawEntity(int(parts[0]), int(parts[1]), parts[2])


def read_cmeee(path: PathLike) -> Iterator[RawRecord]:
    """Read CMeEE in the CHIP-2020 text form ``TEXT|||start end type|||...|||`` (test: text only)."""
    for number, line in _read_lines(path):
        if not line.strip():
            continue
        text, *fields = line.split("|||")
        if fields:
            if fields[-1].strip():  # a line cut short, or a field with no '|||' after it
                message = f"expected the line to end with '|||', got {fields[-1]!r} (truncated line?)"
                raise ConversionError(path, number, message, field=f"entity {len(fields)}")
            fields.pop()  # labelled lines end with '|||'
        entities = [_cmeee_entity(path, number, k, raw) for k, raw in enumerate(fields, 1)]
        yield RawRecord(text, entities, str(number))


def _cblue_entity(entity: Any, path: PathLike, where: str, name: str) -> RawEntity:
    """Validate one CBLUE entity object ``{"start_idx", "end_idx", "type", "entity"}``."""
    if not isinstance(entity, dict):
        raise ConversionError(path, where, f"expected an object, got {entity!r}", field=name)
    return RawEntity(
        _get(entity, "start_idx", int, path, where, f"{name}.start_idx"),
        _get(entity, "end_idx", int, path, where, f"{name}.end_idx"),
        _get_label(entity, "type", path, where, f"{name}.type"),
        _get(entity, "entity", str, path, where, f"{name}.entity"),
    )


def read_cmeee_cblue(path: PathLike) -> Iterator[RawRecord]:
    """Read CMeEE in the CBLUE JSON form (a list of records); records without ``entities`` are unlabelled."""
    records = _read_json_file(path)
    if not isinstance(records, list):
        raise ConversionError(path, None, f"expected a JSON list of records, got {type(records).__name__}")
    for index, record in enumerate(records):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise ConversionError(path, where, f"expected an object, got {type(record).__name__}")
        text = _get(record, "text", str, path, where, "text")
        raw_entities = _get(record, "entities", list, path, where, "entities") if "entities" in record else []
        entities = [_cblue_entity(e, path, where, f"entities[{k}]") for k, e in enumerate(raw_entities)]
        yield RawRecord(text, entities, where)


FORMATS: Dict[str, Callable[[PathLike], Iterator[RawRecord]]] = {
    "people_daily": read_people_daily,
    "cluener": read_cluener,
    "cmeee": read_cmeee,
    "cmeee_cblue": read_cmeee_cblue,
}


def _unterminated_warning(path: PathLike) -> Optional[str]:
    """A warning if a People's Daily file does not end with a blank line, as a file cut mid-sentence does not.

    (A cut CLUENER or CBLUE file is invalid JSON, and a cut CMeEE line with entities lacks its final ``|||``.)
    """
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        file.seek(max(size - 64, 0))
        lines = file.read().split(b"\n")
    ends_with_blank_line = len(lines) > 2 and lines[-1] == b"" and not lines[-2].strip()
    if ends_with_blank_line or not any(line.strip() for line in lines):
        return None
    return f"{path}: no blank line after the last sentence: the file may be truncated (check its last sentence)"


# --- converting ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _blank_zh() -> Language:
    return spacy.blank("zh")


def _invalid_reason(text: str, entity: RawEntity) -> Optional[str]:
    """The drop reason for offsets that cannot describe a span of ``text``, else None."""
    if entity.start > entity.end:
        return "empty_span"
    if entity.start < 0 or entity.end >= len(text):
        return "out_of_range"
    if entity.surface is not None and text[entity.start : entity.end + 1] != entity.surface:
        return "surface_mismatch"
    return None


def _drop_message(path: PathLike, record: RawRecord, entity: RawEntity, reason: str) -> str:
    found = record.text[max(entity.start, 0) : entity.end + 1]
    expected = f" (expected {entity.surface!r})" if reason == "surface_mismatch" else ""
    return (
        f"{path}:{record.location}: {reason}: {entity.label} [{entity.start}, {entity.end}] "
        f"{found!r}{expected}"
    )


def _accept_entities(doc: Doc, record: RawRecord, path: PathLike, report: ConversionReport) -> List[Span]:
    """Turn a record's entities into spans of ``doc``, counting each as written or dropped."""
    spans: List[Span] = []
    seen: Set[Tuple[int, int, str]] = set()
    for entity in record.entities:
        report.entities_read += 1
        key = (entity.start, entity.end, entity.label)
        reason = _invalid_reason(record.text, entity) or ("duplicate" if key in seen else None)
        span = doc.char_span(entity.start, entity.end + 1, label=entity.label) if reason is None else None
        if span is None:
            reason = reason or "misaligned"  # strict char_span: None unless on token boundaries
            report.drop(reason, _drop_message(path, record, entity, reason))
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


def _record_to_doc(
    nlp: Language, record: RawRecord, path: PathLike, spans_key: str, report: ConversionReport
) -> Doc:
    """Build the doc for one record: all spans in ``doc.spans``, ``doc.ents`` only if none overlap."""
    doc = nlp.make_doc(record.text)
    spans = _accept_entities(doc, record, path, report)
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


def iter_docs(
    fmt: str,
    input_path: PathLike,
    report: ConversionReport,
    spans_key: str = "sc",
    limit: Optional[int] = None,
) -> Iterator[Doc]:
    """Yield the docs of the first ``limit`` records (all if None), counting into ``report``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    nlp = _blank_zh()
    if fmt == "people_daily" and limit is None:
        warning = _unterminated_warning(input_path)
        if warning is not None:
            report.warnings.append(warning)
    for record in islice(FORMATS[fmt](input_path), limit):
        yield _record_to_doc(nlp, record, input_path, spans_key, report)
    assert report.entities_read == report.entities_written + sum(report.dropped.values())


def convert(
    fmt: str, input_path: PathLike, spans_key: str = "sc", limit: Optional[int] = None
) -> Tuple[DocBin, ConversionReport]:
    """Convert ``input_path`` in format ``fmt`` (see ``FORMATS``) to a DocBin and its report."""
    report = ConversionReport()
    doc_bin = DocBin(docs=iter_docs(fmt, input_path, report, spans_key, limit))
    return doc_bin, report
