"""The ``globalpointer_spans`` pipeline component."""
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
import srsly
from spacy import util
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats1d, Floats3d, Ints2d

from .decoding import (
    OVERLAP_STRATEGIES,
    decode_spans,
    drop_spans_with_edges_on,
    probability_to_logit,
    select_non_overlapping,
)
from .layout import band_width, cell_offset
from .loss import globalpointer_loss
from .model import build_torch_head
from .optimizers import ScaledOptimizer
from .scorer import annotated_spans, score_globalpointer

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-globalpointer.EfficientGlobalPointer.v1"
head_size = 64
use_rope = true
initial_probability = 0.01

[model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
attrs = ["NORM","PREFIX","SUFFIX","SHAPE"]
rows = [5000,1000,2500,2500]
include_static_vectors = false

[model.tok2vec.encode]
@architectures = "spacy-globalpointer.WindowBiLSTMEncoder.v1"
width = 96
window_depth = 2
lstm_depth = 1
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]
# What a saved pipeline's ``cfg`` contributes on loading; every other setting comes from its config.
SAVED_CFG_KEYS = ("labels", "nI")
# ``pipe`` predicts at most this many padded logits (docs x labels x tokens x band) at once.
MAX_BATCH_CELLS = 2**24


@Language.factory(
    "globalpointer_spans",
    assigns=["doc.spans", "doc.ents"],
    default_config={
        "model": DEFAULT_MODEL,
        "spans_key": "sc",
        "threshold": 0.5,
        "label_thresholds": None,
        "max_length": None,
        "write_ents": True,
        "ents_strategy": "score",
        "ents_overwrite": False,
        "learn_rate_scale": 1.0,
        "scorer": {"@scorers": "spacy-globalpointer.spans_scorer.v1"},
    },
    default_score_weights={
        "spans_sc_f": 1.0,
        "spans_sc_p": 0.0,
        "spans_sc_r": 0.0,
        "ents_f": 0.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
    },
)
def make_globalpointer_spans(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats3d]],
    spans_key: str,
    threshold: float,
    label_thresholds: Optional[Dict[str, float]],
    max_length: Optional[int],
    write_ents: bool,
    ents_strategy: str,
    ents_overwrite: bool,
    learn_rate_scale: float,
    scorer: Optional[Callable],
) -> "GlobalPointerSpans":
    """Create a GlobalPointer span finder for (nested) named entities.

    model: a GlobalPointer architecture returning span logits per doc.
    spans_key: the ``doc.spans`` key written, and read for gold spans.
    threshold: probability above which a span is predicted.
    label_thresholds: optional per-label probabilities overriding ``threshold``.
    max_length: longest span in tokens (``None``: no limit); longer spans are
        neither scored nor stored, which keeps memory linear in doc length.
    write_ents: also write a non-overlapping subset of the spans to ``doc.ents``.
    ents_strategy: how ``doc.ents`` resolves overlaps: ``"score"`` keeps the
        most probable span first, ``"length"`` the longest.
    ents_overwrite: drop the entities set by earlier components; by default those
        that do not overlap a span written to ``doc.ents`` are kept.
    learn_rate_scale: multiplies the optimizer's learning rate for this
        component's own weights. With a listener those are the head's only, so
        a randomly initialised head can learn faster than a pretrained encoder
        is fine-tuned.
    scorer: the scoring method.
    """
    return GlobalPointerSpans(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        threshold=threshold,
        label_thresholds=label_thresholds,
        max_length=max_length,
        write_ents=write_ents,
        ents_strategy=ents_strategy,
        ents_overwrite=ents_overwrite,
        learn_rate_scale=learn_rate_scale,
        scorer=scorer,
    )


