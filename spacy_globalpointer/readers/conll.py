"""Reader for CoNLL-style token-per-line files with one or more tag columns ("layered IOB").

A line is ``TOKEN [other columns...] TAG [TAG...]``, split on whitespace; a blank line ends a sentence
and ``-DOCSTART-`` lines are skipped. The last ``tag_columns`` columns (default: every column after the
token, fixed by the first token line) are tag layers: each layer is decoded on its own, so an entity of
layer 2 may sit inside one of layer 1 (nested) or share its tokens (two labels). The tag scheme is
``auto`` (any of the prefixes B, I, M, E, S, L, U; the scheme seen is counted in the notes) or one of
``bio`` (IOB2), ``iob1`` (an ``I`` may start an entity), ``bioes`` (also BILOU) and ``bmes``. The doc
is built from the tokens themselves, with a space between tokens except for languages written without
spaces (zh, ja, th, ...).
"""
import re
from collections import Counter
from typing import Iterator, List, Optional, Set, Tuple

from .common import ConversionError, PathLike, RawEntity, RawRecord, read_lines
from .options import NO_SPACE_LANGS, ReadOptions

_TAG = re.compile(r"O|([BIMESLU])-(\S+)")
PREFIXES = {
    "auto": "BIMESLU", "bio": "BI", "iob1": "BI", "bioes": "BIESLU", "bmes": "BMES",
}
Row = Tuple[int, List[str]]  # line number, columns


def _scheme_name(prefixes: Set[str]) -> str:
    if "M" in prefixes:
        return "bmes"
    if prefixes & set("ESLU"):
        return "bioes"
    return "bio"


def _decode_layer(
    path: PathLike, rows: List[Row], column: int, scheme: str, seen: Set[str]
) -> List[Tuple[int, int, str]]:
    """Token spans (start, inclusive end, label) of one tag column."""
    spans: List[Tuple[int, int, str]] = []
    start, label = 0, None
    allowed = PREFIXES[scheme]
    for i, (number, columns) in enumerate(rows):
        tag = columns[column]
        match = _TAG.fullmatch(tag)
        if match is None or (match.group(1) is not None and match.group(1) not in allowed):
            message = f"unknown tag {tag!r} for scheme {scheme} (expected O or {'/'.join(allowed)}-LABEL)"
            hint = "; is this column a tag layer? see --tag-columns" if match is None else ""
            raise ConversionError(path, number, message + hint, field=f"column {column + 1}")
        prefix, tag_label = match.group(1), match.group(2)
        if prefix is None:
            if label is not None:
                spans.append((start, i - 1, label))
            label = None
            continue
        seen.add(prefix)
        continues = label == tag_label
        if prefix in "IM" and not continues:
            if scheme != "iob1":
                message = f"{tag!r} without a preceding B-{tag_label}"
                raise ConversionError(path, number, message, field=f"column {column + 1}")
            prefix = "B"
        if prefix in "EL" and not continues:
            message = f"{tag!r} without a preceding B-{tag_label}"
            raise ConversionError(path, number, message, field=f"column {column + 1}")
        if prefix in "BSU":
            if label is not None:
                spans.append((start, i - 1, label))
            start, label = i, tag_label
        if prefix in "SUEL":
            spans.append((start, i, tag_label))
            label = None
    if label is not None:
        spans.append((start, len(rows) - 1, label))
    return spans


def _record(
    path: PathLike, rows: List[Row], tag_columns: int, options: ReadOptions, seen: Set[str]
) -> RawRecord:
    """One sentence: the text from its tokens, the entities of every tag layer."""
    words = [columns[0] for _, columns in rows]
    joiner = options.lang not in NO_SPACE_LANGS
    spaces = [joiner] * (len(words) - 1) + [False]
    offsets, position = [], 0
    for word, space in zip(words, spaces):
        offsets.append(position)
        position += len(word) + space
    text = "".join(word + (" " if space else "") for word, space in zip(words, spaces))
    width = len(rows[0][1])
    entities: List[RawEntity] = []
    for column in range(width - tag_columns, width):
        for first, last, label in _decode_layer(path, rows, column, options.scheme, seen):
            entities.append(RawEntity(offsets[first], offsets[last] + len(words[last]) - 1, label))
    return RawRecord(text, entities, str(rows[0][0]), words=words, spaces=spaces)


def read_conll(path: PathLike, options: ReadOptions, notes: Counter) -> Iterator[RawRecord]:
    """Read a token-per-line file, one record per sentence."""
    rows: List[Row] = []
    width: Optional[int] = None
    seen: Set[str] = set()
    for number, line in read_lines(path):
        columns = line.split()
        if columns and columns[0] != "-DOCSTART-":
            if width is None:
                width = len(columns)
                tags = options.tag_columns if options.tag_columns is not None else width - 1
                if not 1 <= tags < width:
                    message = f"{width} columns leave no room for {tags} tag column(s) after the token"
                    raise ConversionError(path, number, message)
            if len(columns) != width:
                message = f"expected {width} columns like the first token line, got {len(columns)}: {line!r}"
                raise ConversionError(path, number, message)
            rows.append((number, columns))
            continue
        if rows:
            yield _record(path, rows, tags, options, seen)
            rows = []
    if rows:
        yield _record(path, rows, tags, options, seen)
    if seen and options.scheme == "auto":
        notes[f"conll scheme detected: {_scheme_name(seen)}"] += 1
