"""Speed and memory of globalpointer_spans against spancat and ner over one CNN encoder.

Every pipeline is a ``tok2vec`` component (spaCy's HashEmbedCNN, width 96,
depth 4: globalpointer_spans' default encoder) followed by one downstream
component reading it through a ``Tok2VecListener``, all from one config file
(``--config``, default ``benchmarks/configs/speed_memory.cfg``). One pipeline's encoder
weights are copied into all the others, so every pipeline runs the same
encoder component with the same weights, once per doc, and a component's cost
is its own time next to the encoder's.

The downstream components are fitted on CLUENER train over the frozen encoder,
then GlobalPointer's and spancat's thresholds are set so that each predicts as
many spans on the fitting docs as they have gold spans: an unfitted head
"predicts" half of all candidate spans and the benchmark would time span
construction. The encoder stays random: the figures are about speed, not F1.
Then, in one run:

* peak RSS of ``nlp(text)`` per document length, with and without
  ``max_length``, each in a fresh interpreter reporting its own peak
  (``VmHWM``: on Linux a child's ``ru_maxrss`` starts at its parent's RSS);
* prediction chars/second on CLUENER dev and on synthetic long docs (CLUENER
  dev texts run together): the encoder's ``pipe`` and the component's ``pipe``
  are timed separately over the same docs, as ``nlp.pipe`` runs them; every
  configuration once per round, rounds interleaved, the fastest time of each
  part kept, so that load from other jobs hits all configurations alike;
* training words/second over the same CLUENER train batches, whole
  ``nlp.update`` calls, encoder included.

Usage: ``python benchmarks/speed_memory.py --data CLUENER_DIR [--quick]`` (see ``--help``).
"""
import argparse
import os
import sys

THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _set_threads_from_argv() -> None:
    """Thread counts must be fixed before numpy and torch are imported."""
    threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else None
    for name in THREADS_ENV:
        if threads is None:
            os.environ.setdefault(name, "1")
        else:
            os.environ[name] = threads


_set_threads_from_argv()

import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple  # noqa: E402

import numpy  # noqa: E402
import spacy  # noqa: E402
import torch  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.pipeline.tok2vec import Tok2VecListener  # noqa: E402
from spacy.tokens import Doc  # noqa: E402
from spacy.training import Example  # noqa: E402
from spacy.util import load_config, load_model_from_config, minibatch  # noqa: E402
from thinc.api import fix_random_seed, set_dropout_rate  # noqa: E402

from spacy_globalpointer import GlobalPointerSpans  # noqa: E402
from spacy_globalpointer.readers import convert  # noqa: E402
from spacy_globalpointer.layout import valid_cells  # noqa: E402

CONFIG = Path(__file__).resolve().parent / "configs" / "speed_memory.cfg"
LONG_MAX_LENGTH = 64  # GlobalPointer's max_length on the long docs
BATCH_SIZE = 32  # docs per training batch
FIT_LEARN_RATE = 0.005
DENSE_LIMIT_GB = 2.0  # no unlimited GlobalPointer run whose logits alone would exceed this


class Setup(NamedTuple):
    """One downstream component over the shared encoder."""

    key: str  # the component's name in its pipeline
    title: str
    component: str  # its block in the config's [components]
    overrides: Dict[str, Any]


def make_setups(spancat_sizes: Sequence[int]) -> List[Setup]:
    setups = [
        Setup("efficient", "+Efficient GP", "efficient", {}),
        Setup("original", "+original GP", "original", {}),
    ]
    for size in spancat_sizes:
        overrides = {"components.spancat.suggester.max_size": size}
        setups.append(Setup(f"spancat{size}", f"+spancat 1-{size}", "spancat", overrides))
    setups.append(Setup("ner", "+ner", "ner", {}))
    return setups


def build(setup: Setup, config_path: Path) -> Language:
    """The pipeline ``["tok2vec", setup.component]`` of the config file, the component named ``setup.key``."""
    overrides = {"nlp.pipeline": ["tok2vec", setup.component], **setup.overrides}
    nlp = load_model_from_config(load_config(config_path, overrides=overrides), auto_fill=True)
    if setup.key != setup.component:
        nlp.rename_pipe(setup.component, setup.key)
    assert any(isinstance(node, Tok2VecListener) for node in nlp.get_pipe(setup.key).model.walk())
    return nlp


