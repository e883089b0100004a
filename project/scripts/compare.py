"""Accuracy side by side: GlobalPointer (Efficient, original) against spaCy's spancat and ner.

    python scripts/compare.py {people_daily,cluener,cmeee,all} --raw-dir DIR [--max-steps 1500] [--seeds 0 1 2]
        [--output metrics/compare]

For each dataset:

1. convert the raw files (``spacy_globalpointer.readers.convert``) and hold out a slice at the END
   of train (``--heldout-fraction``, at most ``--heldout-max`` docs). The slice is not trained on; its
   first docs are spaCy's periodic evaluation during training and the whole slice is where per-label
   thresholds are fitted. The reported split (People's Daily: test; CLUENER, CMeEE: dev, their test
   files are unlabelled) is used for nothing else.
2. train one pipeline per component and seed (``--seeds``) from the configs in ``--configs`` (``PREFIX.cfg``,
   ``PREFIX_original.cfg``, ``PREFIX_spancat.cfg``, ``PREFIX_ner.cfg``; default prefix ``cpu``). The
   four files share the encoder, batcher, optimizer and schedule; this script only overrides paths,
   seed and ``max_steps``, and the spancat suggester's ``max_size`` (the 99th percentile of the
   training entity lengths). ``ner`` trains on flat ``doc.ents``: nested gold spans are flattened
   longest-first (ties: earlier start, then label), the rest dropped from its training data only.
3. evaluate ``model-last`` on the reported split with spaCy's ``Scorer``: spans as the package's
   scorer reads them (``doc.spans["sc"]``, else ``doc.ents``; so ``ner``'s entities are scored against
   ALL gold spans, nested ones included), ``ents`` against the gold flattened longest-first.
4. fit per-label thresholds for the Efficient model on the held-out slice
   (``spacy_globalpointer.fit_thresholds``) and evaluate again (row ``gp_efficient+thr``).
5. write ``OUTPUT/DATASET.json`` (every run) and ``OUTPUT/results.md`` (with several seeds: the mean
   and the sample standard deviation over seeds of each figure).

Head parameters are the weights of the component's own model, everything but the shared
``tok2vec``: the GlobalPointer torch head; spancat's reducer + scorer; ner's lower (with its input
projection) + upper layers.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy  # noqa: E402
import spacy  # noqa: E402
from spacy.scorer import Scorer, get_ner_prf  # noqa: E402
from spacy.tokens import Doc, DocBin, Span  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.util import load_config  # noqa: E402

from spacy_globalpointer.readers import convert  # noqa: E402

from convert_corpus import split_end  # noqa: E402  (scripts/, the folder of this script)
from spacy_globalpointer.scorer import annotated_spans  # noqa: E402

RAW = {
    # dataset: (converter format, train file, reported split file, name of the reported split)
    "people_daily": ("people_daily", "example.train", "example.test", "test"),
    "cluener": ("cluener", "train.json", "dev.json", "dev"),
    "cmeee": ("cmeee", "train_data.txt", "val_data.txt", "dev"),
}
COMPONENTS = ("gp_efficient", "gp_original", "spancat", "ner")
CONFIG_SUFFIX = {"gp_efficient": "", "gp_original": "_original", "spancat": "_spancat", "ner": "_ner"}
SPANS_KEY = "sc"
NAMES = {
    "gp_efficient": "GlobalPointer Efficient",
    "gp_efficient+thr": "Efficient + fitted thresholds",
    "gp_original": "GlobalPointer original",
    "spancat": "spancat",
    "ner": "ner",
}


# ---- data ---------------------------------------------------------------------------------------


def span_tuples(doc: Doc) -> List[Tuple[int, int, str]]:
    return [(s.start, s.end, s.label_) for s in annotated_spans(doc, SPANS_KEY)]


def flatten_longest_first(doc: Doc) -> List[Span]:
    """A non-overlapping subset of the gold spans: longest first, then earlier start, then label."""
    spans = sorted(annotated_spans(doc, SPANS_KEY), key=lambda s: (s.start - s.end, s.start, s.label_))
    taken = numpy.zeros(len(doc), dtype=bool)
    kept = []
    for span in spans:
        if not taken[span.start : span.end].any():
            taken[span.start : span.end] = True
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def with_flat_ents(docs: Iterable[Doc]) -> List[Doc]:
    flat = []
    for doc in docs:
        copy = doc.copy()
        copy.set_ents(flatten_longest_first(doc), default="outside")
        flat.append(copy)
    return flat


def prepare_data(dataset: str, args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    fmt, train_name, eval_name, eval_split = RAW[dataset]
    raw = Path(args.raw_dir) / dataset
    nlp = spacy.blank("zh")
    train_bin, train_report = convert(fmt, raw / train_name, SPANS_KEY, args.limit)
    eval_bin, eval_report = convert(fmt, raw / eval_name, SPANS_KEY, args.limit)
    train_docs = list(train_bin.get_docs(nlp.vocab))
    eval_docs = list(eval_bin.get_docs(nlp.vocab))[: args.eval_limit]
    train, heldout = split_end(train_docs, args.heldout_fraction, args.heldout_max, str(raw / train_name))
    flat_train = with_flat_ents(train)
    sets = {
        "train": train, "train_flat": flat_train, "heldout": heldout, "train_log_dev": heldout[:20],
        "eval": with_flat_ents(eval_docs),
    }
    work.mkdir(parents=True, exist_ok=True)
    paths = {name: work / f"{name}.spacy" for name in sets}
    for name, docs in sets.items():
        DocBin(docs=docs, store_user_data=True).to_disk(paths[name])
    lengths = [e - s for doc in train for s, e, _ in span_tuples(doc)]
    n_train_spans = len(lengths)
    return {
        "paths": {name: str(path) for name, path in paths.items()},
        "eval_split": eval_split,
        "n_train_docs": len(train),
        "n_train_spans": n_train_spans,
        "n_heldout_docs": len(heldout),
        "n_eval_docs": len(eval_docs),
        "train_length_p99": int(numpy.ceil(numpy.percentile(lengths, 99))),
        "ner_train_spans_dropped_by_flattening": n_train_spans - sum(len(d.ents) for d in flat_train),
        "conversion": {"train": train_report.to_dict(), eval_split: eval_report.to_dict()},
    }


# ---- scoring ------------------------------------------------------------------------------------


def evaluate(model_dir: Path, eval_path: str) -> Dict[str, Any]:
    """Spans and ents P/R/F of a trained pipeline on the gold docs (which carry flat ``doc.ents``)."""
    nlp = spacy.load(model_dir)
    # gold docs in the pipeline's vocab: the scorer aligns predicted spans onto them
    eval_docs = list(DocBin().from_disk(eval_path).get_docs(nlp.vocab))
    start = time.perf_counter()
    predicted = list(nlp.pipe((doc.text for doc in eval_docs), batch_size=64))
    seconds = time.perf_counter() - start
    examples = [Example(doc, gold) for doc, gold in zip(predicted, eval_docs)]
    spans = Scorer.score_spans(
        examples, "spans", getter=lambda doc, _: annotated_spans(doc, SPANS_KEY), allow_overlap=True
    )
    result = {
        "spans": {key: spans[f"spans_{key}"] or 0.0 for key in "prf"},
        "eval_seconds": seconds,
    }
    result["spans"]["gold"] = sum(len(span_tuples(doc)) for doc in eval_docs)
    result["spans"]["pred"] = sum(len(span_tuples(doc)) for doc in predicted)
    if any(doc.ents for doc in predicted):
        ents = get_ner_prf(examples)
        result["ents"] = {key: ents[f"ents_{key}"] or 0.0 for key in "prf"}
    return result


def count_params(model) -> int:
    total = 0
    for node in model.walk():
        total += sum(int(node.get_param(name).size) for name in node.param_names if node.has_param(name))
        for shim in node.shims:
            module = getattr(shim, "_model", None)
            if module is not None and hasattr(module, "parameters"):
                total += sum(int(p.numel()) for p in module.parameters())
    return total


def head_parameters(model_dir: Path, kind: str) -> Dict[str, int]:
    nlp = spacy.load(model_dir)
    model = nlp.get_pipe(nlp.pipe_names[-1]).model
    if kind.startswith("gp"):
        return {"total": count_params(model.get_ref("head"))}
    if kind == "spancat":
        reducer, scorer = count_params(model.get_ref("reducer")), count_params(model.get_ref("scorer"))
        return {"total": reducer + scorer, "reducer": reducer, "scorer": scorer}
    # ner: the listener has no weights; its tok2vec ref adds the parser's input projection
    lower = count_params(model.get_ref("lower")) + count_params(model.get_ref("tok2vec"))
    upper = count_params(model.get_ref("upper"))
    return {"total": lower + upper, "lower+projection": lower, "upper": upper}


def recall_ceiling(eval_docs: List[Doc], max_size: int) -> float:
    """Share of gold spans no longer than ``max_size`` tokens."""
    lengths = [e - s for doc in eval_docs for s, e, _ in span_tuples(doc)]
    return sum(n <= max_size for n in lengths) / len(lengths)


def flat_ceiling(eval_docs: List[Doc]) -> float:
    return sum(len(doc.ents) for doc in eval_docs) / sum(len(span_tuples(doc)) for doc in eval_docs)


# ---- running ------------------------------------------------------------------------------------


def run_timed(cmd: List[str], log_path: Path) -> Dict[str, float]:
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"command failed, see {log_path}: {' '.join(cmd)}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def training_config(kind: str, seed: int, args: argparse.Namespace, data: Dict[str, Any], work: Path) -> Path:
    """The component's config file with this run's overrides, saved where the run can be repeated."""
    source = Path(args.configs) / f"{args.config_prefix}{CONFIG_SUFFIX[kind]}.cfg"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no {kind} config for --config-prefix {args.config_prefix}")
    train = data["paths"]["train_flat" if kind == "ner" else "train"]
    overrides = {
        "paths.train": train,
        # spaCy's own evaluation only feeds the log (no model selection: model-last is reported)
        "paths.dev": data["paths"]["train_log_dev"],
        "system.seed": seed,
        "training.max_steps": args.max_steps,
        "training.eval_frequency": args.max_steps,
    }
    if kind == "spancat":
        overrides["components.spancat.suggester.max_size"] = data["train_length_p99"]
    config = load_config(source, overrides=overrides, interpolate=False)
    path = work / "configs" / f"{kind}_seed{seed}.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(path)
    return path


def train_and_evaluate(
    kind: str, seed: int, args: argparse.Namespace, data: Dict[str, Any], work: Path
) -> Dict[str, Dict[str, Any]]:
    """Train one component with one seed, evaluate it (and, for Efficient, its fitted thresholds)."""
    config_path = training_config(kind, seed, args, data, work)
    run_dir = work / "runs" / f"{kind}_seed{seed}"
    cmd = [sys.executable, "-m", "spacy", "train", str(config_path), "--output", str(run_dir),
           "--gpu-id", str(args.gpu_id)]
    label = f"{work.name}/{kind} seed {seed}"
    print(f"== {label}: training ({args.max_steps} steps)", flush=True)
    timing = run_timed(cmd, work / f"train_{kind}_seed{seed}.log")
    model_dir = run_dir / "model-last"
    print(f"== {label}: trained in {timing['wall_s']:.0f}s wall, {timing['cpu_s']:.0f}s CPU; "
          f"evaluating on {data['eval_split']}", flush=True)
    row = evaluate(model_dir, data["paths"]["eval"])
    row.update({"seed": seed, "train": timing, "head_params": head_parameters(model_dir, kind),
                "config": str(config_path)})
    rows = {kind: row}
    print(f"   spans F {100 * row['spans']['f']:.2f}", flush=True)
    if kind == "gp_efficient" and not args.no_thresholds:
        thr_dir = run_dir / "model-thresholds"
        report = work / f"thresholds_seed{seed}.json"
        fit = run_timed([sys.executable, "-m", "spacy_globalpointer.fit_thresholds", str(model_dir),
                         data["paths"]["heldout"], "--output", str(thr_dir), "--report", str(report)],
                        work / f"fit_thresholds_seed{seed}.log")
        thr_row = evaluate(thr_dir, data["paths"]["eval"])
        thr_row.update({"seed": seed, "train": timing, "fit_s": fit["wall_s"], "head_params": row["head_params"],
                        "label_thresholds": json.loads(report.read_text("utf-8"))["thresholds"]})
        rows["gp_efficient+thr"] = thr_row
        print(f"   + fitted thresholds: spans F {100 * thr_row['spans']['f']:.2f}", flush=True)
    return rows


def run_dataset(dataset: str, args: argparse.Namespace) -> Dict[str, Any]:
    out = Path(args.output)
    work = out / dataset
    print(f"== {dataset}: converting", flush=True)
    data = prepare_data(dataset, args, work / "corpus")
    nlp = spacy.blank("zh")
    eval_docs = list(DocBin().from_disk(data["paths"]["eval"]).get_docs(nlp.vocab))
    gp_config = load_config(Path(args.configs) / f"{args.config_prefix}.cfg", interpolate=False)
    gp_max_length = gp_config["components"]["globalpointer_spans"]["max_length"] or sys.maxsize
    result: Dict[str, Any] = {
        "dataset": dataset, "config_prefix": args.config_prefix, "max_steps": args.max_steps, "seeds": args.seeds,
        "spancat_max_size": data["train_length_p99"],
        "spancat_recall_ceiling": recall_ceiling(eval_docs, data["train_length_p99"]),
        "gp_recall_ceiling": recall_ceiling(eval_docs, gp_max_length),
        "ner_recall_ceiling": flat_ceiling(eval_docs),
        "data": {k: v for k, v in data.items() if k != "conversion"}, "conversion": data["conversion"],
        "rows": {},
    }
    for seed in args.seeds:
        for kind in args.components:
            for name, row in train_and_evaluate(kind, seed, args, data, work).items():
                result["rows"].setdefault(name, []).append(row)
            # after every run, so that an interrupted comparison keeps what it measured
            (out / f"{dataset}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return result


def mean_sd(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``mean`` of one value, ``mean ± sd`` (sample standard deviation) of several."""
    values = [scale * v for v in values]
    mean = f"{numpy.mean(values):,.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ± {numpy.std(values, ddof=1):,.{digits}f}"


