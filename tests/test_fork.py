"""Importing the package changes nothing in forked children; a forked child that runs the head does not hang."""
import textwrap

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
        return [torch.get_num_threads(), len(nlp(text).spans["sc"]), torch.get_num_threads()]

    print(json.dumps({"parent": torch.get_num_threads(), "idle_child": idle_child,
                      "head_child": in_child(run_head), "expected": expected}))
    """
)


def test_fork_children_keep_their_threads_until_they_run_the_head():
    threads = run_python(FORK_SCRIPT, timeout=300)
    assert threads["parent"] == 3
    # No import-time fork hook: a child that does not run the head keeps the parent's setting.
    assert threads["idle_child"] == 3
    # A child that runs the head switches itself to one thread, and finishes (no OpenMP hang).
    assert threads["head_child"] == [3, threads["expected"], 1]
