"""Collect ``metrics/*.json`` (written by ``spacy evaluate``) into a Markdown summary.

    python scripts/summarize.py METRICS_DIR OUTPUT.md [--spans-key sc]

One row per metrics file: spans P/R/F, ents F, the thresholds (``0.5``, or ``fitted`` for
``<name>_fitted.json``: per-label thresholds fitted on the held-out slice of train), the wall time
of training (from ``METRICS_DIR/timings/<name>_train.json``, written by ``scripts/timed.py``) and the
F1 that the Efficient GlobalPointer paper reports for BERT-base on the same split. A second table
lists the wall time of every timed step.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional

# Published F1 (BERT-base Chinese, head size 64, lr 2e-5, batch 16, 10 epochs, max length 256),
# from the Efficient GlobalPointer blog post; CLUENER and CMeEE test numbers are leaderboard
# scores, so those two are compared on dev.
DATASETS = {
    "people_daily": {"title": "People's Daily", "split": "test",
                     "paper": {"Efficient GP": 95.36, "GP": 95.51, "CRF": 95.46}},
    "cluener": {"title": "CLUENER", "split": "dev",
                "paper": {"Efficient GP": 80.66, "GP": 80.03, "CRF": 79.51}},
    "cmeee": {"title": "CMeEE", "split": "dev",
              "paper": {"Efficient GP": 65.16, "GP": 64.84, "CRF": 63.81}},
}
ORDER = list(DATASETS)
STEPS = ("prepare", "convert", "train", "evaluate", "fit")
FITTED = "_fitted"


def run_name(name: str) -> str:
    """``cluener_e5_fitted`` -> ``cluener_e5``: the training run a metrics file evaluates."""
    return name[: -len(FITTED)] if name.endswith(FITTED) else name


def base_dataset(name: str) -> Optional[str]:
    """``cluener_e5`` -> ``cluener``: the longest known dataset name that prefixes ``name``."""
    matches = [d for d in DATASETS if name == d or name.startswith(d + "_")]
    return max(matches, key=len) if matches else None


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    return json.loads(path.read_text("utf-8")) if path.exists() else None


def pct(value: Any) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{100 * value:.2f}"


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def config_name(timing: Optional[Dict[str, Any]]) -> str:
    """The config file passed to ``spacy train`` in a timed command, e.g. ``cpu.cfg``."""
    command = (timing or {}).get("command", [])
    for arg in command:
        if isinstance(arg, str) and arg.endswith(".cfg"):
            return Path(arg).name
    return "–"


def step_sort_key(path: Path):
    """Order timing files ``<name>_<step>.json`` by dataset, then by pipeline step."""
    name, _, step = path.stem.rpartition("_")
    return (*sort_key(name or path.stem), STEPS.index(step) if step in STEPS else len(STEPS))


def sort_key(name: str):
    """By dataset, then run, the 0.5-threshold row before the fitted one."""
    run = run_name(name)
    base = base_dataset(run)
    return (ORDER.index(base) if base in ORDER else len(ORDER), run, name != run)


def summarize(metrics_dir: Path, spans_key: str = "sc") -> str:
    timings_dir = metrics_dir / "timings"
    names = sorted(
        (p.stem for p in metrics_dir.glob("*.json")), key=sort_key
    )
    lines = [
        "| dataset | eval split | config | thresholds | spans P | spans R | spans F | ents F | train wall time "
        "| paper F1, BERT + Efficient GP | paper F1, BERT + GP |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for name in names:
        scores = read_json(metrics_dir / f"{name}.json") or {}
        run = run_name(name)
        base = base_dataset(run)
        info = DATASETS.get(base, {"title": run, "split": "?", "paper": {}})
        title = info["title"] + ("" if run == base else f" ({run[len(base) + 1:]})" if base else "")
        timing = read_json(timings_dir / f"{run}_train.json")
        paper = info["paper"]
        thresholds = "fitted" if name != run else "0.5"
        lines.append(
            f"| {title} | {info['split']} | {config_name(timing)} | {thresholds} "
            f"| {pct(scores.get(f'spans_{spans_key}_p'))} | {pct(scores.get(f'spans_{spans_key}_r'))} "
            f"| {pct(scores.get(f'spans_{spans_key}_f'))} | {pct(scores.get('ents_f'))} "
            f"| {duration((timing or {}).get('seconds'))} "
            f"| {paper.get('Efficient GP', '–')} | {paper.get('GP', '–')} |"
        )
        if base == "cmeee" and scores.get("ents_f") is not None:
            notes.append(
                "CMeEE ents F is scored on the dev docs whose gold entities do not overlap "
                "(docs with nested entities have no gold `doc.ents`); spans F covers every entity."
            )
    out = ["# Results", "", *lines, ""]
    out += [f"- {note}" for note in dict.fromkeys(notes)]
    out += [
        "- Paper F1: Efficient GlobalPointer blog, BERT-base Chinese, head size 64, "
        "lr 2e-5, batch 16, 10 epochs, max length 256 (People's Daily: test; CLUENER/CMeEE: dev).",
        "",
    ]
    per_label = []
    for name in names:
        scores = read_json(metrics_dir / f"{name}.json") or {}
        per_type = scores.get(f"spans_{spans_key}_per_type") or {}
        if per_type:
            cells = ", ".join(
                f"{label} {100 * v['f']:.1f}" for label, v in sorted(per_type.items())
            )
            per_label.append(f"- {name}: {cells}")
    if per_label:
        out += ["## Spans F per label", "", *per_label, ""]
    step_rows = []
    total = total_cpu = 0.0
    for path in sorted(timings_dir.glob("*.json"), key=step_sort_key):
        timing = read_json(path) or {}
        seconds, cpu = timing.get("seconds"), timing.get("cpu_seconds")
        total += seconds or 0.0
        total_cpu += cpu or 0.0
        load = timing.get("load_average")
        load_text = f"{load[0]:.1f}" if load else "–"
        step_rows.append(
            f"| {path.stem} | {duration(seconds)} | {duration(cpu)} | {load_text} | {timing.get('finished', '–')} |"
        )
    if step_rows:
        out += [
            "## Wall time per step",
            "",
            "CPU time is the command's user + system time over all threads; the load average "
            "(1 min, at the end of the step) shows how busy the machine was.",
            "",
            "| step | wall time | CPU time | load | finished |",
            "| --- | ---: | ---: | ---: | --- |",
            *step_rows,
            f"| **total** | **{duration(total)}** | **{duration(total_cpu)}** | | |",
            "",
        ]
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics_dir", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--spans-key", default="sc")
    args = parser.parse_args(argv)
    if not args.metrics_dir.is_dir():
        print(f"error: no metrics directory {args.metrics_dir}", file=sys.stderr)
        return 1
    text = summarize(args.metrics_dir, args.spans_key)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
