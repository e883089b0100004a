"""Inputs (JSONL, text, Parquet files, folders, globs) and the final output files."""
import glob
import json
import os
from io import BytesIO
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

INPUT_SUFFIXES = (".jsonl", ".txt", ".parquet")
OUTPUT_SUFFIXES = (".jsonl", ".json", ".parquet")
PYARROW_MISSING = (
    "reading or writing Parquet needs pyarrow: pip install pyarrow "
    '(or pip install "spacy-globalpointer[ray]")'
)

Position = Tuple[int, int]  # (index of the input file, 1-based line or row)


class InputRecord(NamedTuple):
    """A readable input record: its place in the inputs, its id and text."""

    position: Position
    id: Any
    text: str


class BadRecord(NamedTuple):
    """An input record that cannot be annotated, with where it is and why."""

    position: Position
    source: str
    line: int
    reason: str

    def to_dict(self) -> Dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason}


Item = Union[InputRecord, BadRecord]


class InputError(ValueError):
    """The inputs cannot be read at all (no files, unknown format, missing pyarrow)."""


def import_pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or an :class:`InputError` saying how to install them."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as err:
        raise InputError(PYARROW_MISSING) from err
    return pyarrow, pyarrow.parquet


def expand_inputs(patterns: Sequence[str]) -> List[Path]:
    """Input files for files, folders (their shards, sorted) and glob patterns, in that order."""
    files: List[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if p.suffix in INPUT_SUFFIXES and p.is_file())
        elif path.exists():
            matches = [path]
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            raise InputError(f"{pattern}: no input files ({', '.join(INPUT_SUFFIXES)})")
        for match in matches:
            if match.suffix not in INPUT_SUFFIXES:
                raise InputError(f"{match}: unknown input format (expected {', '.join(INPUT_SUFFIXES)})")
            if match not in files:
                files.append(match)
    return files


def parse_lines(
    data: Union[bytes, Iterable[bytes]],
    source: str,
    file_index: int,
    *,
    text_key: str,
    id_key: Optional[str],
    after_line: int = 0,
) -> Iterator[Item]:
    """Records of a ``.jsonl`` or ``.txt`` file's bytes (or binary lines); lines up to ``after_line`` are skipped.

    Lines end at ``\n`` only (a lone ``\r`` stays in the text), however the file is read.
    """
    lines = BytesIO(data) if isinstance(data, bytes) else data
    is_text = source.endswith(".txt")
    for number, raw in enumerate(lines, start=1):
        if number <= after_line:
            continue
        position = (file_index, number)
        raw = raw.rstrip(b"\r\n")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield BadRecord(position, source, number, f"invalid UTF-8 at byte {err.start}")
            continue
        if is_text:
            yield InputRecord(position, f"{source}:{number}", line)
        elif line.strip():
            yield _json_record(line, position, source, text_key, id_key)


def _json_record(line: str, position: Position, source: str, text_key: str, id_key: Optional[str]) -> Item:
    number = position[1]
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        return BadRecord(position, source, number, f"invalid JSON: {err.msg} (column {err.colno})")
    if not isinstance(data, dict):
        return BadRecord(position, source, number, "not a JSON object")
    return _checked_record(data, position, source, text_key, id_key)


def _checked_record(data: Dict[str, Any], position: Position, source: str, text_key: str, id_key: Optional[str]) -> Item:
    number = position[1]
    if data.get(text_key) is None:
        return BadRecord(position, source, number, f"missing field '{text_key}'")
    if not isinstance(data[text_key], str):
        return BadRecord(position, source, number, f"field '{text_key}' is not a string")
    if id_key is None:
        return InputRecord(position, f"{source}:{number}", data[text_key])
    if data.get(id_key) is None:
        return BadRecord(position, source, number, f"missing field '{id_key}'")
    return InputRecord(position, data[id_key], data[text_key])


def parse_parquet(
    data: Union[bytes, str, Path],
    source: str,
    file_index: int,
    *,
    text_key: str,
    id_key: Optional[str],
    after_line: int = 0,
) -> Iterator[Item]:
    """Records of a Parquet file (path or bytes); ``line`` is the 1-based row number."""
    pyarrow, parquet = import_pyarrow()
    handle = pyarrow.BufferReader(data) if isinstance(data, bytes) else str(data)
    table = parquet.ParquetFile(handle)
    # A missing column makes every row a bad record ("missing field"), as in JSONL.
    columns = [c for c in (text_key, id_key) if c is not None and c in table.schema_arrow.names]
    number = 0
    for batch in table.iter_batches(batch_size=4096, columns=columns):
        for row in batch.to_pylist():
            number += 1
            if number > after_line:
                yield _checked_record(row, (file_index, number), source, text_key, id_key)


