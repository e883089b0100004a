"""Render a trained pipeline's nested prediction with displaCy's span view, as HTML and PNG.

    python scripts/render_nested.py MODEL CORPUS.spacy OUT.png [--html OUT.html] [--max-chars 60]

The doc shown is picked from CORPUS (gold spans in ``doc.spans[key]``): among docs of at most
``--max-chars`` characters whose prediction contains a span inside another predicted span, the one
with the most correct nested predictions (ties: fewest wrong predictions, then shortest). The PNG
is a screenshot of the HTML by headless Chromium (Debian: ``apt-get install chromium
fonts-wqy-microhei``; the font gives Chromium Chinese glyphs).
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Set, Tuple

import spacy
from spacy import displacy
from spacy.tokens import Doc, DocBin

SpanTuple = Tuple[int, int, str]
PALETTE = ["#7aecec", "#feca74", "#aa9cfc", "#ff9561", "#bfeeb7", "#c887fb", "#9cc9cc", "#e4e7d2", "#ffeb80", "#f0d0ff"]
PAGE = """<!DOCTYPE html>
<html lang="zh"><head><meta charset="utf-8"><title>displaCy span view</title></head>
<body style="margin: 12px 16px; background: #fff; font-family: 'WenQuanYi Micro Hei', sans-serif">{body}</body></html>
"""
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--force-device-scale-factor=2",
]
# Headless Chromium shows less of the page than a short --window-size (at 104 px, only the top
# ~15 px; seen with Chromium 156): the window is made taller than the content by this margin.
WINDOW_MARGIN_PX = 100


def span_set(spans) -> Set[SpanTuple]:
    return {(span.start, span.end, span.label_) for span in spans}


def max_nesting_depth(spans) -> int:
    """The most spans covering one token."""
    return max([sum(1 for s in spans if s.start <= i < s.end) for s in spans for i in range(s.start, s.end)] + [1])


def inner_spans(spans: Set[SpanTuple]) -> Set[SpanTuple]:
    """The spans that lie inside (or exactly on) another span of the set."""
    return {
        inner for inner in spans
        if any(o != inner and o[0] <= inner[0] and inner[1] <= o[1] for o in spans)
    }


def pick_doc(predicted: List[Doc], gold: List[Doc], key: str, max_chars: int) -> int:
    best, best_rank = -1, None
    for index, (doc, gold_doc) in enumerate(zip(predicted, gold)):
        if len(doc.text) > max_chars:
            continue
        pred, true = span_set(doc.spans[key]), span_set(gold_doc.spans.get(key, []))
        correct_nested = len(inner_spans(pred) & true)
        if not correct_nested:
            continue
        rank = (correct_nested, -len(pred - true), -len(doc.text))
        if best_rank is None or rank > best_rank:
            best, best_rank = index, rank
    if best < 0:
        raise SystemExit(f"No doc of at most {max_chars} characters has a correct nested prediction")
    return best


def screenshot(html_path: Path, png_path: Path, width: int, content_height: int) -> None:
    """Screenshot the page, at least ``content_height`` CSS pixels of it, ``width`` wide."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium not found: apt-get install chromium fonts-wqy-microhei")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--window-size={width},{content_height + WINDOW_MARGIN_PX}",
             f"--screenshot={png_path.resolve()}", html_path.resolve().as_uri()],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("corpus")
    parser.add_argument("png")
    parser.add_argument("--html", default=None, help="also keep the HTML here")
    parser.add_argument("--spans-key", default="sc")
    parser.add_argument("--max-chars", type=int, default=60)
    parser.add_argument("--width", type=int, default=900)
    args = parser.parse_args(argv)

    nlp = spacy.load(args.model)
    gold = list(DocBin().from_disk(args.corpus).get_docs(nlp.vocab))
    predicted = list(nlp.pipe(doc.text for doc in gold))
    index = pick_doc(predicted, gold, args.spans_key, args.max_chars)
    doc = predicted[index]
    true = span_set(gold[index].spans[args.spans_key])
    for span in doc.spans[args.spans_key]:
        verdict = "correct" if (span.start, span.end, span.label_) in true else "wrong"
        print(f"{span.start:>3} {span.end:>3} {span.label_:<5} {verdict:<7} {span.text}")

    labels = sorted({span.label_ for span in doc.spans[args.spans_key]})
    colors = dict(zip(labels, PALETTE * (len(labels) // len(PALETTE) + 1)))
    body = displacy.render(doc, style="span", options={"spans_key": args.spans_key, "colors": colors})
    html_path = Path(args.html) if args.html else Path(tempfile.mkdtemp()) / "spans.html"
    html_path.write_text(PAGE.format(body=body), encoding="utf-8")
    # Window height: the wrapped lines of text (one character per ~26 px, spaced out as tokens),
    # each a row of text plus one row per level of nested spans.
    lines = -(-len(doc.text) // max(1, (args.width - 40) // 26))
    depth = max_nesting_depth(doc.spans[args.spans_key])
    screenshot(html_path, Path(args.png), args.width, 24 + lines * (48 + 16 * depth))
    print(f"Wrote {args.png} ({len(doc.text)} chars, {len(doc.spans[args.spans_key])} predicted spans)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
