"""Reader settings that only some formats use (each reader reads the fields it needs)."""
from dataclasses import dataclass
from typing import Optional

LS_ANNOTATION_CHOICES = ("first", "last", "most-recent")
LS_SOURCES = ("annotations", "predictions")
SCHEMES = ("auto", "bio", "iob1", "bioes", "bmes")
NO_SPACE_LANGS = frozenset({"zh", "ja", "th", "lo", "km", "my", "bo"})


@dataclass(frozen=True)
class ReadOptions:
    """``text_key``: the Label Studio ``data`` field with the text. ``ls_annotation``: which non-cancelled
    annotation of a task is used. ``ls_source``: read human ``annotations`` or model ``predictions``.
    ``scheme``: the CoNLL tag scheme (auto accepts B/I/M/E/S/L/U prefixes). ``tag_columns``: how many
    trailing CoNLL columns are tag layers (None: every column after the token). ``lang``: spaCy language
    code, for CoNLL token spacing (no spaces between tokens for zh, ja, th, ...).
    """

    text_key: str = "text"
    ls_annotation: str = "last"
    ls_source: str = "annotations"
    scheme: str = "auto"
    tag_columns: Optional[int] = None
    lang: str = "zh"
