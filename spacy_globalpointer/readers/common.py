"""What every reader shares: raw records, the conversion report, errors and streaming input.

A reader turns one input (a file, or a folder for ``brat``) into ``RawRecord`` objects, one per
document, lazily: nothing but the current record is held in memory. Offsets in ``RawEntity`` are
character (code point) offsets with an **inclusive** end, whatever the input format uses.
"""
import codecs
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

PathLike = Union[str, Path]

# Reasons always listed in a report (others appear when they occur).
DROP_REASONS = (
    "empty_span", "out_of_range", "surface_mismatch", "duplicate", "misaligned", "whitespace_boundary"
)
MAX_EXAMPLES = 5
_BOM = codecs.BOM_UTF8


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
    """One document as read: its text, its entities and where it starts in its file.

    ``location`` is the 1-based line number, or ``record N`` (0-based index) for JSON lists.
    ``skip`` names why the record is not written (e.g. a rejected Prodigy answer): its entities are then
    dropped for that reason. ``dropped`` holds entities the reader already rejected, with their reason.
    ``words``/``spaces`` are the record's own tokens (token-per-line formats); the doc is built from them
    instead of running a tokenizer. ``path`` overrides the input path in messages (folder formats).
    """

    text: str
    entities: List[RawEntity]
    location: str
    skip: Optional[str] = None
    dropped: List[Tuple[str, RawEntity]] = field(default_factory=list)
    words: Optional[List[str]] = None
    spaces: Optional[List[bool]] = None
    path: Optional[str] = None


@dataclass
class ConversionReport:
    """Counts for one conversion. ``labels`` counts written entities per label.

    ``records_skipped`` counts records not written, by reason; ``notes`` counts events that lose no entity
    (ignored annotation lines, offsets remapped, the tag scheme found).
    """

    docs: int = 0
    dev_docs: int = 0
    entities_read: int = 0
    entities_written: int = 0
    dropped: Counter = field(default_factory=Counter)
    records_skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
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

    def drop_reasons(self) -> List[str]:
        """The fixed reasons, then any other reason that occurred."""
        return list(DROP_REASONS) + sorted(set(self.dropped) - set(DROP_REASONS))

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-serialisable view (counters as plain dicts, sorted by key)."""
        return {
            "docs": self.docs,
            "dev_docs": self.dev_docs,
            "entities_read": self.entities_read,
            "entities_written": self.entities_written,
            "dropped": {reason: self.dropped[reason] for reason in self.drop_reasons()},
            "records_skipped": dict(sorted(self.records_skipped.items())),
            "notes": dict(sorted(self.notes.items())),
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
            *([("  of which dev", self.dev_docs)] if self.dev_docs else []),
            ("entities read", self.entities_read),
            ("entities written", self.entities_written),
            ("entities dropped", sum(self.dropped.values())),
            *[(f"  {reason}", self.dropped[reason]) for reason in self.drop_reasons()],
            ("records skipped", sum(self.records_skipped.values())),
            *[(f"  {reason}", n) for reason, n in sorted(self.records_skipped.items())],
            ("nested pairs", self.nested_pairs),
            ("crossing pairs", self.crossing_pairs),
            ("same span, several labels", self.same_span_multi_label),
            ("docs with overlap (no ents)", self.docs_with_overlap),
        ]
        per_label = [(f"  {label}", count) for label, count in sorted(self.labels.items())]
        notes = [(f"  {note}", count) for note, count in sorted(self.notes.items())]
        width = max(len(name) for name, _ in counts + per_label + notes)
        lines = [f"{name:<{width}}  {value:>8}" for name, value in counts]
        lines.append("entities written per label:")
        lines += [f"{name:<{width}}  {value:>8}" for name, value in per_label]
        if notes:
            lines.append("notes:")
            lines += [f"{name:<{width}}  {value:>8}" for name, value in notes]
        for reason, messages in sorted(self.examples.items()):
            lines.append(f"first {reason} drops:")
            lines += [f"  {message}" for message in messages]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  {warning}" for warning in self.warnings]
        return "\n".join(lines)


class Progress:
    """Print ``N records read`` to stderr every ``every`` records (``every=None``: silent)."""

    def __init__(self, every: Optional[int]) -> None:
        self.every = every
        self.count = 0

    def tick(self) -> None:
        self.count += 1
        if self.every and self.count % self.every == 0:
            print(f"... {self.count:,} records read", file=sys.stderr, flush=True)


# --- input ---------------------------------------------------------------------------------------


def decode(path: PathLike, data: bytes, first_line: int) -> str:
    """Decode UTF-8, raising ConversionError with the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data[: err.start].count(b"\n")
        raise ConversionError(path, line, f"invalid UTF-8: {err.reason}") from None


