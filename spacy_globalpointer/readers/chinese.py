"""Readers for the Chinese benchmark corpora the package was built on.

* ``people_daily``: one ``CHAR TAG`` line per character, BIO tags, blank line between sentences.
* ``cluener``: CLUENER2020 JSON lines, ``{"text", "label": {type: {surface: [[start, end], ...]}}}``.
* ``cmeee``: CMeEE in the CHIP-2020 text form, ``TEXT|||start end type|||...|||`` per line.
* ``cmeee_cblue``: CMeEE in the CBLUE JSON form, a list of ``{"text", "entities": [...]}``.

All offsets in these files are character offsets with an inclusive end. A truncated file is malformed
wherever the cut makes it so: invalid JSON (``cluener``, ``cmeee_cblue``), a CMeEE line with entities
that does not end with ``|||``, invalid UTF-8 (a cut inside a character). A People's Daily file cut
mid-sentence is still well-formed (``B-LOC`` cut to ``B-LO`` is a valid tag), so ``unterminated_warning``
flags such a file when it does not end with a blank line after its last sentence.
"""
import re
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from .common import (
    ConversionError,
    PathLike,
    RawEntity,
    RawRecord,
    get,
    get_label,
    is_int,
    iter_json_array,
    read_json_lines,
    read_lines,
)

_PD_TAG = re.compile(r"O|[BI]-\S+")
_INTEGER = re.compile(r"-?[0-9]+")


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
    for number, line in read_lines(path):
        if line.strip():
            rows.append((number, *_split_char_tag(path, number, line)))
        elif rows:
            yield _bio_record(path, rows)
            rows = []
    if rows:
        yield _bio_record(path, rows)


def unterminated_warning(path: PathLike) -> Optional[str]:
    """A warning if a People's Daily file does not end with a blank line, as a file cut mid-sentence does not."""
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        file.seek(max(size - 64, 0))
        lines = file.read().split(b"\n")
    ends_with_blank_line = len(lines) > 2 and lines[-1] == b"" and not lines[-2].strip()
    if ends_with_blank_line or not any(line.strip() for line in lines):
        return None
    return f"{path}: no blank line after the last sentence: the file may be truncated (check its last sentence)"


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
                if not (isinstance(position, list) and len(position) == 2 and all(map(is_int, position))):
                    message = f"expected [start, end] integers, got {position!r}"
                    raise ConversionError(path, number, message, field=f"{name}[{k}]")
                yield RawEntity(position[0], position[1], label, surface)


def read_cluener(path: PathLike) -> Iterator[RawRecord]:
    """Read CLUENER2020 JSON lines; records without ``label`` (the test split) have no entities."""
    for number, record in read_json_lines(path):
        text = get(record, "text", str, path, str(number), "text")
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
    for number, line in read_lines(path):
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
        get(entity, "start_idx", int, path, where, f"{name}.start_idx"),
        get(entity, "end_idx", int, path, where, f"{name}.end_idx"),
        get_label(entity, "type", path, where, f"{name}.type"),
        get(entity, "entity", str, path, where, f"{name}.entity"),
    )


def read_cmeee_cblue(path: PathLike) -> Iterator[RawRecord]:
    """Read CMeEE in the CBLUE JSON form (a list of records); records without ``entities`` are unlabelled."""
    for index, record in iter_json_array(path):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise ConversionError(path, where, f"expected an object, got {type(record).__name__}")
        text = get(record, "text", str, path, where, "text")
        raw_entities = get(record, "entities", list, path, where, "entities") if "entities" in record else []
        entities = [_cblue_entity(e, path, where, f"entities[{k}]") for k, e in enumerate(raw_entities)]
        yield RawRecord(text, entities, where)