def table(results: Iterable[Dict[str, Any]]) -> str:
    lines = [
        "| dataset (split) | component | steps | seeds | spans P | spans R | spans F | ents F | head params "
        "| train wall s | train CPU s | F / Efficient F | head params / Efficient |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        rows = res["rows"]
        ref = rows.get("gp_efficient")
        ref_f = numpy.mean([run["spans"]["f"] for run in ref]) if ref else 0.0
        for kind in NAMES:
            if kind not in rows:
                continue
            runs = rows[kind]
            f = [run["spans"]["f"] for run in runs]
            ents = mean_sd([run["ents"]["f"] for run in runs], 100) if all("ents" in run for run in runs) else "–"
            params = runs[0]["head_params"]["total"]
            ratio = f"{numpy.mean(f) / ref_f:.3f}" if ref_f else "–"
            param_ratio = f"{params / ref[0]['head_params']['total']:.2f}" if ref else "–"
            name = NAMES[kind]
            if kind == "spancat":
                name += f" (ngram 1-{res['spancat_max_size']}, ceiling {100 * res['spancat_recall_ceiling']:.1f}%)"
            if kind == "ner":
                name += f" (flat, ceiling {100 * res['ner_recall_ceiling']:.1f}%)"
            wall = mean_sd([run["train"]["wall_s"] for run in runs], digits=0)
            if "fit_s" in runs[0]:
                wall += f" (+{numpy.mean([run['fit_s'] for run in runs]):.0f} fit)"
            lines.append(
                f"| {res['dataset']} ({res['data']['eval_split']}) | {name} | {res['max_steps']:,} | {len(runs)} "
                f"| {mean_sd([run['spans']['p'] for run in runs], 100)} "
                f"| {mean_sd([run['spans']['r'] for run in runs], 100)} | {mean_sd(f, 100)} | {ents} | {params:,} "
                f"| {wall} | {mean_sd([run['train']['cpu_s'] for run in runs], digits=0)} | {ratio} | {param_ratio} |"
            )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=[*RAW, "all"])
    parser.add_argument("--raw-dir", required=True, help="folder with people_daily/, cluener/, cmeee/")
    parser.add_argument("--output", default="metrics/compare")
    parser.add_argument("--configs", default="configs", help="folder of the training configs")
    parser.add_argument("--config-prefix", default="cpu", help="PREFIX of PREFIX{,_original,_spancat,_ner}.cfg")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="train every component once per seed")
    parser.add_argument("--max-steps", type=int, default=1500)
    parser.add_argument("--limit", type=int, default=0, help="convert only the first N records per file (0: all)")
    parser.add_argument("--heldout-fraction", type=float, default=0.05)
    parser.add_argument("--heldout-max", type=int, default=500)
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N docs only")
    parser.add_argument("--components", nargs="+", choices=COMPONENTS, default=list(COMPONENTS))
    parser.add_argument("--no-thresholds", action="store_true")
    args = parser.parse_args(argv)
    args.limit = args.limit or None
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    datasets = list(RAW) if args.dataset == "all" else [args.dataset]
    results = [run_dataset(dataset, args) for dataset in datasets]
    md = table(results)
    header = (f"Configs: {args.configs}/{args.config_prefix}*.cfg; machine: {platform.machine()}, "
              f"{os.cpu_count()} CPU, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}.\n\n")
    (out / "results.md").write_text(header + md + "\n", "utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
