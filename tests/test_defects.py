"""Regression tests for reported defects of the globalpointer_spans component."""
import shutil
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from thinc.api import Config, fix_random_seed

from spacy_globalpointer import fit_thresholds
from spacy_globalpointer.thresholds import fit_pipeline_thresholds

from nested_data import FLAT, NESTED, SMALL_TOK2VEC, make_examples
from util import build_nlp, train, transformer_nlp

NAME = "globalpointer_spans"


def head_weights(nlp):
    torch_head = nlp.get_pipe(NAME).model.get_ref("head").layers[0].shims[0]._model
    return {name: tensor.detach().clone().numpy() for name, tensor in torch_head.state_dict().items()}


# ----------------------------------------------------------------------------- 1. re-initialising


def test_second_initialize_starts_the_head_over():
    examples = make_examples(build_nlp(), NESTED)
    fresh = build_nlp()
    fix_random_seed(1)
    fresh.initialize(lambda: examples)
    nlp = train(build_nlp(), examples, 20)
    trained = head_weights(nlp)
    fix_random_seed(1)
    nlp.initialize(lambda: examples)
    reinitialised = head_weights(nlp)
    assert any(not numpy.allclose(trained[k], reinitialised[k]) for k in trained)
    expected = head_weights(fresh)
    for key, value in expected.items():
        numpy.testing.assert_allclose(reinitialised[key], value)


# ----------------------------------------------------------------------------- 2. settings at load time


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    nlp = build_nlp()
    train(nlp, make_examples(nlp, NESTED), steps=30)
    path = tmp_path_factory.mktemp("saved") / "model"
    nlp.to_disk(path)
    return path


TEXT = NESTED[0][0]  # 19 tokens, no whitespace


def n_cells(n_tokens: int, n_labels: int, max_length: int) -> int:
    return n_labels * sum(min(max_length, n_tokens - start) for start in range(n_tokens))


def load_with(path, **settings):
    return spacy.load(path, config={"components": {NAME: settings}})


def test_settings_given_at_load_time_are_used(saved_model):
    nlp = load_with(saved_model, threshold=0.0, max_length=4, write_ents=False)
    pipe = nlp.get_pipe(NAME)
    config = nlp.config["components"][NAME]
    for key in ("threshold", "max_length", "write_ents", "ents_strategy"):
        assert pipe.cfg[key] == config[key], key
    doc = nlp(TEXT)
    # threshold 0: every span up to max_length tokens is predicted, none longer
    assert len(doc.spans["sc"]) == n_cells(len(doc), len(pipe.labels), 4)
    assert max(len(span) for span in doc.spans["sc"]) == 4
    assert not doc.has_annotation("ENT_IOB")


def test_ents_strategy_given_at_load_time_is_used(saved_model):
    nlp = load_with(saved_model, threshold=0.0, ents_strategy="length")
    doc = nlp(TEXT)
    # every span is predicted: "length" keeps one span covering the whole doc
    assert [(ent.start, ent.end) for ent in doc.ents] == [(0, len(doc))]


def test_label_thresholds_in_config_cfg_are_used(saved_model, tmp_path):
    labels = spacy.load(saved_model).get_pipe(NAME).labels
    nlp = load_edited(saved_model, tmp_path, threshold=0.0, label_thresholds={"PER": 1.0})
    assert nlp.get_pipe(NAME).cfg["label_thresholds"] == {"PER": 1.0}
    doc = nlp(TEXT)
    found = {span.label_ for span in doc.spans["sc"]}
    assert found == set(labels) - {"PER"}


def load_edited(path, tmp_path, **settings):
    """Load a copy of the pipeline at ``path`` whose config.cfg has ``settings`` written in."""
    copy = tmp_path / "edited"
    shutil.copytree(path, copy)
    config = Config().from_disk(copy / "config.cfg")
    config["components"][NAME].update(settings)
    config.to_disk(copy / "config.cfg")
    return spacy.load(copy)


def test_edited_config_cfg_takes_effect(saved_model, tmp_path):
    nlp = load_edited(saved_model, tmp_path, threshold=0.0, max_length=2)
    doc = nlp(TEXT)
    assert len(doc.spans["sc"]) == n_cells(len(doc), len(nlp.get_pipe(NAME).labels), 2)


def test_fitted_thresholds_are_in_the_config_and_survive_saving(saved_model, tmp_path):
    nlp = spacy.load(saved_model)
    references = [eg.reference for eg in make_examples(nlp, NESTED)]
    fit_pipeline_thresholds(nlp, references)
    fitted = nlp.get_pipe(NAME).cfg["label_thresholds"]
    assert fitted and nlp.config["components"][NAME]["label_thresholds"] == fitted
    nlp.to_disk(tmp_path / "fitted")
    saved_config = Config().from_disk(tmp_path / "fitted" / "config.cfg")
    assert saved_config["components"][NAME]["label_thresholds"] == pytest.approx(fitted)
    loaded = spacy.load(tmp_path / "fitted")
    assert loaded.get_pipe(NAME).cfg["label_thresholds"] == pytest.approx(fitted)
    assert loaded.config["components"][NAME]["label_thresholds"] == pytest.approx(fitted)


