"""Convert the train/dev/test files of one dataset with ``python -m spacy_globalpointer.convert``.

    python scripts/convert_corpus.py FORMAT OUT_DIR --train F --dev F [--test F] [--limit N] [--spans-key sc]
        [--heldout-fraction 0.05 --heldout-max 500]

Writes ``OUT_DIR/{train,dev,test}.spacy`` and one ``OUT_DIR/report.json`` that maps each split to
the converter's report (docs, entities read/written/dropped by reason, nesting). ``--limit 0``
converts every record (the converter itself only accepts a positive ``--limit``).

With ``--heldout-fraction`` above 0, the last docs of train (that fraction, at most
``--heldout-max``) move to ``OUT_DIR/heldout.spacy``: never trained on, it is where per-label
thresholds are fitted, so the reported split is used for nothing but the final figures.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import List, Tuple

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

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
    parser.add_argument("--heldout-fraction", type=float, default=0.0,
                        help="share of train (its last docs) written to heldout.spacy instead (0: none)")
    parser.add_argument("--heldout-max", type=int, default=500, help="at most this many held-out docs")
    return parser.parse_args(argv)


def count_entities(docs: List[Doc], spans_key: str) -> int:
    return sum(len(doc.spans[spans_key]) for doc in docs if spans_key in doc.spans)


def split_end(docs: List[Doc], fraction: float, most: int, source: str) -> Tuple[List[Doc], List[Doc]]:
    """``docs`` without their last ``fraction`` (at least one doc, at most ``most``), and those last docs."""
    n_heldout = min(most, max(1, round(len(docs) * fraction)))
    if n_heldout >= len(docs):
        raise ValueError(f"{source}: {len(docs)} docs, too few to hold out {n_heldout}")
    return docs[:-n_heldout], docs[-n_heldout:]


def hold_out_end(train_path: Path, heldout_path: Path, fraction: float, most: int, spans_key: str) -> dict:
    """Move the last docs of ``train_path`` to ``heldout_path``; return the doc and entity counts."""
    docs = list(DocBin(store_user_data=True).from_disk(train_path).get_docs(Vocab()))
    kept, heldout = split_end(docs, fraction, most, str(train_path))
    DocBin(docs=kept, store_user_data=True).to_disk(train_path)
    DocBin(docs=heldout, store_user_data=True).to_disk(heldout_path)
    return {"fraction": fraction, "train_docs": len(kept), "heldout_docs": len(heldout),
            "train_entities": count_entities(kept, spans_key), "heldout_entities": count_entities(heldout, spans_key)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.limit < 0:
        print(f"error: --limit must be >= 0, got {args.limit}", file=sys.stderr)
        return 2
    if not 0.0 <= args.heldout_fraction < 1.0 or args.heldout_max < 1:
        print("error: --heldout-fraction must be in [0, 1) and --heldout-max >= 1", file=sys.stderr)
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
    written = [f"{split}.spacy" for split in reports]
    if args.heldout_fraction:
        meta["heldout"] = hold_out_end(args.out_dir / "train.spacy", args.out_dir / "heldout.spacy",
                                       args.heldout_fraction, args.heldout_max, args.spans_key)
        written.append("heldout.spacy")
        print(f"held out the last {meta['heldout']['heldout_docs']} train docs "
              f"({meta['heldout']['train_docs']} left to train on)")
    (args.out_dir / "report.json").write_text(
        json.dumps({"settings": meta, "splits": reports}, ensure_ascii=False, indent=2) + "\n", "utf-8"
    )
    print(f"\nwrote {', '.join(written)} and report.json to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
