"""Command line: convert a raw NER corpus into a spaCy ``.spacy`` (DocBin) file.

    python -m spacy_globalpointer.convert FORMAT INPUT OUTPUT.spacy \\
        [--spans-key sc] [--limit N] [--report report.json]
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .converters import FORMATS, ConversionError, convert


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (``sys.argv[1:]`` if ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        prog="python -m spacy_globalpointer.convert",
        description="Convert a raw Chinese NER corpus into a spaCy DocBin (.spacy) file.",
    )
    parser.add_argument("format", choices=sorted(FORMATS), help="input format")
    parser.add_argument("input", type=Path, help="raw data file")
    parser.add_argument("output", type=Path, help="output .spacy file (parent folders are created)")
    parser.add_argument("--spans-key", default="sc", help="doc.spans key for the entities (default: sc)")
    parser.add_argument("--limit", type=_positive_int, help="convert only the first N records")
    parser.add_argument("--report", type=Path, help="also write the conversion report as JSON here")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the conversion; return the exit code (1 on malformed input or I/O errors)."""
    args = parse_args(argv)
    try:
        doc_bin, report = convert(args.format, args.input, args.spans_key, args.limit)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        doc_bin.to_disk(args.output)
        if args.report is not None:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2) + "\n", "utf-8")
    except (ConversionError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.format())
    print(f"wrote {report.docs} docs to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
