"""Per-label thresholds: fitting (spacy_globalpointer.thresholds) and its CLI (fit_thresholds)."""
import json
import runpy
import sys

import numpy
import pytest
import spacy
from spacy.tokens import DocBin, Span
from spacy.training import Example

from spacy_globalpointer import fit_thresholds
from spacy_globalpointer.decoding import probability_to_logit
from spacy_globalpointer.thresholds import (
    DEFAULT_GRID,
    collect_candidates,
    fit_label_thresholds,
    fit_pipeline_thresholds,
    label_f1_curve,
)

TEXTS = [
    ("北京大学的张医生说肺癌很危险。", [(0, 4, "ORG"), (0, 2, "LOC"), (5, 6, "PER")]),
    ("他在上海得了糖尿病。", [(2, 4, "LOC"), (0, 1, "PER")]),
    ("张三去了广州。", [(0, 2, "PER"), (4, 6, "LOC")]),
]


def test_f1_curve_counts_candidates_above_threshold():
    curve = label_f1_curve([0.9, 0.6, 0.3], [True, False, True], n_gold=3, grid=[0.5, 0.2, 0.95])
    # t=0.5: predicted 0.9, 0.6 -> tp 1, pred 2, gold 3 -> 2/5; t=0.2: tp 2, pred 3 -> 4/6; t=0.95: 0
    numpy.testing.assert_allclose(curve, [0.4, 4 / 6, 0.0])


def test_fit_recovers_shifted_optima():
    rng = numpy.random.default_rng(0)
    # label LOW: positives score 0.21-0.45, negatives below 0.18 -> best threshold 0.2 (F1 1.0)
    low_pos = rng.uniform(0.21, 0.45, 40)
    low_neg = rng.uniform(0.06, 0.18, 60)
    # label HIGH: positives above 0.82, negatives 0.5-0.78 -> best 0.8 (0.5 would predict every negative)
    high_pos = rng.uniform(0.82, 0.99, 30)
    high_neg = rng.uniform(0.5, 0.78, 50)
    candidates = {
        "LOW": (numpy.concatenate([low_pos, low_neg]), [True] * 40 + [False] * 60),
        "HIGH": (numpy.concatenate([high_pos, high_neg]), [True] * 30 + [False] * 50),
        # label MISS: one gold span never proposed -> any threshold gives the same F1; keep the default
        "MISS": (numpy.asarray([0.3]), [False]),
    }
    n_gold = {"LOW": 40, "HIGH": 30, "MISS": 1, "UNSEEN": 0}
    fits = fit_label_thresholds(candidates, n_gold, grid=DEFAULT_GRID, default=0.5)
    assert fits["LOW"].threshold == pytest.approx(0.2)
    assert fits["HIGH"].threshold == pytest.approx(0.8)
    assert fits["LOW"].f1 == pytest.approx(1.0) and fits["HIGH"].f1 == pytest.approx(1.0)
    assert fits["LOW"].f1_default == pytest.approx(0.0)
    assert fits["HIGH"].f1_default < 0.6
    assert fits["MISS"].threshold == pytest.approx(0.5)
    assert "UNSEEN" not in fits  # no held-out support: keeps the global threshold


def _pipeline():
    nlp = spacy.blank("zh")
    nlp.add_pipe("globalpointer_spans", config={"max_length": 8})
    examples = []
    for text, spans in TEXTS:
        ref = nlp.make_doc(text)
        ref.spans["sc"] = [Span(ref, s, e, label=label) for s, e, label in spans]
        examples.append(Example(nlp.make_doc(text), ref))
    nlp.initialize(lambda: examples)
    return nlp, [eg.reference for eg in examples]


