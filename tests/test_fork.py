"""Importing the package changes nothing in forked children; forked workers of a pipeline using it do not hang."""
import textwrap
from pathlib import Path

import pytest

from util import run_python

FORK_SCRIPT = textwrap.dedent(
    """
    import json, os
    import spacy, torch
    from spacy.training import Example
    import spacy_globalpointer  # noqa: F401

    def in_child(work):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, json.dumps(work()).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        return json.loads(os.read(read, 1000))

    torch.set_num_threads(3)
    idle_child = in_child(torch.get_num_threads)

    nlp = spacy.blank("zh")
    nlp.add_pipe("globalpointer_spans", config={"max_length": 500})
    reference = nlp.make_doc("张三在北京。")
    reference.spans["sc"] = [reference.char_span(0, 2, "PER"), reference.char_span(3, 5, "LOC")]
    nlp.initialize(lambda: [Example(nlp.make_doc(reference.text), reference)])
    text = "张三在北京工作。" * 300
    expected = len(nlp(text).spans["sc"])  # The parent's OpenMP pool is now running.

    def run_head():
        return [torch.get_num_threads(), len(nlp(text).spans["sc"])]

    print(json.dumps({"parent": torch.get_num_threads(), "idle_child": idle_child,
                      "head_child": in_child(run_head), "expected": expected}))
    """
)


def test_only_children_of_a_process_using_the_component_run_torch_on_one_thread():
    threads = run_python(FORK_SCRIPT, timeout=300)
    assert threads["parent"] == 3
    # No import-time fork hook: the child of a process that only imported the package keeps its setting.
    assert threads["idle_child"] == 3
    # Once a head is built, forked children run torch on one thread, and finish (no OpenMP hang).
    assert threads["head_child"] == [1, threads["expected"]]


TRANSFORMER_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path
    from nested_data import NESTED, make_examples
    from tiny_bert import write_tiny_bert
    from util import outputs, transformer_nlp

    texts = [text for text, _ in NESTED]
    nlp = transformer_nlp(write_tiny_bert(Path(sys.argv[1]), texts), max_length=16)
    nlp.initialize(lambda: make_examples(nlp, NESTED))
    texts = ["".join(texts) * 60] + texts * 3  # a long doc first, so the parent's OpenMP pool runs
    one_process = outputs(nlp, texts)
    print(json.dumps(one_process == outputs(nlp, texts, n_process=2, batch_size=2)))
    """
)


def test_n_process_2_after_an_upstream_transformer(tmp_path):
    """A forked worker runs the transformer, a torch component, before the head: it must not hang either."""
    pytest.importorskip("spacy_transformers")
    assert run_python(TRANSFORMER_SCRIPT, tmp_path / "bert", cwd=Path(__file__).parent, timeout=300) is True
