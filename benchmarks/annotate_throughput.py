"""Throughput and memory of ``python -m spacy_globalpointer.annotate``, local and Ray engines.

Builds a corpus of ``--n-docs`` CLUENER texts (train then dev, repeated as needed)
as JSONL, and a pipeline from ``project/configs/cpu.cfg`` fitted a few steps on
CLUENER train (or takes ``--model``). Then each configuration runs in a fresh
interpreter, one after the other, over the same corpus:

* ``single``: ``[nlp(t) for t in texts]`` (the baseline);
* ``pipe2``: ``list(nlp.pipe(texts, n_process=2))``;
* ``local``: ``annotate --engine local`` (``main()`` timed: load, read, annotate, write);
* ``ray1`` / ``ray2``: ``annotate --engine ray --num-workers 1 / 2`` (Ray started
  beforehand, untimed; actor start-up and pipeline loading are timed).

Peak RSS: the measuring process's ``VmHWM``, and every worker's (``nlp.pipe``
children, Ray actors) sampled with psutil every 0.1 s. Torch runs one thread per
process. Targets: ray 2 workers >= 1.7x ray 1 worker; ray 1 worker >= 0.9x the
local engine.

Usage: ``python benchmarks/annotate_throughput.py --raw-dir ../shared/data [--n-docs 20000] [--model PATH]``
"""
import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from contextlib import nullcontext  # noqa: E402
import time  # noqa: E402
from itertools import cycle, islice  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("single", "pipe2", "local", "ray1", "ray2")
LABELS = {
    "single": "[nlp(t) for t in texts]",
    "pipe2": "nlp.pipe(n_process=2)",
    "local": "annotate --engine local",
    "ray1": "annotate --engine ray, 1 worker",
    "ray2": "annotate --engine ray, 2 workers",
}


def cluener_texts(raw_dir: Path, n_docs: int) -> List[str]:
    """``n_docs`` CLUENER texts: train then dev, repeated if there are fewer."""
    texts = []
    for split in ("train", "dev"):
        with (raw_dir / "cluener" / f"{split}.json").open(encoding="utf-8") as handle:
            texts.extend(json.loads(line)["text"] for line in handle if line.strip())
    return list(islice(cycle(texts), n_docs))


def build_model(raw_dir: Path, path: Path, steps: int) -> Path:
    """``cpu.cfg`` fitted ``steps`` updates on 256 CLUENER train docs, saved to ``path``."""
    import spacy
    from spacy.training import Example

    from spacy_globalpointer.readers import ConversionReport, iter_docs

    config = spacy.util.load_config(REPO / "project" / "configs" / "cpu.cfg", interpolate=True)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    gold = list(iter_docs("cluener", raw_dir / "cluener" / "train.json", ConversionReport(), limit=256))
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold]
    optimizer = nlp.initialize(lambda: examples)
    for step in range(steps):
        batch = examples[(step * 32) % len(examples) :][:32]
        nlp.update(batch, sgd=optimizer)
    nlp.to_disk(path)
    return path


