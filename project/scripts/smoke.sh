#!/usr/bin/env bash
# Smoke test of the spaCy project, for CI. It copies project/ ALONE to a temporary folder (as
# `spacy project clone` would, next to an installed plugin) and there runs every command of the
# `all` workflow (convert, train, evaluate for People's Daily, CLUENER and CMeEE, then summarize)
# on the first 50 records of each split with 20 training steps, checks the outputs, runs the
# `compare` workflow (all four components, 2 steps each) and validates the other configs.
# Nothing is left behind.
#
#   bash project/scripts/smoke.sh [RAW_DIR]
#
# RAW_DIR (or the RAW_DIR environment variable) holds people_daily/, cluener/, cmeee/;
# default: shared/data beside the repository's folder. PYTHON selects the interpreter (default: python).
set -euo pipefail

PROJECT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(dirname "$PROJECT_DIR")"
RAW_DIR="${1:-${RAW_DIR:-$(dirname "$REPO_DIR")/shared/data}}"
RAW_DIR="$(cd "$RAW_DIR" && pwd)"
PYTHON="${PYTHON:-python}"
LIMIT="${SMOKE_LIMIT:-50}"
STEPS="${SMOKE_STEPS:-20}"

WORK="$(mktemp -d -t globalpointer-smoke.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
# project/ alone, without what a run leaves in it: nothing outside it may be needed.
mkdir -p "$WORK/project"
cp -r "$PROJECT_DIR/project.yml" "$PROJECT_DIR/requirements.txt" "$PROJECT_DIR/configs" \
    "$PROJECT_DIR/scripts" "$WORK/project/"
cd "$WORK/project"

echo "smoke: raw data from $RAW_DIR, $LIMIT records per split, $STEPS steps, in $WORK"
# requirements.txt must be satisfied by the plugin installed beside the copy.
"$PYTHON" -m weasel run install .
"$PYTHON" -m weasel run all . \
    --vars.raw_dir "$RAW_DIR" --vars.limit "$LIMIT" \
    --vars.max_steps "$STEPS" --vars.eval_frequency 10

"$PYTHON" - <<'PY'
import json
from pathlib import Path

expected_labels = {"people_daily": 3, "cluener": 10, "cmeee": 9}
for name in expected_labels:
    report = json.loads(Path(f"corpus/{name}/report.json").read_text("utf-8"))
    assert set(report["splits"]) == {"train", "dev", "test"}, (name, list(report["splits"]))
    for split in ("train", "dev", "test", "heldout"):
        assert Path(f"corpus/{name}/{split}.spacy").is_file(), (name, split)
    assert report["settings"]["heldout"]["heldout_docs"] >= 1, (name, report["settings"])
    assert Path(f"training/{name}/model-best/config.cfg").is_file(), name
    assert Path(f"training/{name}/model-fitted/config.cfg").is_file(), name
    # labels without gold spans in the (tiny) held-out slice keep the global threshold
    fitted = json.loads(Path(f"metrics/thresholds/{name}.json").read_text("utf-8"))["thresholds"]
    assert len(fitted) <= expected_labels[name] and all(0 < t < 1 for t in fitted.values()), (name, fitted)
    for metrics in (name, f"{name}_fitted"):
        scores = json.loads(Path(f"metrics/{metrics}.json").read_text("utf-8"))
        for key in ("spans_sc_p", "spans_sc_r", "spans_sc_f", "ents_f"):
            assert key in scores, (metrics, key, sorted(scores))
    for step in ("convert", "train", "evaluate", "fit", "fitted_evaluate"):
        assert Path(f"metrics/timings/{name}_{step}.json").is_file(), (name, step)
summary = Path("metrics/summary.md").read_text("utf-8")
for title in ("People's Daily", "CLUENER", "CMeEE"):
    assert f"| {title} |" in summary and "| fitted |" in summary, title
print("smoke: outputs OK")
PY

"$PYTHON" -m weasel run compare . \
    --vars.raw_dir "$RAW_DIR" --vars.limit "$LIMIT" --vars.compare_max_steps 2 --vars.compare_seeds 0
"$PYTHON" - <<'PY'
import json
from pathlib import Path

table = Path("metrics/compare/results.md").read_text("utf-8")
for name in ("people_daily", "cluener", "cmeee"):
    rows = json.loads(Path(f"metrics/compare/{name}.json").read_text("utf-8"))["rows"]
    assert set(rows) == {"gp_efficient", "gp_efficient+thr", "gp_original", "spancat", "ner"}, (name, sorted(rows))
    for kind, runs in rows.items():
        assert [run["seed"] for run in runs] == [0], (name, kind)
        row = runs[0]
        assert 0.0 <= row["spans"]["f"] <= 1.0 and row["spans"]["gold"] > 0, (name, kind, row["spans"])
        assert row["head_params"]["total"] > 0, (name, kind)
    assert table.count(f"| {name} (") == len(rows), (name, table)
print("smoke: compare table OK")
PY

# The GPU / pretrained-transformer configs must validate without downloading anything.
for cfg in bert bert_original e5 e5_original cpu_original cpu_spancat cpu_ner; do
    "$PYTHON" -m spacy debug config "configs/$cfg.cfg" --code scripts/functions.py \
        --paths.train corpus/cluener/train.spacy --paths.dev corpus/cluener/dev.spacy >/dev/null
    echo "smoke: configs/$cfg.cfg is valid"
done
echo "smoke: OK"
