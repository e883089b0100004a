"""Accuracy side by side: GlobalPointer (Efficient, original) against spaCy's spancat and ner.

For each dataset (People's Daily, CLUENER, CMeEE) this script

1. converts the raw files (``spacy_globalpointer.readers.convert``) and carves a held-out
   slice from the END of train (``--heldout-fraction``, capped by ``--heldout-max``). That slice
   is excluded from training; it is the training run's dev set (spaCy's periodic evaluation) and
   the slice per-label thresholds are fitted on. The reported split (People's Daily: test;
   CLUENER / CMeEE: dev, their test files are unlabelled) is never used for training, model
   selection or threshold fitting.
2. builds one config per component. All share the SAME encoder: a ``tok2vec`` component with
   ``spacy.HashEmbedCNN.v2`` (identical hyper-parameters, ``ENCODER`` below) read through a
   ``spacy.Tok2VecListener.v1``, the same seed, optimizer, batcher and ``max_steps``:

   * ``gp_efficient``: ``globalpointer_spans`` + ``spacy-globalpointer.EfficientGlobalPointer.v1``;
   * ``gp_original``: ``globalpointer_spans`` + ``spacy-globalpointer.GlobalPointer.v1``;
   * ``spancat``: ``spancat`` + ``spacy.ngram_range_suggester.v1`` (sizes 1 .. the 99th percentile
     of the entity lengths in the training part; its recall ceiling on the reported split is
     reported);
   * ``ner``: spaCy's transition-based ``ner``. It trains on flat ``doc.ents``: nested / overlapping
     gold entities (CMeEE) are flattened longest-first (ties: earlier start, then label name),
     the others dropped from its training data only. It is evaluated as spans: its ``doc.ents``
     against ALL gold spans (nested ones included), so on CMeEE its recall ceiling is < 1.

3. trains each with ``python -m spacy train`` (subprocess, timed: wall and CPU seconds of the
   child), evaluates ``model-last`` on the reported split with one scorer for all components
   (labelled exact-match spans, micro P/R/F; ``ents`` F where the component writes ``doc.ents``),
4. fits per-label thresholds for the Efficient model on the held-out slice
   (``spacy_globalpointer.thresholds``) and evaluates it again ("gp_efficient+thr" row),
5. writes ``<output>/<dataset>.json`` and ``<output>/results.md`` and prints the table.

Head parameters count the weights + biases of the component's OWN model, i.e. everything that is
not the shared ``tok2vec`` component (the listener has none):

* GlobalPointer: the torch head (projection (+ per-label bias layer for Efficient));
* spancat: its reducer (``spacy.mean_max_reducer.v1``: Maxout hidden layer + LayerNorm) + scorer
  (``spacy.LinearLogistic.v1``);
* ner: its ``lower`` (precomputable affine + its input projection Linear from the listener width to
  ``hidden_width``) + ``upper`` (output) layers.

``--encoder trf`` swaps the shared encoder for a ``transformer`` component (bert-base-chinese,
spacy-transformers) + ``spacy-transformers.TransformerListener.v1`` in every component (for a GPU:
``--gpu-id 0``). It is not run on this CPU machine.

Usage::

    python benchmarks/compare_components.py all --max-steps 600 --output compare
    python benchmarks/compare_components.py cluener --limit 300 --max-steps 20 --output /tmp/cmp  # smoke
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy  # noqa: E402
import spacy  # noqa: E402
from spacy.tokens import Doc, DocBin, Span  # noqa: E402
from thinc.api import Config  # noqa: E402

import spacy_globalpointer  # noqa: E402,F401
from spacy_globalpointer.readers import convert  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RAW = {
    # dataset: (format, train file, reported split file, name of the reported split)
    "people_daily": ("people_daily", "example.train", "example.test", "test"),
    "cluener": ("cluener", "train.json", "dev.json", "dev"),
    "cmeee": ("cmeee", "train_data.txt", "val_data.txt", "dev"),
}
FLAT = {"people_daily": True, "cluener": True, "cmeee": False}
COMPONENTS = ("gp_efficient", "spancat", "ner", "gp_original")
SPANS_KEY = "sc"

# ---- the ONE variable that switches the encoder ------------------------------------------------
ENCODER = "cnn"  # "cnn" (spacy.HashEmbedCNN.v2, runs here) or "trf" (bert-base-chinese, for a GPU)

CNN_ENCODER = {
    "@architectures": "spacy.HashEmbedCNN.v2",
    "pretrained_vectors": None,
    "width": 128,
    "depth": 4,
    "embed_size": 10000,
    "window_size": 1,
    "maxout_pieces": 3,
    "subword_features": True,
}
TRF_NAME = "bert-base-chinese"

TRAINING = {
    "seed": 0,
    "dropout": 0.1,
    "batch_words": 1000,  # spacy.batch_by_words.v1 size
    "learn_rate": 0.002,
    "warmup_steps": 50,
    "grad_clip": 1.0,
    "L2": 0.01,
}
GP_MAX_LENGTH = 64  # GlobalPointer band: longest span scored (tokens)


# ---- data ---------------------------------------------------------------------------------------


def gold_spans(doc: Doc) -> Set[Tuple[int, int, str]]:
    group = doc.spans.get(SPANS_KEY)
    spans = group if group else doc.ents
    return {(s.start, s.end, s.label_) for s in spans}


def flatten_longest_first(doc: Doc) -> Tuple[List[Span], int]:
    """A non-overlapping subset of the gold spans: longest first, then earlier start, then label."""
    spans = sorted(doc.spans.get(SPANS_KEY, []), key=lambda s: (-(s.end - s.start), s.start, s.label_))
    taken = numpy.zeros(len(doc), dtype=bool)
    kept = []
    for span in spans:
        if not taken[span.start : span.end].any():
            taken[span.start : span.end] = True
            kept.append(span)
    return sorted(kept, key=lambda s: s.start), len(spans) - len(kept)


def prepare_data(dataset: str, raw_dir: Path, work: Path, limit: Optional[int], train_limit: Optional[int],
                 heldout_fraction: float, heldout_max: int, eval_limit: Optional[int] = None,
                 log_dev_docs: int = 20) -> Dict[str, Any]:
    fmt, train_name, eval_name, eval_split = RAW[dataset]
    work.mkdir(parents=True, exist_ok=True)
    nlp = spacy.blank("zh")
    train_bin, train_report = convert(fmt, raw_dir / dataset / train_name, SPANS_KEY, limit)
    eval_bin, eval_report = convert(fmt, raw_dir / dataset / eval_name, SPANS_KEY, limit)
    train_docs = list(train_bin.get_docs(nlp.vocab))
    eval_docs = list(eval_bin.get_docs(nlp.vocab))
    if eval_limit:
        eval_docs = eval_docs[:eval_limit]
    n_heldout = min(heldout_max, max(1, int(round(len(train_docs) * heldout_fraction))))
    heldout = train_docs[-n_heldout:]
    train = train_docs[:-n_heldout]
    if train_limit:
        train = train[:train_limit]
    flat_train = []
    dropped = 0
    for doc in train:
        copy = doc.copy()
        kept, n_dropped = flatten_longest_first(doc)
        copy.set_ents(kept, default="outside")
        dropped += n_dropped
        flat_train.append(copy)
    flat_heldout = []
    for doc in heldout:
        copy = doc.copy()
        copy.set_ents(flatten_longest_first(doc)[0], default="outside")
        flat_heldout.append(copy)
    paths = {
        "train_log_dev": work / "train_log_dev.spacy",
        "train": work / "train.spacy",
        "train_flat": work / "train_flat.spacy",
        "heldout": work / "heldout.spacy",
        "heldout_flat": work / "heldout_flat.spacy",
        "eval": work / f"{eval_split}.spacy",
    }
    for key, docs in (("train_log_dev", heldout[:log_dev_docs]), ("train", train), ("train_flat", flat_train), ("heldout", heldout),
                      ("heldout_flat", flat_heldout), ("eval", eval_docs)):
        DocBin(docs=docs, store_user_data=True).to_disk(paths[key])
    lengths = numpy.asarray([e - s for doc in train for s, e, _ in gold_spans(doc)])
    labels = sorted({label for doc in train for _, _, label in gold_spans(doc)})
    eval_lengths = numpy.asarray([e - s for doc in eval_docs for s, e, _ in gold_spans(doc)])
    return {
        "paths": {k: str(v) for k, v in paths.items()},
        "eval_split": eval_split,
        "labels": labels,
        "n_train_docs": len(train),
        "n_train_chars": int(sum(len(d) for d in train)),
        "n_train_spans": int(len(lengths)),
        "n_heldout_docs": len(heldout),
        "n_eval_docs": len(eval_docs),
        "n_eval_spans": int(len(eval_lengths)),
        "train_length_p99": int(numpy.ceil(numpy.percentile(lengths, 99))),
        "train_length_max": int(lengths.max()),
        "eval_length_max": int(eval_lengths.max()),
        "ner_train_spans_dropped_by_flattening": dropped,
        "conversion": {"train": train_report.to_dict(), eval_split: eval_report.to_dict()},
    }


def data_from_corpus(dataset: str, corpus: Path) -> Dict[str, Any]:
    """The statistics ``prepare_data`` returns, recomputed from its files (no conversion report)."""
    eval_split = RAW[dataset][3]
    nlp = spacy.blank("zh")
    paths = {key: corpus / f"{key}.spacy" for key in ("train_log_dev", "train", "train_flat", "heldout",
                                                     "heldout_flat")}
    paths["eval"] = corpus / f"{eval_split}.spacy"
    load = lambda key: list(DocBin().from_disk(paths[key]).get_docs(nlp.vocab))  # noqa: E731
    train, heldout, eval_docs = load("train"), load("heldout"), load("eval")
    lengths = numpy.asarray([e - s for doc in train for s, e, _ in gold_spans(doc)])
    eval_lengths = numpy.asarray([e - s for doc in eval_docs for s, e, _ in gold_spans(doc)])
    return {
        "paths": {k: str(v) for k, v in paths.items()}, "eval_split": eval_split,
        "labels": sorted({label for doc in train for _, _, label in gold_spans(doc)}),
        "n_train_docs": len(train), "n_train_chars": int(sum(len(d) for d in train)),
        "n_train_spans": int(len(lengths)), "n_heldout_docs": len(heldout), "n_eval_docs": len(eval_docs),
        "n_eval_spans": int(len(eval_lengths)),
        "train_length_p99": int(numpy.ceil(numpy.percentile(lengths, 99))),
        "train_length_max": int(lengths.max()), "eval_length_max": int(eval_lengths.max()),
        "ner_train_spans_dropped_by_flattening": sum(
            len(gold_spans(d)) - len(d.ents) for d in load("train_flat")),
        "conversion": {},
    }


# ---- configs ------------------------------------------------------------------------------------


def encoder_config(encoder: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the shared encoder component, the listener each downstream model reads it through)."""
    if encoder == "cnn":
        component = {"factory": "tok2vec", "model": dict(CNN_ENCODER)}
        listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": CNN_ENCODER["width"],
                    "upstream": "tok2vec"}
        return component, listener
    if encoder == "trf":
        component = {
            "factory": "transformer",
            "max_batch_items": 4096,
            "set_extra_annotations": {"@annotation_setters": "spacy-transformers.null_annotation_setter.v1"},
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": TRF_NAME,
                "mixed_precision": False,
                "tokenizer_config": {"use_fast": True},
                "transformer_config": {},
                "grad_scaler_config": {},
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
            },
        }
        listener = {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                    "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}
        return component, listener
    raise ValueError(f"unknown encoder {encoder!r}")


def component_config(kind: str, listener: Dict[str, Any], suggester_max: int) -> Tuple[str, Dict[str, Any]]:
    if kind in ("gp_efficient", "gp_original"):
        arch = ("spacy-globalpointer.EfficientGlobalPointer.v1" if kind == "gp_efficient"
                else "spacy-globalpointer.GlobalPointer.v1")
        return "globalpointer_spans", {
            "factory": "globalpointer_spans", "spans_key": SPANS_KEY, "threshold": 0.5,
            "label_thresholds": None, "max_length": GP_MAX_LENGTH, "write_ents": True,
            "ents_strategy": "score",
            "model": {"@architectures": arch, "head_size": 64, "use_rope": True, "mixed_precision": False,
                      "tok2vec": dict(listener),
                      **({"initial_probability": 0.01} if kind == "gp_efficient" else {})},
        }
    if kind == "spancat":
        return "spancat", {
            "factory": "spancat", "spans_key": SPANS_KEY, "threshold": 0.5, "max_positive": None,
            "suggester": {"@misc": "spacy.ngram_range_suggester.v1", "min_size": 1, "max_size": suggester_max},
            "model": {
                "@architectures": "spacy.SpanCategorizer.v1",
                "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 128},
                "scorer": {"@layers": "spacy.LinearLogistic.v1", "nO": None, "nI": None},
                "tok2vec": dict(listener),
            },
        }
    if kind == "ner":
        return "ner", {
            "factory": "ner", "moves": None, "update_with_oracle_cut_size": 100, "incorrect_spans_key": None,
            "model": {"@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner",
                      "extra_state_tokens": False, "hidden_width": 64, "maxout_pieces": 2, "use_upper": True,
                      "nO": None, "tok2vec": dict(listener)},
        }
    raise ValueError(kind)


SCORE_WEIGHTS = {
    "globalpointer_spans": {f"spans_{SPANS_KEY}_f": 1.0, f"spans_{SPANS_KEY}_p": 0.0, f"spans_{SPANS_KEY}_r": 0.0,
                            "ents_f": 0.0, "ents_p": 0.0, "ents_r": 0.0},
    "spancat": {f"spans_{SPANS_KEY}_f": 1.0, f"spans_{SPANS_KEY}_p": 0.0, f"spans_{SPANS_KEY}_r": 0.0},
    "ner": {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
}


def build_config(kind: str, encoder: str, max_steps: int, suggester_max: int, labels: Sequence[str]) -> Config:
    enc_component, listener = encoder_config(encoder)
    enc_name = "tok2vec" if encoder == "cnn" else "transformer"
    name, comp = component_config(kind, listener, suggester_max)
    t = TRAINING
    cfg = {
        "paths": {"train": None, "dev": None, "vectors": None, "init_tok2vec": None},
        "system": {"gpu_allocator": None if encoder == "cnn" else "pytorch", "seed": t["seed"]},
        "nlp": {"lang": "zh", "pipeline": [enc_name, name], "batch_size": 64, "disabled": [],
                "before_creation": None, "after_creation": None, "after_pipeline_creation": None,
                "tokenizer": {"@tokenizers": "spacy.zh.ChineseTokenizer", "segmenter": "char"},
                "vectors": {"@vectors": "spacy.Vectors.v1"}},
        "components": {enc_name: enc_component, name: comp},
        "corpora": {
            "train": {"@readers": "spacy.Corpus.v1", "path": "${paths.train}", "max_length": 0,
                      "gold_preproc": False, "limit": 0, "augmenter": None},
            "dev": {"@readers": "spacy.Corpus.v1", "path": "${paths.dev}", "max_length": 0,
                    "gold_preproc": False, "limit": 0, "augmenter": None},
        },
        "training": {
            "dev_corpus": "corpora.dev", "train_corpus": "corpora.train", "seed": "${system.seed}",
            "gpu_allocator": "${system.gpu_allocator}", "dropout": t["dropout"], "accumulate_gradient": 1,
            "patience": 0, "max_epochs": 0, "max_steps": max_steps, "eval_frequency": max_steps,
            "frozen_components": [], "annotating_components": [], "before_to_disk": None,
            "before_update": None,
            "batcher": {"@batchers": "spacy.batch_by_words.v1", "discard_oversize": False,
                        "tolerance": 0.2, "get_length": None,
                        "size": t["batch_words"]},
            "logger": {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False},
            "optimizer": {"@optimizers": "Adam.v1", "beta1": 0.9, "beta2": 0.999, "L2_is_weight_decay": True,
                          "L2": t["L2"], "grad_clip": t["grad_clip"], "use_averages": False, "eps": 1e-8,
                          "learn_rate": {"@schedules": "warmup_linear.v1", "warmup_steps": t["warmup_steps"],
                                         "total_steps": max_steps, "initial_rate": t["learn_rate"]}},
            "score_weights": SCORE_WEIGHTS[name],
        },
        "pretraining": {},
        "initialize": {"vectors": "${paths.vectors}", "init_tok2vec": "${paths.init_tok2vec}",
                       "vocab_data": None, "lookups": None, "before_init": None, "after_init": None,
                       "components": {name: {"labels": list(labels)}} if name != "ner" else {},
                       "tokenizer": {}},
    }
    if encoder == "trf":
        # the usual transformer fine-tuning setting (the paper's: Adam 2e-5)
        cfg["training"]["optimizer"]["learn_rate"]["initial_rate"] = 2e-5
        cfg["training"]["batcher"] = {"@batchers": "spacy.batch_by_padded.v1", "discard_oversize": True,
                                      "size": 2000, "buffer": 256, "get_length": None}
    return Config(cfg)


# ---- scoring ------------------------------------------------------------------------------------


def prf(tp: int, n_pred: int, n_gold: int) -> Dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f, "tp": tp, "pred": n_pred, "gold": n_gold}


def evaluate(model_dir: Path, eval_docs: List[Doc], kind: str, flat: bool) -> Dict[str, Any]:
    nlp = spacy.load(model_dir)
    start = time.perf_counter()
    predicted = list(nlp.pipe((d.text for d in eval_docs), batch_size=64))
    seconds = time.perf_counter() - start
    tp = n_pred = n_gold = 0
    e_tp = e_pred = e_gold = 0
    for gold_doc, doc in zip(eval_docs, predicted):
        gold = gold_spans(gold_doc)
        if kind == "ner":
            pred = {(s.start, s.end, s.label_) for s in doc.ents}
        else:
            pred = {(s.start, s.end, s.label_) for s in doc.spans.get(SPANS_KEY, [])}
        tp += len(gold & pred)
        n_pred += len(pred)
        n_gold += len(gold)
        if kind in ("ner", "gp_efficient", "gp_original"):
            flat_gold = {(s.start, s.end, s.label_) for s in flatten_longest_first(gold_doc)[0]}
            ents = {(s.start, s.end, s.label_) for s in doc.ents}
            e_tp += len(flat_gold & ents)
            e_pred += len(ents)
            e_gold += len(flat_gold)
    result = {"spans": prf(tp, n_pred, n_gold), "eval_seconds": seconds}
    if e_pred or e_gold:
        result["ents"] = prf(e_tp, e_pred, e_gold)
        result["ents_gold"] = "gold entities" if flat else "gold flattened longest-first"
    return result


def count_params(model) -> int:
    total = 0
    for node in model.walk():
        for name in node.param_names:
            if node.has_param(name):
                total += int(node.get_param(name).size)
        for shim in node.shims:
            module = getattr(shim, "_model", None)
            if module is not None and hasattr(module, "parameters"):
                total += sum(int(p.numel()) for p in module.parameters())
    return total


def head_parameters(model_dir: Path, kind: str) -> Dict[str, int]:
    nlp = spacy.load(model_dir)
    pipe = nlp.get_pipe(nlp.pipe_names[-1])
    model = pipe.model
    if kind.startswith("gp"):
        return {"total": count_params(model.get_ref("head"))}
    if kind == "spancat":
        reducer, scorer = count_params(model.get_ref("reducer")), count_params(model.get_ref("scorer"))
        return {"total": reducer + scorer, "reducer": reducer, "scorer": scorer}
    if kind == "ner":
        # the listener has no weights; tok2vec ref = listener + projection Linear (part of the parser)
        lower = count_params(model.get_ref("lower")) + count_params(model.get_ref("tok2vec"))
        upper = count_params(model.get_ref("upper"))
        return {"total": lower + upper, "lower+projection": lower, "upper": upper}
    raise ValueError(kind)


def suggester_ceiling(eval_docs: List[Doc], max_size: int) -> float:
    gold = [e - s for d in eval_docs for s, e, _ in gold_spans(d)]
    return sum(1 for n in gold if n <= max_size) / len(gold)


def flat_ceiling(eval_docs: List[Doc]) -> float:
    n_flat = sum(len(flatten_longest_first(d)[0]) for d in eval_docs)
    return n_flat / sum(len(gold_spans(d)) for d in eval_docs)


# ---- running ------------------------------------------------------------------------------------


def run_timed(cmd: List[str], log_path: Path) -> Dict[str, float]:
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"command failed ({log_path}): {' '.join(cmd)}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def write_row(work: Path, kind: str, row: Dict[str, Any]) -> None:
    """Each row also goes to its own file, so that components of one dataset can run in parallel processes."""
    path = work / "rows" / f"{kind}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, ensure_ascii=False) + "\n")


def merge_rows(out: Path, dataset: str) -> Optional[Dict[str, Any]]:
    """``<out>/<dataset>.json`` with the rows of every process that ran a component of it."""
    path = out / f"{dataset}.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    for row_path in sorted((out / "work" / dataset / "rows").glob("*.json")):
        result["rows"][row_path.stem] = json.loads(row_path.read_text())
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def run_dataset(dataset: str, args: argparse.Namespace) -> Dict[str, Any]:
    out = Path(args.output)
    work = out / "work" / dataset
    print(f"== {dataset}: converting", flush=True)
    data_json = work / "corpus" / "data.json"
    if args.reuse_data and data_json.exists():
        # the corpus of an earlier (or concurrent) run with the same data options
        data = json.loads(data_json.read_text())
    elif args.reuse_data and (work / "corpus" / "train.spacy").exists():
        data = data_from_corpus(dataset, work / "corpus")
    else:
        data = prepare_data(dataset, Path(args.raw_dir), work / "corpus", args.limit, args.train_limit,
                            args.heldout_fraction, args.heldout_max, args.eval_limit)
        data_json.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    suggester_max = data["train_length_p99"]
    nlp = spacy.blank("zh")
    eval_docs = list(DocBin().from_disk(data["paths"]["eval"]).get_docs(nlp.vocab))
    result: Dict[str, Any] = {
        "dataset": dataset, "encoder": args.encoder, "max_steps": args.max_steps, "training": TRAINING,
        "cnn_encoder": CNN_ENCODER if args.encoder == "cnn" else None,
        "gp_max_length": GP_MAX_LENGTH, "spancat_max_size": suggester_max,
        "spancat_recall_ceiling": suggester_ceiling(eval_docs, suggester_max),
        "gp_recall_ceiling": suggester_ceiling(eval_docs, GP_MAX_LENGTH),
        "ner_recall_ceiling": flat_ceiling(eval_docs),
        "data": {k: v for k, v in data.items() if k != "conversion"}, "conversion": data["conversion"],
        "rows": {},
    }
    json_path = out / f"{dataset}.json"
    for kind in args.components:
        cfg = build_config(kind, args.encoder, args.max_steps, suggester_max, data["labels"])
        cfg_path = work / "configs" / f"compare_{dataset}_{kind}.cfg"
        cfg_path.parent.mkdir(parents=True, exist_ok=True)
        cfg.to_disk(cfg_path)
        run_dir = work / "runs" / kind
        train_path = data["paths"]["train_flat" if kind == "ner" else "train"]
        # spaCy's own evaluation during training only feeds its log: a few held-out docs (an untrained
        # GlobalPointer head predicts about half of all spans, which makes a large step-0 evaluation slow).
        # No model selection: model-last is evaluated.
        dev_path = data["paths"]["train_log_dev"]
        cmd = [sys.executable, "-m", "spacy", "train", str(cfg_path), "--output", str(run_dir),
               "--paths.train", train_path, "--paths.dev", dev_path, "--gpu-id", str(args.gpu_id)]
        print(f"== {dataset}/{kind}: training ({args.max_steps} steps)", flush=True)
        timing = run_timed(cmd, work / f"train_{kind}.log")
        model_dir = run_dir / "model-last"
        print(f"== {dataset}/{kind}: trained in {timing['wall_s']:.0f}s wall, {timing['cpu_s']:.0f}s CPU; "
              f"evaluating on {data['eval_split']}", flush=True)
        row = evaluate(model_dir, eval_docs, kind, FLAT[dataset])
        row.update({"train": timing, "head_params": head_parameters(model_dir, kind), "model": str(model_dir),
                    "config": str(cfg_path)})
        result["rows"][kind] = row
        write_row(work, kind, row)
        print(f"   spans F {100 * row['spans']['f']:.2f}", flush=True)
        if kind == "gp_efficient" and not args.no_thresholds:
            thr_dir = run_dir / "model-thresholds"
            fit_cmd = [sys.executable, "-m", "spacy_globalpointer.fit_thresholds", str(model_dir),
                       data["paths"]["heldout"], "--output", str(thr_dir),
                       "--report", str(work / "thresholds.json")]
            fit_timing = run_timed(fit_cmd, work / "fit_thresholds.log")
            thr_row = evaluate(thr_dir, eval_docs, kind, FLAT[dataset])
            thr_row.update({"train": timing, "fit_s": fit_timing["wall_s"], "head_params": row["head_params"],
                            "model": str(thr_dir),
                            "label_thresholds": json.loads((work / "thresholds.json").read_text())["thresholds"]})
            result["rows"]["gp_efficient+thr"] = thr_row
            write_row(work, "gp_efficient+thr", thr_row)
            print(f"   + fitted thresholds: spans F {100 * thr_row['spans']['f']:.2f}", flush=True)
        if json_path.exists():  # keep the rows other processes wrote for this dataset
            for other_kind, other_row in json.loads(json_path.read_text())["rows"].items():
                result["rows"].setdefault(other_kind, other_row)
        json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


NAMES = {
    "gp_efficient": "GlobalPointer Efficient",
    "gp_efficient+thr": "Efficient + fitted thresholds",
    "gp_original": "GlobalPointer original",
    "spancat": "spancat",
    "ner": "ner",
}


def table(results: Iterable[Dict[str, Any]]) -> str:
    lines = [
        "| dataset (split) | component | steps | spans P | spans R | spans F | ents F | head params | train wall s "
        "| train CPU s | F / Efficient F | head params / Efficient |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for res in results:
        rows = res["rows"]
        ref = rows.get("gp_efficient")
        for kind in ("gp_efficient", "gp_efficient+thr", "gp_original", "spancat", "ner"):
            if kind not in rows:
                lines.append(f"| {res['dataset']} ({res['data']['eval_split']}) | {NAMES[kind]} | not run / not "
                             "finished in the time budget | | | | | | | | | |")
                continue
            row = rows[kind]
            s = row["spans"]
            ents = f"{100 * row['ents']['f']:.2f}" if "ents" in row else "–"
            params = row["head_params"]["total"]
            ratio = f"{s['f'] / ref['spans']['f']:.3f}" if ref and ref["spans"]["f"] else "–"
            pratio = f"{params / ref['head_params']['total']:.2f}" if ref else "–"
            name = NAMES[kind]
            if kind == "spancat":
                name += f" (ngram 1-{res['spancat_max_size']}, ceiling {100 * res['spancat_recall_ceiling']:.1f}%)"
            if kind == "ner":
                name += f" (flat, ceiling {100 * res['ner_recall_ceiling']:.1f}%)"
            train = row["train"]
            wall = f"{train['wall_s']:.0f}" + (f" (+{row['fit_s']:.0f} fit)" if "fit_s" in row else "")
            lines.append(
                f"| {res['dataset']} ({res['data']['eval_split']}) | {name} | {res['max_steps']:,} "
                f"| {100 * s['p']:.2f} | {100 * s['r']:.2f} "
                f"| {100 * s['f']:.2f} | {ents} | {params:,} | {wall} | {train['cpu_s']:.0f} | {ratio} | {pratio} |"
            )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    global ENCODER
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", choices=[*RAW, "all"])
    parser.add_argument("--raw-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--output", default=str(ROOT / "compare"))
    parser.add_argument("--encoder", choices=["cnn", "trf"], default=ENCODER)
    parser.add_argument("--gpu-id", type=int, default=None, help="default: 0 with --encoder trf, else -1")
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--limit", type=int, default=None, help="convert only the first N records per file (smoke; 0: all)")
    parser.add_argument("--train-limit", type=int, default=None, help="train on the first N training docs only")
    parser.add_argument("--heldout-fraction", type=float, default=0.05)
    parser.add_argument("--heldout-max", type=int, default=500)
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="evaluate on the first N docs of the reported split only (time budget)")
    parser.add_argument("--components", nargs="+", choices=COMPONENTS, default=list(COMPONENTS))
    parser.add_argument("--reuse-data", action="store_true",
                        help="reuse <output>/work/<dataset>/corpus from an earlier run with the same data options")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the table from <output>/*.json")
    parser.add_argument("--no-thresholds", action="store_true")
    args = parser.parse_args(argv)
    ENCODER = args.encoder
    # spacy train runs from the repository root: make the user's relative paths absolute.
    args.output, args.raw_dir = str(Path(args.output).resolve()), str(Path(args.raw_dir).resolve())
    args.limit = args.limit or None  # the project passes 0 for "all records"
    if args.gpu_id is None:
        args.gpu_id = 0 if args.encoder == "trf" else -1
    datasets = list(RAW) if args.dataset == "all" else [args.dataset]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for dataset in datasets:
            run_dataset(dataset, args)
    # the table covers every dataset with a result in the output folder
    all_results = [r for r in (merge_rows(out, d) for d in RAW) if r is not None]
    md = table(all_results)
    header = (f"Encoder: {args.encoder}; machine: {platform.machine()}, {os.cpu_count()} CPU (shared), "
              f"torch threads via OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}.\n\n")
    (out / "results.md").write_text(header + md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
