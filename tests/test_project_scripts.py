"""The project's reporting scripts: the held-out slice, fitted-threshold rows, seed statistics."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import spacy
from spacy.tokens import DocBin

PROJECT = Path(__file__).parents[1] / "project"


def load_script(name: str) -> ModuleType:
    """A project script as a module, importable as ``python scripts/NAME.py`` sees its neighbours."""
    if str(PROJECT / "scripts") not in sys.path:
        sys.path.insert(0, str(PROJECT / "scripts"))
    spec = importlib.util.spec_from_file_location(name, PROJECT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_cluener(path: Path, n: int) -> None:
    records = [{"text": f"张三{i}在北京", "label": {"name": {"张三": [[0, 1]]}, "address": {"北京": [[4 + (i >= 10), 5 + (i >= 10)]]}}}
               for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")


def test_convert_holds_out_the_end_of_train(tmp_path):
    train, dev = tmp_path / "train.json", tmp_path / "dev.json"
    write_cluener(train, 40)
    write_cluener(dev, 5)
    out = tmp_path / "corpus"
    cmd = [sys.executable, str(PROJECT / "scripts" / "convert_corpus.py"), "cluener", str(out),
           "--train", str(train), "--dev", str(dev), "--heldout-fraction", "0.1", "--heldout-max", "3"]
    subprocess.run(cmd, check=True, capture_output=True)
    vocab = spacy.blank("zh").vocab
    kept = [d.text for d in DocBin().from_disk(out / "train.spacy").get_docs(vocab)]
    heldout = list(DocBin().from_disk(out / "heldout.spacy").get_docs(vocab))
    # 10% of 40 is 4, capped at 3: the last three records, with their entities
    assert [d.text for d in heldout] == [f"张三{i}在北京" for i in (37, 38, 39)]
    assert kept == [f"张三{i}在北京" for i in range(37)]
    assert all(len(d.spans["sc"]) == 2 for d in heldout)
    report = json.loads((out / "report.json").read_text("utf-8"))
    assert report["splits"]["train"]["entities_written"] == 80
    assert report["settings"]["heldout"] == {
        "fraction": 0.1, "train_docs": 37, "heldout_docs": 3, "train_entities": 74, "heldout_entities": 6}


def test_heldout_fraction_out_of_range_is_a_usage_error(tmp_path):
    train = tmp_path / "train.json"
    write_cluener(train, 4)
    cmd = [sys.executable, str(PROJECT / "scripts" / "convert_corpus.py"), "cluener", str(tmp_path / "out"),
           "--train", str(train), "--dev", str(train), "--heldout-fraction", "1.0"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 2 and "--heldout-fraction" in result.stderr


def test_summary_has_a_fitted_row_with_the_training_run_time(tmp_path):
    summarize = load_script("summarize")
    (tmp_path / "timings").mkdir()
    scores = {"cluener": 0.70, "cluener_fitted": 0.72, "cluener_e5": 0.74}
    for name, f in scores.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"spans_sc_p": f, "spans_sc_r": f, "spans_sc_f": f}))
    for run, seconds in (("cluener", 125), ("cluener_e5", 2000)):
        timing = {"seconds": seconds, "command": ["python", "-m", "spacy", "train", f"configs/{run[8:] or 'cpu'}.cfg"]}
        (tmp_path / "timings" / f"{run}_train.json").write_text(json.dumps(timing))
    rows = [line for line in summarize.summarize(tmp_path).splitlines() if line.startswith("| CLUENER")]
    assert rows == [
        "| CLUENER | dev | cpu.cfg | 0.5 | 70.00 | 70.00 | 70.00 | – | 2m05s | 80.66 | 80.03 |",
        "| CLUENER | dev | cpu.cfg | fitted | 72.00 | 72.00 | 72.00 | – | 2m05s | 80.66 | 80.03 |",
        "| CLUENER (e5) | dev | e5.cfg | 0.5 | 74.00 | 74.00 | 74.00 | – | 33m20s | 80.66 | 80.03 |",
    ]


def compare_run(f: float, seed: int, wall: float = 100.0) -> dict:
    return {"seed": seed, "spans": {"p": f, "r": f, "f": f}, "train": {"wall_s": wall, "cpu_s": wall},
            "head_params": {"total": 1000}}


def test_compare_table_gives_mean_and_sample_sd_over_seeds():
    compare = load_script("compare")
    result = {
        "dataset": "cluener", "max_steps": 1500, "data": {"eval_split": "dev"},
        "rows": {"gp_efficient": [compare_run(0.70, 0), compare_run(0.72, 1), compare_run(0.74, 2)],
                 "gp_original": [compare_run(0.69, 0), compare_run(0.69, 1), compare_run(0.69, 2)]},
    }
    efficient, original = compare.table([result]).splitlines()[2:]
    assert "| 3 | 72.00 ± 2.00 | 72.00 ± 2.00 | 72.00 ± 2.00 |" in efficient
    assert "| 69.00 ± 0.00 |" in original and "| 0.958 |" in original
    single = dict(result, rows={"gp_efficient": [compare_run(0.70, 0)]})
    assert "| 1 | 70.00 | 70.00 | 70.00 |" in compare.table([single])