class RssSampler:
    """Peak RSS (MB) of worker processes, sampled every 0.1 s in a thread."""

    def __init__(self, ray_actors: bool) -> None:
        self.ray_actors = ray_actors
        self.peaks: Dict[int, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _workers(self):
        """This process's descendants: nlp.pipe's workers, or the Ray actors (under the local raylet)."""
        import psutil

        children = psutil.Process().children(recursive=True)
        if not self.ray_actors:
            return children
        return [p for p in children if "SpanAnnotator" in " ".join(_cmdline(p))]

    def _run(self) -> None:
        while not self.stopped.wait(0.1):
            for process in self._workers():
                try:
                    rss = process.memory_info().rss / 2**20
                except Exception:  # the process ended between listing and reading
                    continue
                self.peaks[process.pid] = max(self.peaks.get(process.pid, 0.0), rss)


def _cmdline(process) -> List[str]:
    try:
        return process.cmdline()
    except Exception:  # the process ended meanwhile
        return []


def own_peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(config: str, model: str, corpus: Path, work: Path, batch_size: int) -> Dict[str, Any]:
    """Run one configuration in this (fresh) process; return its figures."""
    texts = [json.loads(line)["text"] for line in corpus.read_text("utf-8").splitlines()]
    chars = sum(len(t) for t in texts)
    has_psutil = importlib.util.find_spec("psutil") is not None
    sampler = RssSampler(ray_actors=config.startswith("ray")) if has_psutil else None
    if config in ("single", "pipe2"):
        import spacy

        nlp = spacy.load(model)
        nlp("预热")
        start = time.perf_counter()
        with sampler or nullcontext():
            if config == "single":
                docs = [nlp(t) for t in texts]
            else:
                docs = list(nlp.pipe(texts, batch_size=batch_size, n_process=2))
        seconds = time.perf_counter() - start
        assert len(docs) == len(texts)
    else:
        from spacy_globalpointer.annotate.cli import main

        output = work / f"out_{config}.jsonl"
        args = [model, str(corpus), str(output), "--overwrite", "--batch-size", str(batch_size)]
        if config.startswith("ray"):
            import ray

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            args += ["--engine", "ray", "--num-workers", config[-1]]
        start = time.perf_counter()
        with sampler or nullcontext():
            assert main(args) == 0
        seconds = time.perf_counter() - start
        if config.startswith("ray"):
            ray.shutdown()
    workers = sorted(sampler.peaks.values()) if sampler else []
    return {"seconds": seconds, "docs": len(texts), "chars": chars, "main_rss_mb": own_peak_rss_mb(), "worker_rss_mb": workers}


def wait_for_actors_to_exit(timeout: float = 60.0) -> None:
    """Ray actors outlive their driver by a few seconds: let them go before the next run."""
    if importlib.util.find_spec("psutil") is None:
        return
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(
        "SpanAnnotator" in " ".join(_cmdline(p)) for p in psutil.process_iter()
    ):
        time.sleep(0.5)


def table(results: Dict[str, Dict[str, Any]]) -> str:
    base = results["single"]["chars"] / results["single"]["seconds"]
    rows = [
        "| configuration | docs/s | chars/s | vs single loop | peak RSS main | peak RSS per worker |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for config in CONFIGS:
        r = results[config]
        workers = ", ".join(f"{mb:,.0f} MB" for mb in r["worker_rss_mb"]) or "-"
        rows.append(
            f"| {LABELS[config]} | {r['docs'] / r['seconds']:,.0f} | {r['chars'] / r['seconds']:,.0f} | "
            f"{r['chars'] / r['seconds'] / base:.2f}x | {r['main_rss_mb']:,.0f} MB | {workers} |"
        )
    speed = {c: results[c]["chars"] / results[c]["seconds"] for c in CONFIGS}
    checks = [
        ("ray 2 workers >= 1.7x ray 1 worker", speed["ray2"] / speed["ray1"], 1.7),
        ("ray 1 worker >= 0.9x local engine", speed["ray1"] / speed["local"], 0.9),
    ]
    rows += ["", "| target | ratio | result |", "| --- | ---: | --- |"]
    rows += [f"| {name} | {ratio:.2f}x | {'PASS' if ratio >= goal else 'MISS'} |" for name, ratio, goal in checks]
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw-dir", type=Path, help="folder holding cluener/{train,dev}.json (the project's raw_dir)")
    parser.add_argument("--n-docs", type=int, default=20000, help="docs in the corpus (default: 20000)")
    parser.add_argument("--model", help="pipeline to use instead of cpu.cfg fitted a few steps")
    parser.add_argument("--train-steps", type=int, default=30, help="updates when building the model (default: 30)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", type=Path, help="folder for corpus, model and outputs (default: a temporary one)")
    parser.add_argument("--measure", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.model, args.corpus, args.work, args.batch_size)))
        return 0
    if args.raw_dir is None:
        parser.error("--raw-dir is required (the folder holding cluener/)")
    work = args.work or Path(tempfile.mkdtemp(prefix="annotate_throughput_"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus.jsonl"
    texts = cluener_texts(args.raw_dir, args.n_docs)
    corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8")
    model = args.model or str(build_model(args.raw_dir, work / "model", args.train_steps))
    print(f"{len(texts):,} docs, {sum(map(len, texts)):,} chars; model {model}; work {work}", flush=True)
    results = {}
    for config in CONFIGS:
        command = [sys.executable, __file__, "--measure", config, "--model", model, "--corpus", str(corpus),
                   "--work", str(work), "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results[config] = json.loads(done.stdout.strip().splitlines()[-1])
        wait_for_actors_to_exit()
        print(f"{config}: {results[config]['seconds']:.1f}s", flush=True)
    same = all((work / f"out_{c}.jsonl").read_bytes() == (work / "out_local.jsonl").read_bytes() for c in ("ray1", "ray2"))
    print(f"\nnproc {os.cpu_count()}, one torch thread per process; Ray outputs identical to local: {'yes' if same else 'NO'}\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
