"""Helpers shared by the tests: build and train a small pipeline, compare what it writes, run a fresh process."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import numpy
import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Config, fix_random_seed

from nested_data import SMALL_TOK2VEC

PIPE = "globalpointer_spans"
EFFICIENT = "spacy-globalpointer.EfficientGlobalPointer.v1"
ORIGINAL = "spacy-globalpointer.GlobalPointer.v1"
ARCHITECTURES = [EFFICIENT, ORIGINAL]
Output = Dict[str, Any]


def build_nlp(
    architecture: str = EFFICIENT, *, head_size: int = 16, tok2vec: Optional[Dict[str, Any]] = SMALL_TOK2VEC, **settings: Any
) -> Language:
    """A blank Chinese pipeline with the component; ``tok2vec=None`` keeps the component's default encoder."""
    nlp = spacy.blank("zh")
    model: Dict[str, Any] = {"@architectures": architecture, "head_size": head_size}
    if tok2vec is not None:
        model["tok2vec"] = tok2vec
    nlp.add_pipe(PIPE, config={"model": model, **settings})
    return nlp


def train(nlp: Language, examples: List[Example], steps: int, *, seed: int = 0, learn_rate: float = 0.005) -> Language:
    """Initialise on ``examples`` and update on all of them ``steps`` times, without dropout."""
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = learn_rate
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    return nlp


def doc_output(doc: Doc, key: str = "sc") -> Output:
    """Everything the component writes, as plain JSON-able data."""
    return {
        "spans": [[span.start, span.end, span.label_] for span in doc.spans[key]],
        "scores": [float(score) for score in doc.spans[key].attrs["scores"]],
        "ents": [[ent.start, ent.end, ent.label_] for ent in doc.ents],
    }


def outputs(nlp: Language, texts: Iterable[Union[str, Doc]], **pipe_settings: Any) -> List[Output]:
    """``doc_output`` of every doc of ``nlp.pipe(texts, **pipe_settings)``."""
    return [doc_output(doc) for doc in nlp.pipe(texts, **pipe_settings)]


def assert_same_output(expected: List[Output], got: List[Output]) -> None:
    """The same fields, spans and ents; scores equal up to float noise."""
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        assert have.keys() == want.keys()
        for field, value in want.items():
            if field == "scores":
                numpy.testing.assert_allclose(have[field], value, rtol=1e-5, atol=1e-6)
            else:
                assert have[field] == value, field


def run(*args: Any, cwd: Optional[Path] = None, stdin: str = "", env: Optional[Dict[str, str]] = None, timeout: float = 900) -> str:
    """Run a command to completion; returns its stdout, fails the test with its output if it fails."""
    command = [str(arg) for arg in args]
    result = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_python(script: str, *args: Any, **run_settings: Any) -> Any:
    """Run ``script`` in a fresh interpreter (this one's); returns the JSON it prints."""
    return json.loads(run(sys.executable, "-c", script, *args, **run_settings))


PREDICT_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import spacy
    imported_before_load = "spacy_globalpointer" in sys.modules
    nlp = spacy.load(sys.argv[1])
    import spacy_globalpointer
    out = []
    for doc in nlp.pipe(json.loads(sys.stdin.read())):
        group = doc.spans["sc"]
        out.append({
            "spans": [[s.start, s.end, s.label_] for s in group],
            "scores": [float(x) for x in group.attrs["scores"]],
            "ents": [[e.start, e.end, e.label_] for e in doc.ents],
        })
    print(json.dumps({
        "imported_before_load": imported_before_load,
        "plugin_file": spacy_globalpointer.__file__,
        "pipe_names": nlp.pipe_names,
        "outputs": out,
    }))
    """
)


def predict_in_fresh_process(python: Union[str, Path], pipeline: Union[str, Path], texts: List[str], **run_settings: Any) -> Dict[str, Any]:
    """Load ``pipeline`` with ``spacy.load`` in a fresh, isolated ``python`` (nothing imported by hand) and run it.

    RETURNS: whether the plugin was imported before ``spacy.load``, the plugin's file, the pipe names,
    and ``doc_output`` per text under ``"outputs"``.
    """
    return json.loads(run(python, "-I", "-c", PREDICT_SCRIPT, pipeline, stdin=json.dumps(texts), **run_settings))


TRANSFORMER_CONFIG = """
[nlp]
lang = "zh"
pipeline = ["transformer", "globalpointer_spans"]

[components]

[components.transformer]
factory = "transformer"
max_batch_items = 4096

[components.transformer.model]
@architectures = "spacy-transformers.TransformerModel.v3"
name = "{bert_dir}"
tokenizer_config = {{"use_fast": true}}
transformer_config = {{}}
mixed_precision = false
grad_scaler_config = {{}}

[components.transformer.model.get_spans]
@span_getters = "spacy-transformers.strided_spans.v1"
window = 64
stride = 48

[components.globalpointer_spans]
factory = "globalpointer_spans"
spans_key = "{spans_key}"
max_length = {max_length}

[components.globalpointer_spans.model]
@architectures = "{architecture}"
head_size = 64

[components.globalpointer_spans.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = {grad_factor}
upstream = "*"

[components.globalpointer_spans.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


def transformer_nlp(
    bert_dir: Path, architecture: str = EFFICIENT, *, max_length: Optional[int] = None, grad_factor: float = 1.0, spans_key: str = "sc"
) -> Language:
    """The component over a ``TransformerListener`` of a local BERT (``tiny_bert.write_tiny_bert``), strided windows of 64."""
    text = TRANSFORMER_CONFIG.format(
        bert_dir=bert_dir.as_posix(),
        architecture=architecture,
        max_length="null" if max_length is None else max_length,
        grad_factor=float(grad_factor),
        spans_key=spans_key,
    )
    return spacy.util.load_model_from_config(Config().from_str(text), auto_fill=True, validate=True)


TINY_CNN_TRAIN_CONFIG = """
[paths]
train = null
dev = null

[nlp]
lang = "{lang}"
pipeline = ["globalpointer_spans"]
batch_size = 8

[components]

[components.globalpointer_spans]
factory = "globalpointer_spans"

[components.globalpointer_spans.model]
@architectures = "spacy-globalpointer.EfficientGlobalPointer.v1"
head_size = 16

[components.globalpointer_spans.model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 64
depth = 2
embed_size = 500
window_size = 1
maxout_pieces = 3
subword_features = true

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${{paths.train}}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${{paths.dev}}

[training]
seed = 0
dropout = 0.0
max_steps = 80
eval_frequency = {eval_frequency}
patience = 0

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.005

[training.batcher]
@batchers = "spacy.batch_by_sequence.v1"
size = 8
"""


def tiny_cnn_train_config(lang: str = "zh", eval_frequency: int = 20) -> str:
    """A partial ``spacy train`` config: the component over a small CNN, 80 steps, corpora from ``paths``."""
    return TINY_CNN_TRAIN_CONFIG.format(lang=lang, eval_frequency=eval_frequency)
