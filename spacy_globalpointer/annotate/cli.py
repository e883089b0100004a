"""Command line: annotate a corpus with a ``globalpointer_spans`` pipeline, resumably.

    python -m spacy_globalpointer.annotate MODEL INPUT OUTPUT [options]
"""
import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import spacy

from ..convert import positive_int
from .engines import RAY_MISSING, Annotated, Output, annotate_local, annotate_ray, import_ray
from .io import OUTPUT_SUFFIXES, InputError, count_records, errors_path, expand_inputs, import_pyarrow, read_items
from .records import OUTPUT_FORMATS, format_record, model_version, spans_key
from .shards import JobMismatch, ShardStore


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value!r}")
    return number


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``sys.argv[1:]`` if ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        prog="python -m spacy_globalpointer.annotate",
        description="Annotate a corpus with a globalpointer_spans pipeline (resumable; local or Ray).",
    )
    parser.add_argument("model", help="pipeline folder or installed package with a globalpointer_spans component")
    parser.add_argument("input", help="a .jsonl, .txt (one doc per line) or .parquet file, a folder of them, or a glob")
    parser.add_argument("output", type=Path, help="output file: .jsonl, .parquet, or .json (a JSON array)")
    parser.add_argument("--text-key", default="text", help="text field of JSONL/Parquet records (default: text)")
    parser.add_argument("--id-key", help="id field of JSONL/Parquet records (default: id = source file:line)")
    parser.add_argument("--keep-text", action="store_true", help="also write each record's text")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="records", help="records (default) or label_studio tasks with predictions")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local: nlp.pipe (default); ray: a Ray Data job")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="docs per nlp.pipe / actor batch (default: 64)")
    parser.add_argument("--n-process", type=positive_int, default=1, help="local engine: nlp.pipe processes (default: 1)")
    parser.add_argument("--shard-size", type=positive_int, default=10000, help="records per output shard, the unit of resuming (default: 10000)")
    parser.add_argument("--overwrite", action="store_true", help="start again, discarding an existing OUTPUT and its shards")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if any input record is bad")
    ray_options = parser.add_argument_group("ray engine")
    ray_options.add_argument("--num-workers", type=positive_int, default=1, help="actors, each with its own pipeline (default: 1)")
    ray_options.add_argument("--cpus-per-worker", type=_non_negative_float, default=1.0, help="CPUs per actor (default: 1)")
    ray_options.add_argument("--gpus-per-worker", type=_non_negative_float, default=0.0, help="GPUs per actor (default: 0)")
    ray_options.add_argument("--address", help="Ray cluster to join, e.g. auto or ray://head:10001 (default: start a local one)")
    ray_options.add_argument("--max-retries", type=int, default=3, help="restarts of a dead actor and retries of its batch (default: 3; -1 unlimited)")
    args = parser.parse_args(argv)
    if args.output.suffix not in OUTPUT_SUFFIXES:
        parser.error(f"OUTPUT must end in one of {', '.join(OUTPUT_SUFFIXES)}: {args.output}")
    if args.output_format == "label_studio" and args.output.suffix == ".parquet":
        parser.error("label_studio tasks are written as .json (Label Studio's import format) or .jsonl")
    return args


def describe_job(args: argparse.Namespace, files: Sequence[Path], nlp) -> Dict[str, Any]:
    """What makes two runs the same job: model, inputs and the options that change the output."""
    return {
        "model": args.model,
        "model_meta": {key: nlp.meta.get(key) for key in ("lang", "name", "version")},
        "inputs": [{"path": str(path), "bytes": path.stat().st_size} for path in files],
        "options": {
            "text_key": args.text_key,
            "id_key": args.id_key,
            "keep_text": args.keep_text,
            "output_format": args.output_format,
        },
    }


class Progress:
    """A progress bar (docs, chars/s, ETA) on a terminal; nothing otherwise."""

    def __init__(self, files: Sequence[Path], done: int) -> None:
        self.bar = None
        self.chars = 0
        self.start = time.perf_counter()
        self.last_postfix = 0.0
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=count_records(files), initial=done, unit="doc", dynamic_ncols=True)

    def update(self, chars: int) -> None:
        self.chars += chars
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last_postfix > 0.5:
            self.bar.set_postfix_str(f"{self.chars / max(now - self.start, 1e-9):,.0f} chars/s")
            self.last_postfix = now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_shards(store: ShardStore, outputs: Iterable[Output], args: argparse.Namespace, version: str, progress: Progress) -> None:
    """Cut the ordered outputs into shards of ``--shard-size`` input records and commit each."""
    lines: List[bytes] = []
    errors: List[Dict[str, Any]] = []
    counts = dict.fromkeys(("items", "docs", "chars", "spans", "errors"), 0)
    end = None
    for output in outputs:
        end = output.position
        counts["items"] += 1
        if isinstance(output, Annotated):
            text = output.record.pop("text")
            record = format_record(output.record, text, args.output_format, version, args.keep_text)
            lines.append((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            counts["docs"] += 1
            counts["chars"] += len(text)
            counts["spans"] += len(output.record["spans"])
            progress.update(len(text))
        else:
            errors.append(output.to_dict())
            counts["errors"] += 1
            progress.update(0)
        if counts["items"] == args.shard_size:
            store.write_shard(lines, errors, counts, end)
            lines, errors, counts = [], [], dict.fromkeys(counts, 0)
    if counts["items"]:
        store.write_shard(lines, errors, counts, end)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the job; print a summary; return the exit code."""
    started = time.perf_counter()
    files = expand_inputs([args.input])
    if args.output.suffix == ".parquet" or any(path.suffix == ".parquet" for path in files):
        import_pyarrow()
    if args.engine == "ray":
        import_ray()
    nlp = spacy.load(args.model)
    spans_key(nlp)  # fails early without a globalpointer_spans component
    version = model_version(nlp)
    store = ShardStore(args.output, describe_job(args, files, nlp), overwrite=args.overwrite)
    before = store.totals()
    if store.complete:
        print(f"{args.output} is already complete for this job", file=sys.stderr)
    else:
        if store.shards:
            print(f"resuming after {len(store.shards)} shards ({before['items']:,} records)", file=sys.stderr)
        progress = Progress(files, before["items"])
        after = store.resume_after
        if args.engine == "local":
            items = read_items(files, text_key=args.text_key, id_key=args.id_key, after=after)
            outputs = annotate_local(nlp, items, batch_size=args.batch_size, n_process=args.n_process)
        else:
            del nlp  # the actors load their own copies
            outputs = annotate_ray(
                args.model, files, text_key=args.text_key, id_key=args.id_key, after=after,
                batch_size=args.batch_size, num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker,
                gpus_per_worker=args.gpus_per_worker, address=args.address, max_retries=args.max_retries,
            )
        try:
            write_shards(store, outputs, args, version, progress)
        finally:
            progress.close()
        store.finish(args.keep_text)
    totals = store.totals()
    wall = time.perf_counter() - started
    chars_now = totals["chars"] - before["chars"]
    print(
        f"docs {totals['docs']:,} | chars {totals['chars']:,} | spans {totals['spans']:,} | "
        f"errors {totals['errors']:,} | wall {wall:.1f}s | {chars_now / wall:,.0f} chars/s -> {args.output}"
        + (f" (bad records: {errors_path(args.output)})" if totals["errors"] else "")
    )
    return 1 if args.strict and totals["errors"] else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except (InputError, JobMismatch, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ImportError as err:
        if str(err) == RAY_MISSING:
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
