"""Where a span model's errors are: missed spans, wrong labels, spurious spans.

    python benchmarks/error_breakdown.py MODEL [MODEL ...] GOLD.spacy [--spans-key sc]

For each model, every gold span of ``GOLD.spacy`` (``doc.spans[key]``, else ``doc.ents``) is
counted as found, found with another label only (same boundaries, wrong
label) or missed; every predicted span that is not gold is spurious (and
counted again if a gold span has its boundaries). The median probability of
correct and of spurious predictions shows how confident the model is. ``recall_len_A-B`` is the
share of gold spans of A to B tokens that were found (``--length-buckets``, default 1-4, 5-8,
9-16, 17+): an encoder whose context is shorter than an entity misses the long ones first.
"""
import argparse
import math
import statistics
import sys
from typing import Dict, List, Sequence, Set, Tuple

import spacy
from spacy.tokens import DocBin

from spacy_globalpointer.scorer import annotated_spans

SpanTuple = Tuple[int, int, str]


def bucket_names(bounds: Sequence[int]) -> List[str]:
    """``[1, 5, 9, 17]`` -> ``["1-4", "5-8", "9-16", "17+"]``."""
    ends = [f"-{upper - 1}" for upper in bounds[1:]] + ["+"]
    return [f"{lower}{end}" for lower, end in zip(bounds, ends)]


def breakdown(model: str, gold_path: str, key: str, buckets: Sequence[int] = (1, 5, 9, 17)) -> Dict[str, float]:
    nlp = spacy.load(model)
    gold_docs = list(DocBin().from_disk(gold_path).get_docs(nlp.vocab))
    counts = dict.fromkeys(["gold", "found", "wrong_label", "missed", "spurious", "spurious_on_gold_boundaries"], 0)
    correct_scores, spurious_scores = [], []
    names = bucket_names(buckets)
    bucket_gold, bucket_found = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for gold_doc, doc in zip(gold_docs, nlp.pipe(d.text for d in gold_docs)):
        gold: Set[SpanTuple] = {(s.start, s.end, s.label_) for s in annotated_spans(gold_doc, key)}
        predicted: Dict[SpanTuple, float] = {}
        if key in doc.spans:
            group = doc.spans[key]
            scores = group.attrs.get("scores", [math.nan] * len(group))
            predicted = {(s.start, s.end, s.label_): float(score) for s, score in zip(group, scores)}
        gold_boundaries = {span[:2] for span in gold}
        predicted_boundaries = {span[:2] for span in predicted}
        counts["gold"] += len(gold)
        for span in gold:
            bucket = names[sum(span[1] - span[0] >= lower for lower in buckets) - 1]
            bucket_gold[bucket] += 1
            if span in predicted:
                counts["found"] += 1
                bucket_found[bucket] += 1
            elif span[:2] in predicted_boundaries:
                counts["wrong_label"] += 1
            else:
                counts["missed"] += 1
        for span, score in predicted.items():
            if span in gold:
                correct_scores.append(score)
            else:
                counts["spurious"] += 1
                counts["spurious_on_gold_boundaries"] += span[:2] in gold_boundaries
                spurious_scores.append(score)
    for name, values in (("median_p_correct", correct_scores), ("median_p_spurious", spurious_scores)):
        counts[name] = round(statistics.median(values), 3) if values else math.nan
    for name in names:
        share = bucket_found[name] / bucket_gold[name] if bucket_gold[name] else math.nan
        counts[f"recall_len_{name}"] = f"{100 * share:.1f} ({bucket_gold[name]})"
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="model directories, then the gold .spacy file")
    parser.add_argument("--spans-key", default="sc")
    parser.add_argument("--length-buckets", type=int, nargs="+", default=[1, 5, 9, 17],
                        help="lower bounds (tokens) of the span-length buckets for recall, ascending from 1")
    args = parser.parse_args(argv)
    if args.length_buckets[0] != 1 or sorted(set(args.length_buckets)) != args.length_buckets:
        parser.error(f"--length-buckets must ascend from 1, got {args.length_buckets}")
    *models, gold_path = args.paths
    if not models:
        parser.error("give at least one MODEL and the GOLD.spacy file")
    rows = [(model, breakdown(model, gold_path, args.spans_key, args.length_buckets)) for model in models]
    columns = list(rows[0][1])
    print("| model | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for model, counts in rows:
        print(f"| {model} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
