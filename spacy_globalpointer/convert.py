"""Command line: convert an NER corpus or annotation-tool export into a spaCy ``.spacy`` (DocBin) file.

    python -m spacy_globalpointer.convert FORMAT INPUT OUTPUT.spacy [--lang LANG | --tokenizer PIPELINE]
        [--alignment strict|contract|expand] [--dev-fraction F --seed S] [--spans-key sc] [--limit N]
        [--report report.json] [format options: --text-key, --ls-annotation, --ls-source, --scheme,
        --tag-columns]
"""
import argparse
import json
import random
import sys
from pathlib import Path
from itertools import islice
from typing import Optional, Sequence, Set

from spacy.tokens import DocBin

from .readers import (
    ALIGNMENTS,
    FORMATS,
    ConversionError,
    ConversionReport,
    ReadOptions,
    iter_docs,
    make_nlp,
    read_records,
)
from .readers.common import Progress
from .readers.options import LS_ANNOTATION_CHOICES, LS_SOURCES, SCHEMES

PROGRESS_EVERY = 10_000


def positive_int(value: str) -> int:
    """argparse type: an integer of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {value!r}")
    return number


def dev_path(output: Path) -> Path:
    """The dev file next to ``output``: ``train.spacy`` -> ``train.dev.spacy``."""
    return output.with_name(f"{output.stem}.dev{output.suffix or '.spacy'}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``sys.argv[1:]`` if ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        prog="python -m spacy_globalpointer.convert",
        description="Convert an NER corpus or annotation-tool export into a spaCy DocBin (.spacy) file.",
    )
    parser.add_argument("format", choices=sorted(FORMATS), help="input format")
    parser.add_argument("input", type=Path, help="input file (a folder of .txt/.ann pairs for brat)")
    parser.add_argument("output", type=Path, help="output .spacy file (parent folders are created)")
    parser.add_argument("--spans-key", default="sc", help="doc.spans key for the entities (default: sc)")
    parser.add_argument("--limit", type=positive_int, help="convert only the first N records")
    parser.add_argument("--report", type=Path, help="also write the conversion report as JSON here")
    tokens = parser.add_mutually_exclusive_group()
    tokens.add_argument("--lang", default="zh", help="tokenize with spacy.blank(LANG) (default: zh)")
    tokens.add_argument("--tokenizer", help="use the tokenizer of this pipeline (package name or path)")
    parser.add_argument(
        "--alignment", choices=ALIGNMENTS, default="strict",
        help="entity offsets not on token boundaries: strict drops them (counted as misaligned), contract "
        "keeps the tokens fully inside, expand the tokens they touch (default: strict)",
    )
    parser.add_argument(
        "--dev-fraction", type=_fraction,
        help="put this fraction of the records (chosen with --seed) in a dev file next to OUTPUT: "
        "train.spacy -> train.dev.spacy",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev split (default: 0)")
    parser.add_argument("--progress-every", type=positive_int, default=PROGRESS_EVERY,
                        help=f"report progress on stderr every N records (default: {PROGRESS_EVERY})")
    parser.add_argument("--text-key", default="text", help="label_studio: the data field with the text")
    parser.add_argument("--ls-annotation", choices=LS_ANNOTATION_CHOICES, default="last",
                        help="label_studio: which non-cancelled annotation of a task is used (default: last)")
    parser.add_argument("--ls-source", choices=LS_SOURCES, default="annotations",
                        help="label_studio: read human annotations or model predictions")
    parser.add_argument("--scheme", choices=SCHEMES, default="auto", help="conll: tag scheme (default: auto)")
    parser.add_argument("--tag-columns", type=positive_int,
                        help="conll: number of trailing tag columns, one per nesting layer "
                        "(default: every column after the token)")
    return parser.parse_args(argv)


def _dev_docs(args: argparse.Namespace, options: ReadOptions) -> Optional[Set[int]]:
    """The doc indices that go to the dev file (a first pass counts the docs), or None."""
    if args.dev_fraction is None:
        return None
    records = islice(read_records(args.format, args.input, ConversionReport(), options), args.limit)
    total = sum(1 for record in records if record.skip is None)
    size = min(max(round(total * args.dev_fraction), 1), total - 1) if total > 1 else 0
    return set(random.Random(args.seed).sample(range(total), size))


def run(args: argparse.Namespace) -> ConversionReport:
    """Convert as ``args`` say, write the output file(s) and return the report."""
    nlp = make_nlp(args.lang, args.tokenizer)
    options = ReadOptions(
        text_key=args.text_key, ls_annotation=args.ls_annotation, ls_source=args.ls_source,
        scheme=args.scheme, tag_columns=args.tag_columns, lang=nlp.lang,
    )
    dev = _dev_docs(args, options) or set()
    report = ConversionReport()
    progress = Progress(args.progress_every)
    train_bin, dev_bin = DocBin(), DocBin()
    docs = iter_docs(args.format, args.input, report, args.spans_key, args.limit, options, nlp, args.alignment)
    for index, doc in enumerate(docs):
        progress.tick()
        (dev_bin if index in dev else train_bin).add(doc)
    report.dev_docs = len(dev_bin)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    train_bin.to_disk(args.output)
    if args.dev_fraction is not None:
        dev_bin.to_disk(dev_path(args.output))
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the conversion; return the exit code (1 on malformed input or I/O errors)."""
    args = parse_args(argv)
    try:
        report = run(args)
        if args.report is not None:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", "utf-8")
    except (ConversionError, OSError, ImportError) as err:  # ImportError: unknown --lang
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.format())
    print(f"wrote {report.docs - report.dev_docs} docs to {args.output}")
    if args.dev_fraction is not None:
        print(f"wrote {report.dev_docs} docs to {dev_path(args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

