"""Fit per-label probability thresholds for ``globalpointer_spans`` on held-out data.

The component predicts a span when ``sigmoid(logit) > threshold`` of its label
(``cfg["label_thresholds"]``, falling back to ``cfg["threshold"]``). ``fit_label_thresholds``
picks, for each label separately, the grid value that maximises that label's F1 on a held-out
slice. Use a slice carved from the TRAINING data and excluded from training: fitting on the split
you report would make the reported score optimistic.
"""
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from .decoding import decode_spans, drop_spans_with_edges_on, probability_to_logit
from .scorer import annotated_spans

DEFAULT_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, ..., 0.95


class LabelFit(NamedTuple):
    threshold: float
    f1: float
    f1_default: float
    n_gold: int


def label_f1_curve(probabilities: Sequence[float], is_gold: Sequence[bool], n_gold: int,
                   grid: Sequence[float]) -> numpy.ndarray:
    """F1 of one label at each grid threshold; a candidate is predicted when its probability > t.

    ``probabilities`` / ``is_gold``: every candidate span of the label whose probability is above
    the smallest grid value (lower ones are never predicted), and whether it is a gold span.
    ``n_gold``: all gold spans of the label, found or not.
    """
    probs = numpy.asarray(probabilities, dtype="float64")
    gold = numpy.asarray(is_gold, dtype=bool)
    grid = numpy.asarray(grid, dtype="float64")
    predicted = probs[None, :] > grid[:, None]
    tp = (predicted & gold[None, :]).sum(axis=1)
    n_pred = predicted.sum(axis=1)
    denom = n_pred + n_gold
    return numpy.where(denom > 0, 2.0 * tp / numpy.maximum(denom, 1), 0.0)


def fit_label_thresholds(
    candidates: Mapping[str, Tuple[Sequence[float], Sequence[bool]]],
    n_gold: Mapping[str, int],
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    default: float = 0.5,
    min_support: int = 1,
) -> Dict[str, LabelFit]:
    """Per label, the grid threshold with the best F1 (ties: the one closest to ``default``).

    Labels with fewer than ``min_support`` gold spans are left out (they keep ``default``).
    """
    fits: Dict[str, LabelFit] = {}
    grid = numpy.asarray(grid, dtype="float64")
    for label, count in n_gold.items():
        if count < min_support:
            continue
        probs, is_gold = candidates.get(label, ((), ()))
        curve = label_f1_curve(probs, is_gold, count, grid)
        best = curve.max()
        ties = numpy.flatnonzero(numpy.isclose(curve, best))
        choice = ties[numpy.argmin(numpy.abs(grid[ties] - default))]
        f1_default = float(label_f1_curve(probs, is_gold, count, [default])[0])
        fits[label] = LabelFit(float(grid[choice]), float(best), f1_default, int(count))
    return fits


def _component_name(nlp: Language, component: Optional[str]) -> str:
    if component is not None:
        if component not in nlp.pipe_names:
            raise ValueError(f"no component {component!r} in the pipeline {nlp.pipe_names}")
        return component
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == "globalpointer_spans":
            return name
    raise ValueError(f"no globalpointer_spans component in the pipeline {nlp.pipe_names}")


def collect_candidates(
    nlp: Language,
    references: Iterable[Doc],
    *,
    component: Optional[str] = None,
    min_probability: float = DEFAULT_GRID[0],
    batch_size: int = 32,
) -> Tuple[Dict[str, Tuple[List[float], List[bool]]], Dict[str, int]]:
    """Score the held-out docs; return per label (candidate probabilities, is-gold flags) and gold counts.

    Candidates are all spans with probability > ``min_probability`` that the component could
    output: none starts or ends on a whitespace token, as in ``set_annotations``. Gold spans are
    read from the reference docs like the component reads them for training
    (``doc.spans[spans_key]``, else ``doc.ents``); the reference docs must be tokenised like
    ``nlp`` tokenises their text.
    """
    name = _component_name(nlp, component)
    pipe = nlp.get_pipe(name)
    labels = pipe.labels
    floor = probability_to_logit([min_probability] * len(labels))
    candidates: Dict[str, Tuple[List[float], List[bool]]] = {label: ([], []) for label in labels}
    n_gold: Dict[str, int] = {label: 0 for label in labels}
    references = sorted(references, key=len)
    for batch in minibatch(references, size=batch_size):
        docs = [nlp.make_doc(ref.text) for ref in batch]
        for other_name, proc in nlp.pipeline:
            if other_name == name:
                break
            docs = list(proc.pipe(docs))
        logits = pipe.predict(docs)
        for ref, doc, doc_logits in zip(batch, docs, logits):
            if len(doc) != len(ref) or any(a.text != b.text for a, b in zip(doc, ref)):
                raise ValueError(f"reference doc tokenised differently from the pipeline: {ref.text[:50]!r}")
            gold: Set[Tuple[int, int, str]] = {(s.start, s.end, s.label_) for s in annotated_spans(ref, pipe.key)}
            for _, _, label in gold:
                if label in n_gold:
                    n_gold[label] += 1
            if not len(doc):
                continue
            decoded = drop_spans_with_edges_on(decode_spans(doc_logits, floor), doc.to_array("IS_SPACE"))
            for label_id, start, end, score in zip(decoded.labels, decoded.starts, decoded.ends, decoded.scores):
                label = labels[int(label_id)]
                candidates[label][0].append(float(score))
                candidates[label][1].append((int(start), int(end), label) in gold)
    return candidates, n_gold


def fit_pipeline_thresholds(
    nlp: Language,
    references: Iterable[Doc],
    *,
    component: Optional[str] = None,
    grid: Sequence[float] = DEFAULT_GRID,
    min_support: int = 1,
) -> Dict[str, LabelFit]:
    """Fit per-label thresholds on ``references`` and store them in the component's ``cfg`` and config.

    Written into ``nlp.config`` too, they are saved in the pipeline's ``config.cfg``
    (``nlp.to_disk``) and used by ``spacy.load``. Labels without held-out support are removed
    from ``label_thresholds`` (they use ``threshold``).
    """
    name = _component_name(nlp, component)
    pipe = nlp.get_pipe(name)
    candidates, n_gold = collect_candidates(nlp, references, component=name, min_probability=min(grid))
    fits = fit_label_thresholds(candidates, n_gold, grid=grid, default=pipe.cfg["threshold"],
                                min_support=min_support)
    probability_to_logit([fit.threshold for fit in fits.values()])  # validates
    pipe.cfg["label_thresholds"] = {label: fit.threshold for label, fit in fits.items()}
    nlp.get_pipe_config(name)["label_thresholds"] = dict(pipe.cfg["label_thresholds"])
    return fits
