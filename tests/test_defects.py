"""Regression tests for reported defects of the globalpointer_spans component."""
import numpy
import spacy
from thinc.api import fix_random_seed

from nested_data import NESTED, SMALL_TOK2VEC, make_examples

NAME = "globalpointer_spans"


def build_nlp(**settings):
    nlp = spacy.blank("zh")
    model = {"@architectures": "spacy-globalpointer.EfficientGlobalPointer.v1", "head_size": 16, "tok2vec": SMALL_TOK2VEC}
    nlp.add_pipe(NAME, config={"model": model, **settings})
    return nlp


def train(nlp, examples, steps: int = 20, seed: int = 0):
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.005
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return nlp


def head_weights(nlp):
    torch_head = nlp.get_pipe(NAME).model.get_ref("head").layers[0].shims[0]._model
    return {name: tensor.detach().clone().numpy() for name, tensor in torch_head.state_dict().items()}


# ----------------------------------------------------------------------------- 1. re-initialising


def test_second_initialize_starts_the_head_over():
    examples = make_examples(build_nlp(), NESTED)
    fresh = build_nlp()
    fix_random_seed(1)
    fresh.initialize(lambda: examples)
    nlp = train(build_nlp(), examples)
    trained = head_weights(nlp)
    fix_random_seed(1)
    nlp.initialize(lambda: examples)
    reinitialised = head_weights(nlp)
    assert any(not numpy.allclose(trained[k], reinitialised[k]) for k in trained)
    expected = head_weights(fresh)
    for key, value in expected.items():
        numpy.testing.assert_allclose(reinitialised[key], value)
