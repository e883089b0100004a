"""Where the pipeline runs: ``nlp.pipe`` in this process (local) or actors of a Ray Data job (ray).

Both engines turn an ordered stream of input records into an ordered stream of
:class:`Annotated` records, with the bad records passed through in their places.
"""
import json
import logging
import os
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

import spacy
from spacy.language import Language

from .io import BadRecord, Item, Position, parse_lines, parse_parquet
from .records import doc_to_record, spans_key

RAY_MISSING = 'the ray engine needs Ray Data: pip install "spacy-globalpointer[ray]"'
# Test-only fault injection: an actor that finds this file deletes it and exits at once.
CRASH_FILE_ENV = "SPACY_GLOBALPOINTER_ANNOTATE_CRASH_FILE"
# Ray Data block size for parsed records: a few thousand short docs per block.
BLOCK_BYTES = 256 * 1024


class Annotated(NamedTuple):
    """An annotated input record: its position and its plain record (``text`` included)."""

    position: Position
    record: Dict[str, Any]


Output = Union[Annotated, BadRecord]


def annotate_local(nlp: Language, items: Iterable[Item], *, batch_size: int = 64, n_process: int = 1) -> Iterator[Output]:
    """Annotate with ``nlp.pipe``; bad records come out in their input order among the good ones."""
    key = spans_key(nlp)
    pending: Deque[BadRecord] = deque()

    def good_records() -> Iterator[tuple]:
        for item in items:
            if isinstance(item, BadRecord):
                pending.append(item)
            else:
                yield item.text, (item.position, item.id)

    stream = nlp.pipe(good_records(), as_tuples=True, batch_size=batch_size, n_process=n_process)
    for doc, (position, record_id) in stream:
        while pending and pending[0].position < tuple(position):
            yield pending.popleft()
        yield Annotated(tuple(position), doc_to_record(doc, record_id, key, keep_text=True))
    yield from pending


class SpanAnnotator:
    """A Ray Data actor: loads the pipeline once, then annotates ``pyarrow`` batches.

    Use it in your own job with ``ds.map_batches(SpanAnnotator, batch_format="pyarrow",
    fn_constructor_kwargs={"model": "path/or/package"}, concurrency=N)``. The batch
    keeps its columns (``text_key`` dropped unless ``keep_text``) and gains ``spans``
    and ``ents`` (lists of structs, as in :func:`doc_to_record`). A row whose text is
    null gets null ``spans`` and ``ents``. The pipeline is loaded by name or path in
    each actor, never pickled.
    """

    def __init__(
        self,
        model: str,
        *,
        text_key: str = "text",
        keep_text: bool = False,
        batch_size: int = 64,
        use_gpu: bool = False,
        threads: Optional[int] = None,
    ) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        if use_gpu:
            spacy.require_gpu()
        self.nlp = spacy.load(model)
        self.key = spans_key(self.nlp)
        self.text_key = text_key
        self.keep_text = keep_text
        self.batch_size = batch_size

    def __call__(self, batch):
        import pyarrow

        from .io import record_schema

        crash_file = os.environ.get(CRASH_FILE_ENV)
        if crash_file and Path(crash_file).exists():
            Path(crash_file).unlink()
            os._exit(1)
        texts = batch.column(self.text_key).to_pylist()
        valid = [i for i, text in enumerate(texts) if isinstance(text, str)]
        spans: List[Optional[list]] = [None] * len(texts)
        ents: List[Optional[list]] = [None] * len(texts)
        docs = self.nlp.pipe((texts[i] for i in valid), batch_size=self.batch_size)
        for index, doc in zip(valid, docs):
            record = doc_to_record(doc, None, self.key)
            spans[index], ents[index] = record["spans"], record["ents"]
        schema = record_schema(pyarrow)
        if not self.keep_text:
            batch = batch.drop_columns([self.text_key])
        batch = batch.append_column(schema.field("spans"), pyarrow.array(spans, schema.field("spans").type))
        return batch.append_column(schema.field("ents"), pyarrow.array(ents, schema.field("ents").type))


def import_ray():
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise ImportError(RAY_MISSING) from err
    return ray