def _fake_predict(pipe, references, gold_prob, decoy_prob):
    """Logits where gold spans score ``gold_prob[label]`` and one decoy per doc and label ``decoy_prob``."""
    by_text = {ref.text: ref for ref in references}
    label_ids = {label: i for i, label in enumerate(pipe.labels)}
    band = pipe.cfg["max_length"]

    def predict(docs):
        out = []
        for doc in docs:
            n = len(doc)
            logits = numpy.full((len(pipe.labels), n, min(band, n)), -20.0, dtype="float32")
            for label, c in label_ids.items():
                logits[c, n - 1, 0] = probability_to_logit([decoy_prob[label]])[0]  # last char: never gold
            for span in by_text[doc.text].spans["sc"]:
                logits[label_ids[span.label_], span.start, len(span) - 1] = probability_to_logit(
                    [gold_prob[span.label_]]
                )[0]
            out.append(logits)
        return out

    return predict


def test_fit_pipeline_thresholds_and_persist(tmp_path, monkeypatch):
    nlp, references = _pipeline()
    pipe = nlp.get_pipe("globalpointer_spans")
    # PER is under-confident (gold at 0.33, decoys 0.12): best 0.15-0.3; LOC/ORG decoys over-confident (0.68)
    gold_prob = {"PER": 0.33, "LOC": 0.92, "ORG": 0.92}
    decoy_prob = {"PER": 0.12, "LOC": 0.68, "ORG": 0.68}
    monkeypatch.setattr(pipe, "predict", _fake_predict(pipe, references, gold_prob, decoy_prob))
    # with the global 0.5: PER never found, decoys of LOC/ORG predicted
    doc = nlp(TEXTS[0][0])
    assert "PER" not in {s.label_ for s in doc.spans["sc"]}
    fits = fit_pipeline_thresholds(nlp, references)
    thresholds = pipe.cfg["label_thresholds"]
    assert 0.12 < thresholds["PER"] < 0.33
    assert 0.68 < thresholds["LOC"] < 0.92 and 0.68 < thresholds["ORG"] < 0.92
    assert all(fit.f1 == pytest.approx(1.0) for fit in fits.values())
    for text, spans in TEXTS:
        doc = nlp(text)
        assert {(s.start, s.end, s.label_) for s in doc.spans["sc"]} == set(spans)
    # saved with the pipeline and used after loading
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    # (srsly's JSON reader may change the last bit of a float: compare approximately)
    assert loaded.get_pipe("globalpointer_spans").cfg["label_thresholds"] == pytest.approx(thresholds)
    nlp2 = spacy.util.load_model_from_config(nlp.config)  # the fitted thresholds are in the config
    nlp2.from_bytes(nlp.to_bytes())
    assert nlp2.get_pipe("globalpointer_spans").cfg["label_thresholds"] == pytest.approx(thresholds)
    # collect_candidates sees the same gold counts as the references hold
    _, n_gold = collect_candidates(nlp, references)
    assert n_gold == {"ORG": 1, "LOC": 3, "PER": 3}


def test_cli_fits_and_saves(tmp_path, capsys):
    nlp, references = _pipeline()
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=references).to_disk(tmp_path / "heldout.spacy")
    code = fit_thresholds.main(
        [str(tmp_path / "model"), str(tmp_path / "heldout.spacy"), "--output", str(tmp_path / "out"),
         "--report", str(tmp_path / "report.json")]
    )
    assert code == 0
    assert "label thresholds" in capsys.readouterr().out
    loaded = spacy.load(tmp_path / "out")
    thresholds = loaded.get_pipe("globalpointer_spans").cfg["label_thresholds"]
    assert set(thresholds) == {"ORG", "LOC", "PER"}
    assert all(any(abs(t - g) < 1e-6 for g in DEFAULT_GRID) for t in thresholds.values())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["thresholds"] == pytest.approx(thresholds)
    # the input model is untouched when --output is given
    assert spacy.load(tmp_path / "model").get_pipe("globalpointer_spans").cfg["label_thresholds"] == {}
    loaded(TEXTS[0][0])  # runs with the fitted thresholds


@pytest.mark.filterwarnings("ignore:'spacy_globalpointer.fit_thresholds' found in sys.modules")
def test_cli_module_main(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["fit_thresholds"])
    # ``python -m spacy_globalpointer.fit_thresholds`` runs this module as __main__ (in-process here: fast)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("spacy_globalpointer.fit_thresholds", run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 2  # no arguments: argparse usage error
    assert "HELDOUT" in capsys.readouterr().err.upper()
