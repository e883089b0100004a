"""Convert the train/dev/test files of one dataset with ``python -m spacy_globalpointer.convert``.

    python scripts/convert_corpus.py FORMAT OUT_DIR --train F --dev F [--test F] [--limit N] [--spans-key sc]

Writes ``OUT_DIR/{train,dev,test}.spacy`` and one ``OUT_DIR/report.json`` that maps each split to
the converter's report (docs, entities read/written/dropped by reason, nesting). ``--limit 0``
converts every record (the converter itself only accepts a positive ``--limit``).
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from spacy_globalpointer.convert import main as convert_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("format", help="converter format, e.g. people_daily, cluener, cmeee")
    parser.add_argument("out_dir", type=Path, help="folder for the .spacy files and report.json")
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--dev", type=Path, required=True)
    parser.add_argument("--test", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=0, help="records per split (0: all)")
    parser.add_argument("--spans-key", default="sc")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.limit < 0:
        print(f"error: --limit must be >= 0, got {args.limit}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": args.train, "dev": args.dev, "test": args.test}
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, path in splits.items():
            if path is None:
                continue
            print(f"\n=== {args.format} {split}: {path}", flush=True)
            report_path = Path(tmp) / f"{split}.json"
            argv = [args.format, str(path), str(args.out_dir / f"{split}.spacy"),
                    "--spans-key", args.spans_key, "--report", str(report_path)]
            if args.limit:
                argv += ["--limit", str(args.limit)]
            code = convert_main(argv)
            if code:
                return code
            report = json.loads(report_path.read_text("utf-8"))
            report["source"] = str(path)
            reports[split] = report
    meta = {"format": args.format, "limit": args.limit, "spans_key": args.spans_key}
    (args.out_dir / "report.json").write_text(
        json.dumps({"settings": meta, "splits": reports}, ensure_ascii=False, indent=2) + "\n", "utf-8"
    )
    print(f"\nwrote {', '.join(f'{s}.spacy' for s in reports)} and report.json to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
