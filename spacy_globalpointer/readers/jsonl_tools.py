"""Readers for annotation-tool exports: ``doccano``, ``prodigy`` (JSON Lines) and ``label_studio`` (JSON).

All three store character offsets with an exclusive end.

* ``doccano``: ``{"text", "label": [[start, end, "LABEL"], ...]}`` (sequence labelling export; ``labels``
  is accepted for ``label``) or the newer ``{"text", "entities": [{"start_offset", "end_offset",
  "label"}, ...]}``. A record without any of the three keys has no entities.
* ``prodigy``: ``{"text", "spans": [{"start", "end", "label"}], "answer"}``. Only ``answer == "accept"``
  is written; other records are skipped (``answer_reject``, ``answer_ignore``, ``answer_missing``) and their
  spans dropped for that reason. A span's ``text``, when present, is checked against the text.
* ``label_studio``: a Label Studio JSON export, one array of tasks, read element by element (the file is
  never loaded whole). The text is ``data[text_key]``; entities are the ``labels`` results of the chosen
  annotation (``ls_annotation``: first, last or most-recent by ``updated_at``/``created_at``, among the
  annotations not ``was_cancelled``) or prediction (``ls_source="predictions"``). A region with several
  labels gives one entity per label. Skipped, with their entities dropped: cancelled annotations
  (``cancelled_annotation``) and the annotations not chosen (``unused_annotation``). A task with no usable
  annotation is not written (records skipped: ``unannotated``): it is not a negative example, whereas an
  annotation with an empty result is. Results of other types (choices, relations, ...) are counted in
  the notes. Label Studio stores code-point offsets, but a browser may have counted UTF-16 units, which
  shifts every offset after an astral character (emoji): a region whose ``value.text`` does not match the
  text at its offsets is re-read as UTF-16 offsets; if that matches it is kept (note
  ``utf16_offsets_resolved``), else it is dropped as ``surface_mismatch``.
"""
from collections import Counter
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .common import (
    ConversionError,
    PathLike,
    RawEntity,
    RawRecord,
    exclusive_entity,
    get,
    get_label,
    is_int,
    iter_json_array,
    read_json_lines,
)
from .options import ReadOptions

def _doccano_entities(record: Dict[str, Any], path: PathLike, where: str) -> Iterator[RawEntity]:
    if "entities" in record:
        for k, entity in enumerate(get(record, "entities", list, path, where, "entities")):
            name = f"entities[{k}]"
            if not isinstance(entity, dict):
                raise ConversionError(path, where, f"expected an object, got {entity!r}", field=name)
            yield exclusive_entity(
                get(entity, "start_offset", int, path, where, f"{name}.start_offset"),
                get(entity, "end_offset", int, path, where, f"{name}.end_offset"),
                get_label(entity, "label", path, where, f"{name}.label"),
            )
        return
    key = "label" if "label" in record else "labels"
    if key not in record:
        return
    for k, triple in enumerate(get(record, key, list, path, where, key)):
        valid = isinstance(triple, list) and len(triple) == 3 and is_int(triple[0]) and is_int(triple[1])
        if not (valid and isinstance(triple[2], str) and triple[2]):
            message = f"expected [start, end, label], got {triple!r}"
            raise ConversionError(path, where, message, field=f"{key}[{k}]")
        yield exclusive_entity(triple[0], triple[1], triple[2])


def read_doccano(path: PathLike, options: ReadOptions, notes: Counter) -> Iterator[RawRecord]:
    """Read a doccano JSONL export (either entity layout)."""
    for number, record in read_json_lines(path):
        where = str(number)
        text = get(record, "text", str, path, where, "text")
        yield RawRecord(text, list(_doccano_entities(record, path, where)), where)


def _prodigy_entity(span: Any, path: PathLike, where: str, name: str) -> RawEntity:
    if not isinstance(span, dict):
        raise ConversionError(path, where, f"expected an object, got {span!r}", field=name)
    surface = span.get("text")
    return exclusive_entity(
        get(span, "start", int, path, where, f"{name}.start"),
        get(span, "end", int, path, where, f"{name}.end"),
        get_label(span, "label", path, where, f"{name}.label"),
        surface if isinstance(surface, str) else None,
    )


def read_prodigy(path: PathLike, options: ReadOptions, notes: Counter) -> Iterator[RawRecord]:
    """Read a Prodigy JSONL export (``prodigy db-out``); only accepted answers are written."""
    for number, record in read_json_lines(path):
        where = str(number)
        text = get(record, "text", str, path, where, "text")
        spans = get(record, "spans", list, path, where, "spans") if "spans" in record else []
        entities = [_prodigy_entity(span, path, where, f"spans[{k}]") for k, span in enumerate(spans)]
        answer = record.get("answer")
        skip = None if answer == "accept" else f"answer_{answer if isinstance(answer, str) else 'missing'}"
        yield RawRecord(text, entities, where, skip=skip)