def read_items(files: Sequence[Path], *, text_key: str, id_key: Optional[str], after: Optional[Position] = None) -> Iterator[Item]:
    """Every record of ``files`` in order, good or bad, after position ``after`` (exclusive)."""
    for index, path in enumerate(files):
        after_line = 0
        if after is not None:
            if index < after[0]:
                continue
            if index == after[0]:
                after_line = after[1]
        yield from read_file(path, index, text_key=text_key, id_key=id_key, after_line=after_line)


def read_file(path: Path, index: int, *, text_key: str, id_key: Optional[str], after_line: int = 0) -> Iterator[Item]:
    """The records of one input file (read line by line, or row batch by row batch)."""
    if path.suffix == ".parquet":
        yield from parse_parquet(path, str(path), index, text_key=text_key, id_key=id_key, after_line=after_line)
        return
    with path.open("rb") as handle:
        yield from parse_lines(handle, str(path), index, text_key=text_key, id_key=id_key, after_line=after_line)


def count_records(files: Sequence[Path]) -> int:
    """About how many records the inputs hold (lines, or Parquet rows), for a progress bar's ETA."""
    total = 0
    for path in files:
        if path.suffix == ".parquet":
            total += import_pyarrow()[1].ParquetFile(str(path)).metadata.num_rows
        else:
            with path.open("rb") as handle:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total


def errors_path(output: Path) -> Path:
    """Where the bad records of ``output`` go: ``NAME.errors.jsonl`` beside it."""
    return output.with_name(output.stem + ".errors.jsonl")


def write_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` to a temporary file, fsync it, rename it to ``path`` and fsync the folder."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_output(output: Path, record_files: Sequence[Path], *, keep_text: bool = False) -> None:
    """Join JSONL record files into ``output``: JSONL, a JSON array (``.json``) or Parquet."""
    if output.suffix == ".jsonl":
        write_atomic(output, _file_chunks(record_files))
    elif output.suffix == ".json":
        write_atomic(output, _json_array_chunks(record_files))
    else:
        _write_parquet(output, record_files, keep_text)


def _file_chunks(files: Sequence[Path]) -> Iterator[bytes]:
    for path in files:
        with path.open("rb") as handle:
            yield from iter(lambda: handle.read(1 << 20), b"")


def _json_array_chunks(files: Sequence[Path]) -> Iterator[bytes]:
    yield b"["
    first = True
    for path in files:
        with path.open("rb") as handle:
            for line in handle:
                yield (b"\n" if first else b",\n") + line.rstrip(b"\n")
                first = False
    yield b"\n]\n"


def _read_jsonl(path: Path) -> List[Dict[str, Any]]:
    with path.open("rb") as handle:
        return [json.loads(line) for line in handle]


def _write_parquet(output: Path, record_files: Sequence[Path], keep_text: bool) -> None:
    """Parquet with :func:`record_schema`; ids stay integers if all are, else become strings."""
    pyarrow, parquet = import_pyarrow()
    ids_are_ints = all(
        type(record["id"]) is int for path in record_files for record in _read_jsonl(path)
    )
    schema = record_schema(pyarrow, id_type=pyarrow.int64() if ids_are_ints else pyarrow.string(), keep_text=keep_text)
    temporary = output.with_name(f".{output.name}.tmp")
    with parquet.ParquetWriter(str(temporary), schema) as writer:
        for path in record_files:
            records = _read_jsonl(path)
            if not ids_are_ints:
                for record in records:
                    record["id"] = record["id"] if isinstance(record["id"], str) else json.dumps(record["id"])
            writer.write_table(pyarrow.Table.from_pylist(records, schema=schema))
    with temporary.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, output)
    fsync_dir(output.parent)


def record_schema(pyarrow, id_type=None, keep_text: bool = False):
    """Arrow schema of an output record."""
    span_fields = [
        ("start_char", pyarrow.int64()),
        ("end_char", pyarrow.int64()),
        ("start", pyarrow.int64()),
        ("end", pyarrow.int64()),
        ("label", pyarrow.string()),
    ]
    fields = [
        ("id", id_type or pyarrow.string()),
        ("spans", pyarrow.list_(pyarrow.struct(span_fields + [("score", pyarrow.float64())]))),
        ("ents", pyarrow.list_(pyarrow.struct(span_fields))),
    ]
    return pyarrow.schema(fields + ([("text", pyarrow.string())] if keep_text else []))
