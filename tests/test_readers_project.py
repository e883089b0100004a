"""The project's custom workflow: the config adapted to the language of the data."""
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.util import load_config

PROJECT = Path(__file__).parents[1] / "project"


@pytest.mark.parametrize("lang,tokenizer", [("de", "spacy.Tokenizer.v1"), ("zh", "spacy.zh.ChineseTokenizer")])
def test_custom_config_sets_language_and_tokenizer(tmp_path: Path, lang: str, tokenizer: str) -> None:
    output = tmp_path / "custom.cfg"
    script = PROJECT / "scripts" / "custom_config.py"
    subprocess.run([sys.executable, str(script), str(PROJECT / "configs" / "cpu.cfg"), lang, str(output)], check=True)
    config = load_config(output, interpolate=False)
    assert config["nlp"]["lang"] == lang and config["nlp"]["tokenizer"]["@tokenizers"] == tokenizer
    assert config["corpora"]["train"]["path"] == "${paths.train}"
    original = load_config(PROJECT / "configs" / "cpu.cfg", interpolate=False)
    assert config["components"] == original["components"] and config["training"] == original["training"]