def _parse_file_row(row: Dict[str, Any], *, indices: Dict[str, int], sources: Dict[str, str], text_key: str, id_key: Optional[str], after: Optional[Position]) -> Iterator[Dict[str, Any]]:
    """Ray ``flat_map``: one input file's bytes → one row per record (bad ones flagged in ``error``)."""
    index = indices[row["path"]]
    after_line = after[1] if after is not None and after[0] == index else 0
    parse = parse_parquet if sources[row["path"]].endswith(".parquet") else parse_lines
    for item in parse(row["bytes"], sources[row["path"]], index, text_key=text_key, id_key=id_key, after_line=after_line):
        is_bad = isinstance(item, BadRecord)
        yield {
            "file": index,
            "line": item.position[1],
            "source": sources[row["path"]],
            "id_json": "" if is_bad else json.dumps(item.id, ensure_ascii=False),
            "text": "" if is_bad else item.text,
            "error": item.reason if is_bad else "",
        }


def _one_task_at_a_time(ray) -> Dict[str, Any]:
    """``compute=TaskPoolStrategy(size=1)``, or ``concurrency=1`` on Ray versions without it."""
    strategy = getattr(ray.data, "TaskPoolStrategy", None)
    return {"compute": strategy(size=1)} if strategy is not None else {"concurrency": 1}


def annotate_ray(
    model: str,
    files: Sequence[Path],
    *,
    text_key: str,
    id_key: Optional[str],
    after: Optional[Position] = None,
    batch_size: int = 64,
    num_workers: int = 1,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    address: Optional[str] = None,
    max_retries: int = 3,
) -> Iterator[Output]:
    """Annotate with a Ray Data job: files read by Ray (one read task at a time), records
    annotated by ``num_workers`` :class:`SpanAnnotator` actors, results streamed back in order.

    Actors killed mid-batch are restarted and their batch retried (``max_retries`` times each),
    so each record comes back once. Joins the cluster at ``address``, or starts a local one.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield from _run_ray_job(
            ray, model, files, text_key=text_key, id_key=id_key, after=after, batch_size=batch_size,
            num_workers=num_workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
            max_retries=max_retries,
        )
    finally:
        if started:  # stop the actors (and a local Ray) now, not when they notice the driver is gone
            ray.shutdown()


def _run_ray_job(ray, model: str, files: Sequence[Path], *, text_key: str, id_key: Optional[str], after: Optional[Position],
                 batch_size: int, num_workers: int, cpus_per_worker: float, gpus_per_worker: float, max_retries: int) -> Iterator[Output]:
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    # Small blocks, so that one input file is spread over all the actors.
    context.target_max_block_size = BLOCK_BYTES
    todo = [(index, path) for index, path in enumerate(files) if after is None or index >= after[0]]
    if not todo:
        return
    paths = [str(path.resolve()) for _, path in todo]
    indices = {p: index for p, (index, _) in zip(paths, todo)}
    sources = {p: str(path) for p, (_, path) in zip(paths, todo)}
    dataset = ray.data.read_binary_files(paths, include_paths=True, concurrency=1, num_cpus=0)
    # Reading and parsing take no CPU slot (they are light), so that actors holding every
    # CPU of a small machine cannot starve them; one task at a time.
    dataset = dataset.flat_map(
        _parse_file_row,
        fn_kwargs={"indices": indices, "sources": sources, "text_key": text_key, "id_key": id_key, "after": after},
        num_cpus=0,
        **_one_task_at_a_time(ray),
    )
    with warnings.catch_warnings():
        # Newer Ray deprecates passing actor options as keyword arguments; they still apply.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        dataset = dataset.map_batches(
            SpanAnnotator,
            batch_format="pyarrow",
            batch_size=batch_size,
            fn_constructor_kwargs={
                "model": model,
                "keep_text": True,
                "batch_size": batch_size,
                "use_gpu": gpus_per_worker > 0,
                "threads": max(1, int(cpus_per_worker)),
            },
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=max_retries,
            max_task_retries=max_retries,
        )
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        for row in batch.to_pylist():
            position = (row["file"], row["line"])
            if row["error"]:
                yield BadRecord(position, row["source"], row["line"], row["error"])
            else:
                record = {"id": json.loads(row["id_json"]), "spans": row["spans"], "ents": row["ents"], "text": row["text"]}
                yield Annotated(position, record)
