"""Efficient GlobalPointer for spaCy: nested named-entity recognition."""
from .pipe import GlobalPointerSpans, make_globalpointer_spans
from .model import build_efficient_globalpointer, build_globalpointer

__all__ = [
    "GlobalPointerSpans",
    "make_globalpointer_spans",
    "build_efficient_globalpointer",
    "build_globalpointer",
]
