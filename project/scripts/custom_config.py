"""Adapt a training config to the language of your own data.

    python scripts/custom_config.py configs/cpu.cfg LANG configs/custom.cfg

Sets ``[nlp] lang``; for a language other than Chinese the character tokenizer of the shipped configs
(``spacy.zh.ChineseTokenizer``) is replaced by the language's default rule-based tokenizer, the one
``spacy_globalpointer.convert --lang LANG`` tokenizes the training data with. Variables such as
``${paths.train}`` are kept as they are.
"""
import argparse
from pathlib import Path

from spacy.util import load_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="config to start from, e.g. configs/cpu.cfg")
    parser.add_argument("lang", help="spaCy language code of the data, e.g. en, de, zh")
    parser.add_argument("output", type=Path, help="where to write the adapted config")
    args = parser.parse_args(argv)
    config = load_config(args.config, interpolate=False)
    config["nlp"]["lang"] = args.lang
    if args.lang != "zh":
        config["nlp"]["tokenizer"] = {"@tokenizers": "spacy.Tokenizer.v1"}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(args.output, interpolate=False)
    print(f"wrote {args.output} (lang {args.lang})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