# --- Label Studio --------------------------------------------------------------------------------


def _utf16_to_code_points(text: str) -> Dict[int, int]:
    """Map each UTF-16 offset that falls between code points to the code-point offset."""
    mapping, units = {}, 0
    for index, char in enumerate(text):
        mapping[units] = index
        units += 2 if ord(char) > 0xFFFF else 1
    mapping[units] = len(text)
    return mapping


def _ls_entities(
    result: Sequence[Any], text: str, path: PathLike, where: str, name: str, notes: Counter
) -> List[RawEntity]:
    """The entities of one annotation's (or prediction's) ``result`` list."""
    entities: List[RawEntity] = []
    utf16: Optional[Dict[int, int]] = None
    for k, item in enumerate(result):
        field = f"{name}.result[{k}]"
        if not isinstance(item, dict):
            raise ConversionError(path, where, f"expected an object, got {item!r}", field=field)
        if item.get("type") != "labels":
            notes[f"label_studio result type {item.get('type')!r} ignored"] += 1
            continue
        value = get(item, "value", dict, path, where, f"{field}.value")
        start = get(value, "start", int, path, where, f"{field}.value.start")
        end = get(value, "end", int, path, where, f"{field}.value.end")
        labels = get(value, "labels", list, path, where, f"{field}.value.labels")
        surface = value.get("text") if isinstance(value.get("text"), str) else None
        if surface is not None and text[start:end] != surface:
            utf16 = utf16 if utf16 is not None else _utf16_to_code_points(text)
            if start in utf16 and end in utf16 and text[utf16[start] : utf16[end]] == surface:
                start, end = utf16[start], utf16[end]
                notes["utf16_offsets_resolved"] += len(labels)
        for j, label in enumerate(labels):
            if not (isinstance(label, str) and label):
                message = f"expected a label, got {label!r}"
                raise ConversionError(path, where, message, field=f"{field}.value.labels[{j}]")
            entities.append(exclusive_entity(start, end, label, surface))
    return entities


def _choose(annotations: List[Tuple[int, Dict[str, Any]]], rule: str) -> int:
    """Position in ``annotations`` (index, annotation) pairs of the one ``rule`` picks."""
    if rule == "first":
        return 0
    if rule == "last":
        return len(annotations) - 1
    stamps = [str(a.get("updated_at") or a.get("created_at") or "") for _, a in annotations]
    return max(range(len(annotations)), key=lambda i: (stamps[i], i))


def _label_studio_record(
    task: Any, index: int, path: PathLike, options: ReadOptions, notes: Counter
) -> RawRecord:
    where = f"record {index}"
    if not isinstance(task, dict):
        raise ConversionError(path, where, f"expected an object, got {type(task).__name__}")
    data = get(task, "data", dict, path, where, "data")
    text = get(data, options.text_key, str, path, where, f"data.{options.text_key}")
    source = options.ls_source
    items = get(task, source, list, path, where, source) if source in task else []
    usable: List[Tuple[int, Dict[str, Any]]] = []
    dropped: List[Tuple[str, RawEntity]] = []
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConversionError(path, where, f"expected an object, got {item!r}", field=f"{source}[{k}]")
        if item.get("was_cancelled"):
            result = get(item, "result", list, path, where, f"{source}[{k}].result") if "result" in item else []
            entities = _ls_entities(result, text, path, where, f"{source}[{k}]", notes)
            dropped += [("cancelled_annotation", entity) for entity in entities]
            notes["cancelled annotations"] += 1
        else:
            usable.append((k, item))
    if not usable:
        return RawRecord(text, [], where, skip="unannotated", dropped=dropped)
    chosen = _choose(usable, options.ls_annotation)
    entities: List[RawEntity] = []
    for position, (k, item) in enumerate(usable):
        result = get(item, "result", list, path, where, f"{source}[{k}].result")
        found = _ls_entities(result, text, path, where, f"{source}[{k}]", notes)
        if position == chosen:
            entities = found
        else:
            dropped += [("unused_annotation", entity) for entity in found]
    return RawRecord(text, entities, where, dropped=dropped)


def read_label_studio(path: PathLike, options: ReadOptions, notes: Counter) -> Iterator[RawRecord]:
    """Read a Label Studio JSON export (a list of tasks), streaming it task by task."""
    for index, task in iter_json_array(path):
        yield _label_studio_record(task, index, path, options, notes)