class GlobalPointerSpans(TrainablePipe):
    """Predict every (possibly nested) labelled span with a GlobalPointer head."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats3d]],
        name: str = "globalpointer_spans",
        *,
        spans_key: str = "sc",
        threshold: float = 0.5,
        label_thresholds: Optional[Dict[str, float]] = None,
        max_length: Optional[int] = None,
        write_ents: bool = True,
        ents_strategy: str = "score",
        ents_overwrite: bool = False,
        learn_rate_scale: float = 1.0,
        scorer: Optional[Callable] = score_globalpointer,
    ) -> None:
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be a positive number of tokens or null, got {max_length}")
        if ents_strategy not in OVERLAP_STRATEGIES:
            raise ValueError(f"ents_strategy must be one of {OVERLAP_STRATEGIES}, got {ents_strategy!r}")
        if not learn_rate_scale > 0:
            raise ValueError(f"learn_rate_scale must be positive, got {learn_rate_scale}")
        probability_to_logit([threshold, *(label_thresholds or {}).values()])
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "spans_key": spans_key,
            "threshold": threshold,
            "label_thresholds": dict(label_thresholds or {}),
            "max_length": max_length,
            "write_ents": write_ents,
            "ents_strategy": ents_strategy,
            "ents_overwrite": ents_overwrite,
            "learn_rate_scale": learn_rate_scale,
        }

    @property
    def key(self) -> str:
        return self.cfg["spans_key"]

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def _head(self) -> Model:
        return self.model.get_ref("head")

    def add_label(self, label: str) -> int:
        """Add a label; returns 0 if it was present already, else 1."""
        if not isinstance(label, str):
            raise ValueError(Errors.E187)
        if label in self.labels:
            return 0
        if self._head.layers:
            raise ValueError(
                f"Cannot add label {label!r} to '{self.name}': its head was built for "
                f"{len(self.labels)} labels. Add labels before initialising."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
    ) -> None:
        """Collect labels (unless given) and build the model from a sample of the data."""
        validate_get_examples(get_examples, "GlobalPointerSpans.initialize")
        if labels is not None:
            for label in labels:
                self.add_label(label)
        sample: List[Doc] = []
        span_keys = set()
        for eg in get_examples():
            span_keys.update(eg.reference.spans.keys())
            if labels is None:
                for span in annotated_spans(eg.reference, self.key):
                    self.add_label(span.label_)
            if len(sample) < 10:
                sample.append(eg.predicted)
        if span_keys and self.key not in span_keys:
            warnings.warn(
                f"No training doc of '{self.name}' has doc.spans[{self.key!r}] (its spans_key); "
                f"they have doc.spans{sorted(span_keys)}. Their gold spans are read from doc.ents "
                f"instead: set spans_key to the corpus's key (and [training.score_weights] to match)."
            )
        self._require_labels()
        self._check_label_thresholds()
        self._head.set_dim("nO", len(self.labels))
        encoder = self.model.get_ref("tok2vec")
        if encoder.has_dim("nO"):
            self._head.set_dim("nI", encoder.get_dim("nO"))
        self.model.initialize(X=sample)
        self.cfg["nI"] = self._head.get_dim("nI")

    def predict(self, docs: Iterable[Doc]) -> List[Floats3d]:
        """Span logits ``(labels, n_tokens, band)`` for each doc."""
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            return [self.model.ops.alloc3f(len(self.labels), 0, 0) for _ in docs]
        self._sync_max_length()
        return self.model.predict(docs)

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs, yielded in order.

        Each buffer of ``batch_size`` docs is predicted in sub-batches of docs of
        similar length holding at most ``MAX_BATCH_CELLS`` padded logits (a doc
        larger than that goes alone), so one long doc does not pad a whole batch.
        """
        error_handler = self.get_error_handler()
        for docs in util.minibatch(stream, size=batch_size):
            failed = set()
            for indices in self._length_batches(docs):
                batch = [docs[i] for i in indices]
                try:
                    self.set_annotations(batch, self.predict(batch))
                except Exception as e:
                    error_handler(self.name, self, batch, e)
                    failed.update(indices)
            yield from (doc for i, doc in enumerate(docs) if i not in failed)

    def _length_batches(self, docs: List[Doc]) -> List[List[int]]:
        """Indices of ``docs``, longest first, cut into batches of at most ``MAX_BATCH_CELLS`` logits."""
        order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))
        batches = []
        start = 0
        while start < len(order):
            n_tokens = len(docs[order[start]])
            cells = max(len(self.labels), 1) * max(n_tokens, 1) * band_width(n_tokens, self.cfg["max_length"])
            size = max(1, MAX_BATCH_CELLS // cells)
            batches.append(order[start : start + size])
            start += size
        return batches

    def set_annotations(self, docs: Iterable[Doc], logits: List[Floats3d]) -> None:
        """Write all spans above threshold to ``doc.spans[key]`` (and a flat subset to ``doc.ents``)."""
        thresholds = self._threshold_logits()
        labels = self.labels
        for doc, doc_logits in zip(docs, logits):
            # A span never starts or ends on whitespace (nor does any gold span).
            is_space = doc.to_array("IS_SPACE")
            decoded = drop_spans_with_edges_on(decode_spans(doc_logits, thresholds), is_space)
            spans = [
                Span(doc, int(start), int(end), label=labels[label])
                for label, start, end in zip(decoded.labels, decoded.starts, decoded.ends)
            ]
            doc.spans[self.key] = SpanGroup(
                doc, name=self.key, spans=spans, attrs={"scores": decoded.scores}
            )
            if self.cfg["write_ents"]:
                chosen = select_non_overlapping(decoded, len(doc), self.cfg["ents_strategy"])
                doc.set_ents(self._with_earlier_ents(doc, [spans[i] for i in chosen]), default="outside")

    def _with_earlier_ents(self, doc: Doc, chosen: List[Span]) -> List[Span]:
        """``chosen`` plus, unless ``ents_overwrite``, the doc's entities that overlap none of them."""
        if self.cfg["ents_overwrite"]:
            return chosen
        taken = numpy.zeros(len(doc), dtype=bool)
        for span in chosen:
            taken[span.start : span.end] = True
        return chosen + [ent for ent in doc.ents if not taken[ent.start : ent.end].any()]

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "GlobalPointerSpans.update")
        docs = [eg.predicted for eg in examples]
        if not any(len(doc) for doc in docs):
            return losses
        self._sync_max_length()
        set_dropout_rate(self.model, drop)
        logits, backprop = self.model.begin_update(docs)
        loss, d_logits = self.get_loss(examples, logits)
        backprop(d_logits)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the component's weights, at ``learn_rate_scale`` times the optimizer's rate."""
        scale = self.cfg["learn_rate_scale"]
        self.model.finish_update(sgd if scale == 1.0 else ScaledOptimizer(sgd, scale))

    def get_loss(
        self, examples: Iterable[Example], logits: List[Floats3d]
    ) -> Tuple[float, List[Floats3d]]:
        """Multi-label categorical cross-entropy against the gold spans."""
        positives = [
            self._gold_cells(eg, doc_logits.shape[2]) for eg, doc_logits in zip(examples, logits)
        ]
        return globalpointer_loss(logits, positives)

    def _gold_cells(self, eg: Example, band: int) -> Ints2d:
        """Unique ``(label, start, offset)`` cells of the gold spans aligned to the predicted doc."""
        label_ids = {label: i for i, label in enumerate(self.labels)}
        gold = annotated_spans(eg.reference, self.key)
        rows = []
        too_long = 0
        aligned = eg.get_aligned_spans_y2x(gold, allow_overlap=True)
        if len(aligned) < len(gold):
            lost = [span for span in gold if not eg.get_aligned_spans_y2x([span], allow_overlap=True)]
            shown = ", ".join(f"{span.text!r} ({span.label_})" for span in lost[:3])
            warnings.warn(
                f"'{self.name}' skipped {len(lost)} gold span(s) that cannot be aligned to the "
                f"predicted doc (a boundary falls inside a token), e.g. {shown}. Tokenise the training docs like "
                f"the reference docs, or fix the spans."
            )
        for span in aligned:
            if span.label_ not in label_ids:
                raise ValueError(
                    f"Gold span '{span.text}' has label {span.label_!r}, which '{self.name}' "
                    f"does not know (labels: {list(self.labels)}). Initialise the component "
                    f"on data that contains it, or list it in [initialize.components.{self.name}.labels]."
                )
            offset = cell_offset(span.start, span.end)
            if offset >= band:
                too_long += 1
                continue
            rows.append((label_ids[span.label_], span.start, offset))
        if too_long:
            warnings.warn(
                f"'{self.name}' skipped {too_long} gold span(s) longer than "
                f"max_length={self.cfg['max_length']} tokens: they can never be predicted."
            )
        return numpy.unique(numpy.asarray(rows, dtype="int64").reshape(-1, 3), axis=0)

    def _check_label_thresholds(self) -> None:
        """``label_thresholds`` may only name labels the component has."""
        unknown = sorted(set(self.cfg["label_thresholds"]) - set(self.labels))
        if unknown:
            raise ValueError(
                f"label_thresholds of '{self.name}' name label(s) {unknown} it does not have "
                f"(known labels: {list(self.labels)}). Fix or remove them in "
                f"[components.{self.name}] label_thresholds."
            )

    def _threshold_logits(self) -> Floats1d:
        per_label = self.cfg["label_thresholds"]
        return probability_to_logit(
            [per_label.get(label, self.cfg["threshold"]) for label in self.labels]
        )

    def _sync_max_length(self) -> None:
        self._head.attrs["max_span_length"] = self.cfg["max_length"]

    def _build_head_for_loading(self) -> None:
        """Rebuild the lazily created torch head from ``cfg`` before weights are loaded."""
        head = self._head
        if head.layers or "nI" not in self.cfg:
            return
        if not head.has_dim("nI"):
            head.set_dim("nI", self.cfg["nI"])
        if not head.has_dim("nO"):
            head.set_dim("nO", len(self.labels))
        build_torch_head(head)

    def _load_model_bytes(self, data: bytes, source: str = "bytes") -> None:
        self._build_head_for_loading()
        try:
            self.model.from_bytes(data)
        except AttributeError:
            raise ValueError(Errors.E149) from None
        except (ValueError, RuntimeError, KeyError, TypeError, IndexError) as error:
            raise ValueError(
                f"Could not load the weights of '{self.name}' from {source}: {error}\n"
                f"The weights are truncated or corrupted, or were saved by a pipeline whose "
                f"labels, encoder width or head size differ from this one's "
                f"({len(self.labels)} labels, nI={self.cfg.get('nI')}, "
                f"head_size={self._head.attrs['head_size']})."
            ) from error

    def _restore_cfg(self, saved: Dict[str, Any]) -> None:
        """Take what the weights depend on (labels, encoder width) from the saved ``cfg``.

        The settings (threshold, label_thresholds, max_length, write_ents, ...) stay those of
        the config the component was created from, so ``nlp.config`` and behaviour agree and
        ``spacy.load(path, config=...)`` or an edited ``config.cfg`` take effect.
        """
        for key in SAVED_CFG_KEYS:
            if key in saved:
                self.cfg[key] = saved[key]
        self._check_label_thresholds()
        unlisted = saved.get("label_thresholds") or {}
        if unlisted and not self.cfg["label_thresholds"]:
            warnings.warn(
                f"'{self.name}' was saved with label_thresholds {unlisted}, which its config does "
                f"not list: they are not used. To use them, set label_thresholds in "
                f"[components.{self.name}] of the pipeline's config.cfg."
            )

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "GlobalPointerSpans":
        deserialize = {
            "cfg": lambda b: self._restore_cfg(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": self._load_model_bytes,
        }
        util.from_bytes(bytes_data, deserialize, exclude)
        return self

    def from_disk(self, path, *, exclude: Iterable[str] = tuple()) -> "GlobalPointerSpans":
        def load_model(model_path) -> None:
            with open(model_path, "rb") as model_file:
                self._load_model_bytes(model_file.read(), source=str(model_path))

        deserialize = {
            "cfg": lambda p: self._restore_cfg(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": load_model,
        }
        util.from_disk(path, deserialize, exclude)
        return self
