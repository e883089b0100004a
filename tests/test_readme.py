"""The README's code runs as written: the quickstart, and every ``ini`` config through
``spacy init fill-config`` and a few steps of ``spacy train`` (the CLI commands' own
functions, in-process: much faster than a fresh interpreter per command)."""
import re
from pathlib import Path

import pytest
import spacy
from spacy.cli.init_config import fill_config
from spacy.cli.train import train
from spacy.tokens import DocBin
from thinc.api import fix_random_seed

from nested_data import NESTED, make_examples

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(encoding="utf8"), flags=re.M | re.S)
PYTHON_BLOCKS = [code for language, code in BLOCKS if language == "python"]
INI_BLOCKS = [code for language, code in BLOCKS if language == "ini"]
HUB_MODEL = re.compile(r'^name = "[^"]*"$', flags=re.M)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_readme_has_the_blocks_tested_here():
    assert PYTHON_BLOCKS and "nlp.initialize" in PYTHON_BLOCKS[0]
    assert len(INI_BLOCKS) >= 2 and any("TransformerListener" in block for block in INI_BLOCKS)


def test_quickstart_runs(capsys):
    fix_random_seed(0)
    exec(compile(PYTHON_BLOCKS[0], f"{README}:quickstart", "exec"), {"__name__": "readme_quickstart"})
    assert "ORG" in capsys.readouterr().out  # 50 updates on two docs: the nested ORGs are found


def run_command(command, *args, capsys, **kwargs) -> None:
    """Run a spaCy CLI command's function; its error exit becomes a failure showing its output."""
    try:
        command(*args, **kwargs)
    except SystemExit as exit_info:
        pytest.fail(f"{command.__name__} exited with {exit_info.code}:\n{capsys.readouterr().out}")


@pytest.mark.parametrize("index", range(len(INI_BLOCKS)))
def test_ini_config_fills_and_trains(index, tmp_path, capsys):
    block = INI_BLOCKS[index]
    if HUB_MODEL.search(block):  # no model hub in the tests: a tiny local BERT instead
        pytest.importorskip("spacy_transformers")
        from tiny_bert import write_tiny_bert

        bert_dir = write_tiny_bert(tmp_path / "bert", [text for text, _ in NESTED], seed=0)
        block = HUB_MODEL.sub(f'name = "{Path(bert_dir).as_posix()}"', block)
    (tmp_path / "partial.cfg").write_text(block, encoding="utf8")
    docs = [eg.reference for eg in make_examples(spacy.blank("zh"), NESTED)]
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    DocBin(docs=docs).to_disk(tmp_path / "dev.spacy")
    # python -m spacy init fill-config partial.cfg config.cfg
    run_command(fill_config, tmp_path / "config.cfg", tmp_path / "partial.cfg", capsys=capsys)
    # python -m spacy train config.cfg --output out --paths.train ... --training.max_steps 3
    overrides = {"paths.train": str(tmp_path / "train.spacy"), "paths.dev": str(tmp_path / "dev.spacy"),
                 "training.max_steps": 3, "training.eval_frequency": 3}
    run_command(train, tmp_path / "config.cfg", tmp_path / "out", overrides=overrides, capsys=capsys)
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.get_pipe("globalpointer_spans").labels
