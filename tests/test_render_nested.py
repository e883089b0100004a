"""project/scripts/render_nested.py: which doc it shows, and that its screenshot is not blank."""
import importlib.util
import shutil
import zlib
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Span

SCRIPT = Path(__file__).resolve().parent.parent / "project" / "scripts" / "render_nested.py"
_spec = importlib.util.spec_from_file_location("render_nested", SCRIPT)
render_nested = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_nested)


def make_doc(nlp, text, spans):
    doc = nlp.make_doc(text)
    doc.spans["sc"] = [Span(doc, start, end, label=label) for start, end, label in spans]
    return doc


def test_pick_doc_prefers_the_most_correct_nested_predictions():
    nlp = spacy.blank("zh")
    one_nested = [(0, 2, "bod"), (0, 6, "sym")]
    two_nested = [(0, 2, "bod"), (0, 4, "sym"), (5, 7, "bod"), (5, 9, "sym")]
    gold = [
        make_doc(nlp, "肝脏明显肿大", one_nested),
        make_doc(nlp, "脾脏不大，肝脏肿大", two_nested),
        make_doc(nlp, "腹部无压痛", [(0, 2, "bod")]),
    ]
    predicted = [
        make_doc(nlp, "肝脏明显肿大", one_nested),
        make_doc(nlp, "脾脏不大，肝脏肿大", two_nested[:2] + [(5, 9, "sym")]),  # one nested span, longer text
        make_doc(nlp, "腹部无压痛", [(0, 2, "bod")]),  # correct, but nothing nested
    ]
    assert render_nested.pick_doc(predicted, gold, "sc", max_chars=60) == 0
    predicted[1] = make_doc(nlp, "脾脏不大，肝脏肿大", two_nested)
    assert render_nested.pick_doc(predicted, gold, "sc", max_chars=60) == 1
    assert render_nested.pick_doc(predicted, gold, "sc", max_chars=6) == 0
    with pytest.raises(SystemExit, match="No doc"):
        render_nested.pick_doc(predicted[2:], gold[2:], "sc", max_chars=60)


def png_pixels(path: Path) -> bytes:
    """The decompressed image data of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, image = 8, b""
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        chunk_type = data[position + 4 : position + 8]
        if chunk_type == b"IDAT":
            image += data[position + 8 : position + 8 + length]
        position += 12 + length
    return zlib.decompress(image)


@pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="needs Chromium"
)
def test_screenshot_shows_the_bottom_of_the_content(tmp_path):
    # Headless Chromium shows less of the page than a short window's height: a window sized to a
    # one-line displaCy view (104 px) cut off its bottom and came out blank.
    content_height = 104
    block = (
        f'<div style="position: absolute; top: {content_height - 20}px; left: 0; '
        'width: 100px; height: 20px; background: #000"></div>'
    )
    shots = []
    for index, body in enumerate(("", block)):
        html = tmp_path / f"page{index}.html"
        html.write_text(render_nested.PAGE.format(body=body), encoding="utf-8")
        png = tmp_path / f"page{index}.png"
        render_nested.screenshot(html, png, width=400, content_height=content_height)
        shots.append(png_pixels(png))
    assert len(shots[0]) == len(shots[1])
    assert shots[0] != shots[1]
