"""Fit per-label thresholds of a trained ``globalpointer_spans`` pipeline on held-out data.

    python -m spacy_globalpointer.fit_thresholds MODEL HELDOUT.spacy --output MODEL_OUT [--overwrite]

For each label, picks the probability threshold in a grid (default 0.05, 0.10, ..., 0.95) that
maximises the label's F1 on ``HELDOUT.spacy`` and writes ``{label: threshold}`` into the component's
``label_thresholds`` (its ``cfg`` and ``config.cfg``); the pipeline is saved to ``MODEL_OUT``.
Writing over ``MODEL`` itself needs ``--overwrite``.

``HELDOUT.spacy`` must be a slice held out from TRAINING (e.g. the last 5% of train, not trained on),
never the dev/test split you report.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy
import spacy
from spacy.tokens import DocBin

from .thresholds import DEFAULT_GRID, fit_pipeline_thresholds


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spacy_globalpointer.fit_thresholds",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="trained pipeline directory")
    parser.add_argument("heldout", type=Path, help=".spacy file held out from training (not dev/test)")
    parser.add_argument("--output", type=Path, required=True, help="save the fitted pipeline here")
    parser.add_argument("--overwrite", action="store_true", help="allow --output to be MODEL itself")
    parser.add_argument("--component", help="component name (default: the first globalpointer_spans)")
    parser.add_argument("--grid-min", type=float, default=DEFAULT_GRID[0])
    parser.add_argument("--grid-max", type=float, default=DEFAULT_GRID[-1])
    parser.add_argument("--grid-step", type=float, default=0.05)
    parser.add_argument("--min-support", type=int, default=1,
                        help="labels with fewer held-out gold spans keep the global threshold")
    parser.add_argument("--report", type=Path, help="write the fitted thresholds and F1s as JSON here")
    args = parser.parse_args(argv)
    if not args.grid_step > 0:
        parser.error(f"--grid-step must be positive, got {args.grid_step}")
    if not 0 < args.grid_min <= args.grid_max < 1:
        parser.error(f"the grid must lie inside (0, 1) with --grid-min <= --grid-max, "
                     f"got --grid-min {args.grid_min} --grid-max {args.grid_max}")
    if args.output.resolve() == args.model.resolve() and not args.overwrite:
        parser.error(f"--output {args.output} is MODEL: pass --overwrite to write over the input pipeline")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    grid = [round(float(t), 6) for t in numpy.arange(args.grid_min, args.grid_max + 1e-9, args.grid_step)]
    nlp = spacy.load(args.model)
    docs = list(DocBin().from_disk(args.heldout).get_docs(nlp.vocab))
    fits = fit_pipeline_thresholds(nlp, docs, component=args.component, grid=grid, min_support=args.min_support)
    print(f"{'label':<16} {'gold':>6} {'threshold':>9} {'F1@default':>10} {'F1@fitted':>9}")
    for label, fit in fits.items():
        print(f"{label:<16} {fit.n_gold:>6} {fit.threshold:>9.2f} {100 * fit.f1_default:>10.2f} {100 * fit.f1:>9.2f}")
    nlp.to_disk(args.output)
    print(f"wrote {len(fits)} label thresholds (fitted on {len(docs)} held-out docs) to {args.output}")
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "model": str(args.model), "heldout": str(args.heldout), "output": str(args.output), "grid": grid,
            "thresholds": {label: fit.threshold for label, fit in fits.items()},
            "labels": {label: fit._asdict() for label, fit in fits.items()},
        }
        args.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
