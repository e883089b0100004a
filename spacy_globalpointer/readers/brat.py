"""Reader for brat standoff annotation: a folder of ``NAME.txt`` + ``NAME.ann`` pairs, one doc per pair.

Only text-bound annotations (``T`` lines, ``T1<TAB>Label start end<TAB>surface``) are entities; offsets
are character offsets into the ``.txt`` file with an exclusive end (a leading BOM is not counted in them
here: it is removed and the offsets shifted). A discontinuous entity (``start end;start end``) is dropped
as ``discontinuous``. Every other line (relations ``R``, events ``E``, attributes ``A``/``M``,
normalisations ``N``, notes ``#``, equivalences ``*``) is counted in the notes by its kind and not
converted. A ``.txt`` without its ``.ann`` is not written (records skipped: ``missing_ann``). Files are
read in sorted order of their names, in subfolders too.
"""
import re
from collections import Counter
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from .common import ConversionError, PathLike, RawEntity, RawRecord, exclusive_entity, read_lines, read_text
from .options import ReadOptions

_OFFSETS = re.compile(r"\d+ \d+(;\d+ \d+)*")


def _entity(path: Path, number: int, line: str) -> Tuple[Optional[str], RawEntity]:
    """Parse a ``T`` line into (drop reason or None, entity)."""
    parts = line.split("\t")
    if len(parts) < 2 or " " not in parts[1]:
        raise ConversionError(path, number, f"expected 'ID<TAB>Label start end<TAB>text', got {line!r}")
    label, offsets = parts[1].split(" ", 1)
    if not label:
        raise ConversionError(path, number, "empty label", field="label")
    if not _OFFSETS.fullmatch(offsets):
        message = f"expected 'start end[;start end...]', got {offsets!r}"
        raise ConversionError(path, number, message, field="offsets")
    fragments = [tuple(map(int, fragment.split())) for fragment in offsets.split(";")]
    surface = parts[2] if len(parts) > 2 else None
    if len(fragments) > 1:
        return "discontinuous", exclusive_entity(fragments[0][0], fragments[-1][1], label, None)
    (start, end), = fragments
    return None, exclusive_entity(start, end, label, surface)


def _record(folder: Path, txt: Path, notes: Counter) -> RawRecord:
    """The doc of one pair; messages name it ``FOLDER:NAME.ann``."""
    ann = txt.with_suffix(".ann")
    text = read_text(txt)
    shift = 1 if txt.read_bytes()[:3] == b"\xef\xbb\xbf" else 0
    location = str(ann.relative_to(folder))
    if not ann.exists():
        return RawRecord(text, [], location, skip="missing_ann")
    entities: List[RawEntity] = []
    dropped: List[Tuple[str, RawEntity]] = []
    for number, line in read_lines(ann):
        if not line.strip():
            continue
        if not line.startswith("T"):
            kind = line[:1] if line[:1] in "REAMN#*" else "other"
            notes[f"brat {kind} lines ignored"] += 1
            continue
        reason, entity = _entity(ann, number, line)
        entity = entity._replace(start=entity.start - shift, end=entity.end - shift)
        if reason is None:
            entities.append(entity)
        else:
            dropped.append((reason, entity))
    return RawRecord(text, entities, location, dropped=dropped)


def read_brat(path: PathLike, options: ReadOptions, notes: Counter) -> Iterator[RawRecord]:
    """Read every ``.txt``/``.ann`` pair under the folder ``path``."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConversionError(path, None, "expected a folder of .txt and .ann files")
    for txt in sorted(folder.rglob("*.txt")):
        yield _record(folder, txt, notes)