def load_examples(nlp: Language, path: Path, limit: Optional[int]) -> List[Example]:
    doc_bin, _ = convert("cluener", path, limit=limit)
    return [Example(nlp.make_doc(doc.text), doc) for doc in doc_bin.get_docs(nlp.vocab)]


def long_texts(texts: Sequence[str], length: int, total: int) -> List[str]:
    """``max(1, total // length)`` docs of exactly ``length`` chars: ``texts`` run together."""
    count = max(1, total // length)
    corpus = "".join(texts)
    while len(corpus) < length * count:
        corpus += corpus
    return [corpus[i * length : (i + 1) * length] for i in range(count)]


def set_max_length(nlp: Language, max_length: Optional[int]) -> None:
    for _, pipe in nlp.pipeline:
        if isinstance(pipe, GlobalPointerSpans):
            pipe.cfg["max_length"] = max_length


# ----------------------------------------------------------------------------- fitting


def fit_over_frozen_encoder(nlp: Language, examples: List[Example], epochs: int) -> None:
    """Train the downstream component only: the listener reads the encoder's output from ``doc.tensor``."""
    optimizer = nlp.resume_training()
    optimizer.learn_rate = FIT_LEARN_RATE
    for _ in range(epochs):
        for batch in minibatch(examples, BATCH_SIZE):
            nlp.update(batch, sgd=optimizer, drop=0.1, exclude=["tok2vec"])


def calibrate_threshold(nlp: Language, key: str, examples: List[Example]) -> None:
    """Set ``key``'s threshold so it predicts as many spans on ``examples`` as they have gold spans."""
    pipe = nlp.get_pipe(key)
    if "threshold" not in pipe.cfg:
        return
    docs = [eg.predicted for eg in examples]
    if isinstance(pipe, GlobalPointerSpans):
        logits = [doc_logits[:, valid_cells(*doc_logits.shape[1:])] for doc_logits in pipe.predict(docs)]
        scores = 1 / (1 + numpy.exp(-numpy.concatenate([cells.ravel() for cells in logits]).astype("float64")))
    else:
        scores = pipe.predict(docs)[1].ravel()
    gold = sum(len(eg.reference.spans["sc"]) for eg in examples)
    ranked = numpy.sort(scores)[::-1]
    pipe.cfg["threshold"] = float((ranked[gold - 1] + ranked[gold]) / 2)


# ----------------------------------------------------------------------------- timing


def time_prediction(nlp: Language, key: str, texts: Sequence[str], clock: Callable[[], float]) -> Tuple[float, float, List[Doc]]:
    """Seconds of the encoder's and of ``key``'s ``pipe`` over fresh docs (as ``nlp.pipe`` runs them), and the docs."""
    docs = [nlp.make_doc(text) for text in texts]
    start = clock()
    docs = list(nlp.get_pipe("tok2vec").pipe(docs, batch_size=nlp.batch_size))
    middle = clock()
    docs = list(nlp.get_pipe(key).pipe(docs, batch_size=nlp.batch_size))
    return middle - start, clock() - middle, docs


def best_of_interleaved(jobs: Dict[str, Callable[[], Dict[str, float]]], repeats: int) -> Dict[str, float]:
    """Run every job ``repeats`` times, rotating the order each round; keep each timing's minimum.

    A job returns named timings; the same name from several jobs (the encoder) pools their runs.
    """
    best: Dict[str, float] = {}
    keys = list(jobs)
    for round_ in range(repeats):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            for name, seconds in jobs[key]().items():
                best[name] = min(best.get(name, float("inf")), seconds)
    return best


def time_training(
    nlp: Language, batches: List[List[Example]], encoder_only: bool, clock: Callable[[], float]
) -> float:
    """Seconds spent in updates, encoder included, over ``batches``."""
    optimizer = nlp.resume_training()
    tok2vec = nlp.get_pipe("tok2vec").model
    set_dropout_rate(tok2vec, 0.1)
    elapsed = 0.0
    for batch in batches:
        start = clock()
        if encoder_only:
            # What the tok2vec component does when its listener hands back a gradient.
            vectors, backprop = tok2vec.begin_update([eg.predicted for eg in batch])
            backprop(vectors)
            tok2vec.finish_update(optimizer)
        else:
            nlp.update(batch, sgd=optimizer, drop=0.1)
        elapsed += clock() - start
    return elapsed


# ----------------------------------------------------------------------------- memory


def peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` where available: ``ru_maxrss`` survives fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(pipeline: str, component: str, length: int, max_length: Optional[int], source: str) -> None:
    """In a fresh process: peak RSS (MB) before and after ``nlp(text)`` on ``length`` chars."""
    nlp = spacy.load(pipeline)
    if component == "tok2vec":
        nlp.select_pipes(enable=["tok2vec"])
    set_max_length(nlp, max_length)
    texts = json.loads(Path(source).read_text(encoding="utf8"))
    for _ in nlp.pipe(texts[:16]):
        pass
    text = long_texts(texts, length, length)[0]
    before = peak_rss_mb()
    doc = nlp(text)
    assert len(doc) == length
    print(json.dumps({"before": before, "peak": peak_rss_mb()}))


def measure_memory(pipeline: Path, component: str, length: int, max_length: Optional[int], source: Path) -> Dict:
    """Run ``memory_child`` in a fresh interpreter and parse its report."""
    command = [sys.executable, __file__, "--memory-child", str(pipeline), component, str(length)]
    command += [str(max_length), str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit code {result.returncode}"]
        return {"error": lines[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, nproc={os.cpu_count()}, torch/BLAS threads={os.environ['OMP_NUM_THREADS']}, "
        f"Python {platform.python_version()}, spaCy {spacy.__version__}, torch {torch.__version__}"
    )


def row(label: str, cells: Sequence[str], width: int) -> str:
    return f"{label:<38}" + "".join(f"{cell:>{width}}" for cell in cells)


def overheads(throughput: Dict[str, float], columns: Sequence[str]) -> List[str]:
    """Each configuration's time over the encoder's, minus one."""
    return ["-"] + [f"{throughput['encoder'] / throughput[key] - 1:+.0%}" for key in columns[1:]]


def memory_cell(result: Optional[Dict]) -> str:
    if result is None:
        return "-"
    if "skipped" in result:
        return f"n/a ({result['skipped']:.0f}GB)"
    if "error" in result:
        return "error"
    return f"{result['peak']:,.0f} +{result['peak'] - result['before']:,.0f}"


def slope(run: Dict[int, Dict], first: int, last: int) -> str:
    """Peak-RSS growth in MB per 10k chars between two lengths."""
    if "peak" not in run.get(first, {}) or "peak" not in run.get(last, {}):
        return "-"
    return f"{(run[last]['peak'] - run[first]['peak']) / (last - first) * 10_000:.0f}"


# ----------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run: less data, fewer rounds and lengths")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads (default 1)")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default="cpu",
        help="cpu: this process's CPU time (default; robust to other jobs' load, = wall time on an idle core "
        "with one thread); wall: elapsed time",
    )
    parser.add_argument("--data", type=Path, required=True, help="directory with CLUENER train.json and dev.json")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the pipelines' config (default: %(default)s)")
    parser.add_argument(
        "--spancat-sizes", type=int, nargs="+", default=[3, 10],
        help="one spancat per value, suggesting every n-gram up to that size (default: 3 10)",
    )
    parser.add_argument("--repeats", type=int, help="timing rounds, best kept (default 3, quick 2)")
    parser.add_argument(
        "--memory-all", action="store_true", help="peak memory of spancat and ner at every length, not just the longest"
    )
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    fit_docs, fit_epochs = (400, 2) if args.quick else (600, 2)
    train_batches = 6 if args.quick else 15
    dev_limit = 400 if args.quick else None
    lengths = [1_000, 50_000] if args.quick else [1_000, 5_000, 20_000, 50_000]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - started:4.0f}s] {message}", file=sys.stderr, flush=True)

    # -- one encoder copied into every pipeline; downstream components fitted over it -----------
    setups = make_setups(args.spancat_sizes)
    keys = [setup.key for setup in setups]
    pipelines: Dict[str, Language] = {}
    batches: Dict[str, List[List[Example]]] = {}
    encoder_bytes, tensors = None, []
    for setup in setups:
        fix_random_seed(0)
        nlp = build(setup, args.config)
        examples = load_examples(nlp, args.data / "train.json", fit_docs + train_batches * BATCH_SIZE)
        fit, timed = examples[:fit_docs], examples[fit_docs:]
        nlp.initialize(lambda: fit)
        if encoder_bytes is None:
            encoder_bytes = nlp.get_pipe("tok2vec").to_bytes()
            tensors = nlp.get_pipe("tok2vec").predict([eg.predicted for eg in fit])
        else:
            nlp.get_pipe("tok2vec").from_bytes(encoder_bytes)
        for eg, tensor in zip(fit, tensors):
            eg.predicted.tensor = tensor
        fit_over_frozen_encoder(nlp, fit, fit_epochs)
        calibrate_threshold(nlp, setup.key, fit)
        pipelines[setup.key] = nlp
        batches[setup.key] = list(minibatch(timed, BATCH_SIZE))
        progress(f"fitted {setup.key}")
    dev = load_examples(pipelines[keys[0]], args.data / "dev.json", dev_limit)
    dev_texts = [eg.reference.text for eg in dev]
    gold_per_doc = sum(len(eg.reference.spans["sc"]) for eg in dev) / len(dev)
    probe = [pipelines[key].get_pipe("tok2vec").predict([pipelines[key].make_doc(dev_texts[0])])[0] for key in keys]
    assert all((vectors == probe[0]).all() for vectors in probe), "the pipelines' encoders differ"
    del dev, tensors
    gc.collect()
    gc.freeze()  # the set-up's objects are permanent: the collector should not keep re-scanning them

    # -- peak memory, one fresh process per cell (first, while this process is small) ----------
    n_labels = len(pipelines[keys[0]].get_pipe(keys[0]).labels)
    runs = [("encoder", keys[0], "tok2vec", None, lengths)]
    for key in keys:
        if isinstance(pipelines[key].get_pipe(key), GlobalPointerSpans):
            dense = [n for n in lengths if n_labels * n * n * 4 / 1e9 <= DENSE_LIMIT_GB]
            runs += [(f"{key} W={LONG_MAX_LENGTH}", key, key, LONG_MAX_LENGTH, lengths), (f"{key} W=none", key, key, None, dense)]
        else:
            runs.append((key, key, key, None, lengths if args.memory_all else lengths[-1:]))
    memory: Dict[str, Dict[int, Dict]] = {title: {} for title, *_ in runs}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=2) as pool:
        source = Path(tmp) / "texts.json"
        source.write_text(json.dumps(dev_texts, ensure_ascii=False), encoding="utf8")
        for key in keys:
            pipelines[key].to_disk(Path(tmp) / key)
        futures = {
            (title, length): pool.submit(measure_memory, Path(tmp) / key, component, length, max_length, source)
            for title, key, component, max_length, measured in runs
            for length in measured
        }
        for (title, length), future in futures.items():
            memory[title][length] = future.result()
    for title, _, _, max_length, _ in runs:
        for length in lengths:
            if title.endswith("W=none") and length not in memory[title]:
                memory[title][length] = {"skipped": n_labels * length * length * 4 / 1e9}
    progress(f"measured peak memory: {len(futures)} processes")

    # -- prediction speed: encoder and downstream component timed separately, best of rounds ---
    corpora = [("CLUENER dev", dev_texts, None)]
    for length in lengths:
        corpora.append((f"{length // 1000}k-char docs", long_texts(dev_texts, length, 10_000), LONG_MAX_LENGTH))
    speed: Dict[str, Dict[str, float]] = {}
    head_share: Dict[str, Dict[str, float]] = {}
    spans_per_doc: Dict[str, float] = {}
    for name, texts, max_length in corpora:
        outputs: Dict[str, List[Doc]] = {}

        def job(key: str) -> Callable[[], Dict[str, float]]:
            def run() -> Dict[str, float]:
                encoder, head, outputs[key] = time_prediction(pipelines[key], key, texts, clock)
                return {"encoder": encoder, key: head}

            return run

        for key in keys:
            set_max_length(pipelines[key], max_length)
        chars = sum(len(text) for text in texts)
        seconds = best_of_interleaved({key: job(key) for key in keys}, repeats)
        speed[name] = {"encoder": chars / seconds["encoder"]}
        speed[name].update({key: chars / (seconds["encoder"] + seconds[key]) for key in keys})
        head_share[name] = {key: seconds[key] / seconds["encoder"] for key in keys}
        if name == "CLUENER dev":
            for key in keys:
                spans_per_doc[key] = sum(len(doc.spans.get("sc", doc.ents)) for doc in outputs[key]) / len(texts)
        del outputs
        progress(f"timed prediction: {name}, {len(texts)} docs, {chars:,} chars")
    for key in keys:
        set_max_length(pipelines[key], None)

    # -- training speed: whole updates, encoder included ----------------------------------------
    words = sum(len(eg.predicted) for batch in batches[keys[0]] for eg in batch)

    def training_job(key: str, encoder_only: bool) -> Callable[[], Dict[str, float]]:
        def run() -> Dict[str, float]:
            pipelines[key].get_pipe("tok2vec").from_bytes(encoder_bytes)
            seconds = time_training(pipelines[key], batches[key], encoder_only, clock)
            return {"encoder" if encoder_only else key: seconds}

        return run

    jobs = {"encoder": training_job(keys[0], True)}
    jobs.update({key: training_job(key, False) for key in keys})
    seconds = best_of_interleaved(jobs, repeats)
    training = {key: words / value for key, value in seconds.items()}
    progress(f"timed training: {len(batches[keys[0]])} batches of {BATCH_SIZE} docs, {words:,} words")

    # -- the table ----------------------------------------------------------------------------
    columns = ["encoder"] + keys
    titles = ["encoder"] + [setup.title for setup in setups]
    width = max(len(title) for title in titles) + 2
    print(f"machine: {machine()}")
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    print(
        f"One run ({time.perf_counter() - started:.0f}s wall, {cpu:.0f}s CPU), {args.clock} clock, best of {repeats} interleaved rounds. "
        f"Columns: the same tok2vec component (HashEmbedCNN width 96 depth 4, identical weights) alone, then plus "
        f"one component reading it through a Tok2VecListener. GlobalPointer max_length: none on CLUENER dev, "
        f"{LONG_MAX_LENGTH} on the long docs (CLUENER dev texts run together)."
    )
    print(row("", titles, width))
    for name, _, _ in corpora:
        print(row(f"predict chars/s, {name}", [f"{speed[name][key]:,.0f}" for key in columns], width))
        print(row("  head time / encoder time", ["-"] + [f"{head_share[name][key]:.1%}" for key in keys], width))
    spans = ["-"] + [f"{spans_per_doc[key]:.2f}" for key in keys]
    print(row(f"  spans per dev doc (gold {gold_per_doc:.2f})", spans, width))
    print(row("train words/s, CLUENER train", [f"{training[key]:,.0f}" for key in columns], width))
    print(row("  update time / encoder's - 1", ["-"] + [f"{training['encoder'] / training[key] - 1:.1%}" for key in keys], width))
    print()
    titles = list(memory)
    width = max(len(title) for title in titles) + 2
    print("peak RSS (MB) of nlp(text) on one doc, a fresh process per cell (+ growth over the warmed-up process)")
    print(row("doc length (chars)", titles, width))
    for length in lengths:
        print(row(f"{length:,}", [memory_cell(memory[title].get(length)) for title in titles], width))
    for first, last in zip(lengths, lengths[1:]):
        print(row(f"MB per 10k chars, {first:,}->{last:,}", [slope(memory[t], first, last) for t in titles], width))
    for title in titles:
        for length, result in memory[title].items():
            if "error" in result:
                print(f"error in {title} at {length:,} chars: {result['error']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--memory-child":
        pipeline, component, length, max_length, source = sys.argv[2:7]
        memory_child(pipeline, component, int(length), None if max_length == "None" else int(max_length), source)
    else:
        main()