def test_thresholds_saved_only_in_cfg_are_reported(saved_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(saved_model, copy)
    cfg = srsly.read_json(copy / NAME / "cfg")
    cfg["label_thresholds"] = {"PER": 0.3}
    srsly.write_json(copy / NAME / "cfg", cfg)
    with pytest.warns(UserWarning, match="label_thresholds"):
        nlp = spacy.load(copy)
    assert nlp.get_pipe(NAME).cfg["label_thresholds"] == {}


# ----------------------------------------------------------------------------- 3. mixed precision on a CPU


def build_mixed_precision_nlp(**model_settings):
    nlp = spacy.blank("zh")
    model = {
        "@architectures": "spacy-globalpointer.EfficientGlobalPointer.v1",
        "head_size": 16,
        "tok2vec": SMALL_TOK2VEC,
        "mixed_precision": True,
        **model_settings,
    }
    nlp.add_pipe(NAME, config={"model": model})
    return nlp


def test_mixed_precision_on_cpu_trains_in_fp32_with_a_warning():
    nlp = build_mixed_precision_nlp()
    examples = make_examples(nlp, NESTED)
    with pytest.warns(UserWarning, match="mixed_precision"):
        optimizer = nlp.initialize(lambda: examples)
    losses = [nlp.update(examples, sgd=optimizer)[NAME] for _ in range(3)]
    assert all(numpy.isfinite(losses)) and losses[-1] < losses[0]


def test_grad_scaler_config_reaches_the_scaler():
    nlp = build_mixed_precision_nlp(grad_scaler_config={"init_scale": 1024.0, "growth_interval": 7})
    assert nlp.config["components"][NAME]["model"]["grad_scaler_config"]["growth_interval"] == 7
    with pytest.warns(UserWarning, match="mixed_precision"):
        nlp.initialize(lambda: make_examples(nlp, NESTED))
    scaler = nlp.get_pipe(NAME).model.get_ref("head").layers[0].shims[0]._grad_scaler
    assert scaler._growth_interval == 7 and float(scaler._scale[0]) == 1024.0
    assert not scaler._enabled  # no GPU: scaling off


# ----------------------------------------------------------------------------- 4. earlier entities


DRUG_TEXT = "北京大学附属医院的张医生说阿司匹林很有效。"


def with_ruler(path, patterns, **settings):
    nlp = spacy.load(path, config={"components": {NAME: settings}} if settings else {})
    ruler = nlp.add_pipe("entity_ruler", before=NAME)
    ruler.add_patterns(patterns)
    return nlp


def ent_tuples(doc):
    return [(ent.start, ent.end, ent.label_) for ent in doc.ents]


def test_write_ents_keeps_earlier_entities_that_do_not_conflict(saved_model):
    nlp = with_ruler(saved_model, [{"label": "DRUG", "pattern": "阿司匹林"}])
    doc = nlp(DRUG_TEXT)
    assert (13, 17, "DRUG") in ent_tuples(doc)
    predicted = [ent for ent in ent_tuples(doc) if ent[2] != "DRUG"]
    assert predicted and set(predicted) <= {(s.start, s.end, s.label_) for s in doc.spans["sc"]}


def test_write_ents_replaces_earlier_entities_that_overlap_its_spans(saved_model):
    nlp = with_ruler(saved_model, [{"label": "GPE", "pattern": "北京"}, {"label": "DRUG", "pattern": "阿司匹林"}])
    doc = nlp(DRUG_TEXT)
    ents = ent_tuples(doc)
    assert (0, 2, "GPE") not in ents and any(start == 0 for start, _, _ in ents)
    assert (13, 17, "DRUG") in ents


def test_ents_overwrite_drops_earlier_entities(saved_model):
    nlp = with_ruler(saved_model, [{"label": "DRUG", "pattern": "阿司匹林"}], ents_overwrite=True)
    assert nlp.get_pipe(NAME).cfg["ents_overwrite"] is True
    doc = nlp(DRUG_TEXT)
    assert "DRUG" not in {label for _, _, label in ent_tuples(doc)}
    assert ent_tuples(doc)


# ----------------------------------------------------------------------------- 5. per-label thresholds


def test_label_thresholds_for_an_unknown_label_fail_at_initialize():
    nlp = build_nlp(label_thresholds={"DRUG": 0.3, "PER": 0.4})
    with pytest.raises(ValueError, match=r"DRUG.*known labels.*PER"):
        nlp.initialize(lambda: make_examples(nlp, NESTED))


def test_label_thresholds_for_an_unknown_label_fail_at_load(saved_model, tmp_path):
    with pytest.raises(ValueError, match=r"DRUG.*known labels.*PER"):
        load_edited(saved_model, tmp_path, label_thresholds={"DRUG": 0.3})


# Whitespace tokens (double spaces, newlines) the component never starts or ends a span on.
SPACED = [
    ("北京  大学的张三\n说肺癌  很危险。", [(0, 2, "LOC"), (0, 5, "ORG"), (7, 9, "PER"), (11, 13, "DIS")]),
    ("上海\n\n复旦  大学的李四。", [(0, 2, "LOC"), (3, 9, "ORG"), (10, 12, "PER")]),
    ("王五  得了糖尿病\n。", [(0, 2, "PER"), (5, 8, "DIS")]),
]


def test_fitted_f1_is_the_f1_that_evaluate_reports_on_docs_with_whitespace():
    nlp = spacy.blank("zh")
    model = {"@architectures": "spacy-globalpointer.EfficientGlobalPointer.v1", "head_size": 16,
             "tok2vec": SMALL_TOK2VEC, "initial_probability": None}  # untrained: about half of all spans
    nlp.add_pipe(NAME, config={"model": model})
    examples = make_examples(nlp, SPACED)
    assert any(token.is_space for eg in examples for token in eg.reference)
    fix_random_seed(0)
    nlp.initialize(lambda: examples)
    fits = fit_pipeline_thresholds(nlp, [eg.reference for eg in examples], grid=[0.5])
    per_type = nlp.evaluate(examples)["spans_sc_per_type"]
    assert any(fit.f1 > 0 for fit in fits.values())
    for label, fit in fits.items():
        assert fit.f1 == pytest.approx(per_type[label]["f"]), label


def fit_cli(*args):
    return fit_thresholds.main([str(arg) for arg in args])


@pytest.fixture()
def heldout(saved_model, tmp_path):
    path = tmp_path / "heldout.spacy"
    DocBin(docs=[eg.reference for eg in make_examples(spacy.blank("zh"), NESTED)]).to_disk(path)
    return path


def test_fit_thresholds_grid_step_zero_is_a_usage_error(saved_model, heldout, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit_cli(saved_model, heldout, "--output", tmp_path / "out", "--grid-step", 0)
    assert exit_info.value.code == 2
    assert "--grid-step" in capsys.readouterr().err


def test_fit_thresholds_needs_an_output(saved_model, heldout, capsys):
    with pytest.raises(SystemExit) as exit_info:
        fit_cli(saved_model, heldout)
    assert exit_info.value.code == 2 and "--output" in capsys.readouterr().err


def test_fit_thresholds_does_not_overwrite_its_input_unless_asked(saved_model, heldout, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    before = (model / "config.cfg").read_text()
    with pytest.raises(SystemExit) as exit_info:
        fit_cli(model, heldout, "--output", model / "." )
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (model / "config.cfg").read_text() == before
    assert fit_cli(model, heldout, "--output", model, "--overwrite") == 0
    assert spacy.load(model).get_pipe(NAME).cfg["label_thresholds"]


# ----------------------------------------------------------------------------- 6. listener input width

def test_empty_first_training_doc_behind_a_listener(tmp_path):
    pytest.importorskip("spacy_transformers")
    from tiny_bert import write_tiny_bert

    bert_dir = write_tiny_bert(tmp_path / "bert", [text for text, _ in NESTED], hidden_size=32, seed=0)
    fix_random_seed(0)
    nlp = transformer_nlp(Path(bert_dir))
    examples = make_examples(nlp, [("", [])] + NESTED)
    optimizer = nlp.initialize(lambda: examples)
    assert nlp.get_pipe(NAME).model.get_ref("head").get_dim("nI") == 32
    losses = [nlp.update(examples, sgd=optimizer)[NAME] for _ in range(2)]
    assert all(loss > 0 for loss in losses)


# ----------------------------------------------------------------------------- 7. spans key of the corpus


def test_initialize_warns_when_no_training_doc_has_the_spans_key():
    nlp = build_nlp()  # spans_key "sc"
    examples = make_examples(nlp, NESTED, key="nested")
    for eg in examples:  # a converter's flat subset, as doc.ents
        eg.reference.set_ents(spacy.util.filter_spans(eg.reference.spans["nested"]), default="outside")
    with pytest.warns(UserWarning, match=r"doc\.spans\['sc'\].*\['nested'\]"):
        nlp.initialize(lambda: examples)


def test_initialize_warns_before_failing_for_want_of_labels():
    nlp = build_nlp()
    with pytest.warns(UserWarning, match="nested"), pytest.raises(ValueError):
        nlp.initialize(lambda: make_examples(nlp, NESTED, key="nested"))


def test_initialize_does_not_warn_for_the_right_key_or_a_flat_corpus(recwarn):
    nlp = build_nlp()
    nlp.initialize(lambda: make_examples(nlp, NESTED))
    nlp = build_nlp()
    nlp.initialize(lambda: make_examples(nlp, FLAT, as_ents=True))
    assert not [w for w in recwarn if "doc.spans" in str(w.message)]