def read_lines(path: PathLike) -> Iterator[Tuple[int, str]]:
    """Yield (1-based line number, line without LF/CRLF ending); a leading UTF-8 BOM is dropped.

    Lines are split on LF only, so a stray CR or U+2028 inside a text stays part of it.
    """
    with open(path, "rb") as file:
        for number, raw in enumerate(file, 1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if raw.endswith(b"\n"):
                raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            yield number, decode(path, raw, number)


def read_text(path: PathLike) -> str:
    """A whole UTF-8 file (BOM dropped), line endings kept as they are."""
    data = Path(path).read_bytes()
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    return decode(path, data, 1)


def read_json_file(path: PathLike) -> Any:
    """Parse a whole JSON file (BOM allowed), raising ConversionError with the line on bad JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ConversionError(path, err.lineno, f"invalid JSON: {err.msg} (column {err.colno})") from None


def read_json_lines(path: PathLike) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON Lines file."""
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConversionError(path, number, f"invalid JSON: {err}") from None
        if not isinstance(record, dict):
            raise ConversionError(path, number, f"expected a JSON object, got {type(record).__name__}")
        yield number, record


def iter_json_array(path: PathLike, chunk_size: int = 1 << 20) -> Iterator[Tuple[int, Any]]:
    """Yield (0-based index, element) of a file holding one JSON array, without loading the whole file.

    The file is decoded incrementally and each element parsed with ``json.JSONDecoder.raw_decode`` as
    soon as the buffer holds all of it, so memory stays at about one element plus one chunk.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as file:
        buffer, position, line, eof = "", 0, 1, False

        def fill() -> None:
            """Drop the consumed part of the buffer and append the next chunk."""
            nonlocal buffer, position, line, eof
            data = file.read(chunk_size)
            eof = not data
            line += buffer.count("\n", 0, position)
            buffer, position = buffer[position:], 0
            try:
                buffer += utf8.decode(data, final=eof)
            except UnicodeDecodeError as err:
                bad = line + buffer.count("\n") + data[: err.start].count(b"\n")
                raise ConversionError(path, bad, f"invalid UTF-8: {err.reason}") from None

        def here() -> int:
            return line + buffer.count("\n", 0, position)

        fill()
        state, index = "open", 0  # open -> first -> (value -> sep)* -> done
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n":
                position += 1
            if position >= len(buffer):
                if eof:
                    break
                fill()
                continue
            char = buffer[position]
            if state == "open" and char == "\ufeff" and position == 0 and line == 1:
                position += 1
            elif state == "open":
                if char != "[":
                    kind = {"{": "dict", '"': "str"}.get(char, repr(char))
                    raise ConversionError(path, None, f"expected a JSON list of records, got {kind}")
                state, position = "first", position + 1
            elif state == "done":
                raise ConversionError(path, here(), f"invalid JSON: extra data after the list: {char!r}")
            elif char == "]" and state in ("first", "sep"):
                state, position = "done", position + 1
            elif state == "sep":
                if char != ",":
                    message = f"invalid JSON: expected ',' or ']' after record {index - 1}, got {char!r}"
                    raise ConversionError(path, here(), message)
                state, position = "value", position + 1
            else:
                try:
                    value, end = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError as err:
                    if not eof:  # maybe the element is only partly read
                        fill()
                        continue
                    where = line + buffer.count("\n", 0, err.pos)
                    raise ConversionError(path, where, f"invalid JSON: {err.msg} (record {index})") from None
                if end == len(buffer) and not eof:  # a bare number may go on in the next chunk
                    fill()
                    continue
                yield index, value
                state, index, position = "sep", index + 1, end
    if state == "open":
        raise ConversionError(path, 1, "invalid JSON: the file is empty (truncated?)")
    if state != "done":
        raise ConversionError(path, here(), "invalid JSON: the list is not closed (truncated file?)")


# --- field access --------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def get(record: Dict[str, Any], key: str, kind: type, path: PathLike, where: str, name: str) -> Any:
    """``record[key]`` if present and of type ``kind``; else ConversionError naming field ``name``."""
    if key not in record:
        raise ConversionError(path, where, "missing", field=name)
    value = record[key]
    valid = is_int(value) if kind is int else isinstance(value, kind)
    if not valid:
        raise ConversionError(
            path, where, f"expected {kind.__name__}, got {type(value).__name__} {value!r}", field=name
        )
    return value


def get_label(record: Dict[str, Any], key: str, path: PathLike, where: str, name: str) -> str:
    label = get(record, key, str, path, where, name)
    if not label:
        raise ConversionError(path, where, "empty label", field=name)
    return label


def exclusive_entity(start: int, end: int, label: str, surface: Optional[str] = None) -> RawEntity:
    """A RawEntity from offsets with an exclusive end (start == end becomes an ``empty_span``)."""
    return RawEntity(start, end - 1, label, surface)
