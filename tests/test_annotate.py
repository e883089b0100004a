"""python -m spacy_globalpointer.annotate with the local engine: formats, bad records, resuming."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy

from annotate_util import TEXTS, read_jsonl, train_tiny_pipeline, write_jsonl
from spacy_globalpointer.annotate import annotate_records
from spacy_globalpointer.annotate.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return train_tiny_pipeline(tmp_path_factory.mktemp("annotate") / "model")


@pytest.fixture(scope="module")
def nlp(model):
    return spacy.load(model)


def expected_record(nlp, text, record_id):
    doc = nlp(text)
    group = doc.spans["sc"]
    spans = [
        {"start_char": s.start_char, "end_char": s.end_char, "start": s.start, "end": s.end, "label": s.label_, "score": float(p)}
        for s, p in zip(group, group.attrs["scores"])
    ]
    ents = [{"start_char": s.start_char, "end_char": s.end_char, "start": s.start, "end": s.end, "label": s.label_} for s in doc.ents]
    return {"id": record_id, "spans": spans, "ents": ents}


def test_jsonl_ids_order_and_bad_records(model, nlp, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    good = [{"doc": f"d{i}", "text": TEXTS[i % len(TEXTS)]} for i in range(9)]
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in good]
    # Bad records on lines 3, 6, 8, 10, 12; a blank line 14 is no record.
    lines[2:2] = [b'{"doc": "x1", "text": ']
    lines[5:5] = [b'{"doc": "x2", "text": "\xff\xfe"}']
    lines[7:7] = [b'{"doc": "x3"}']
    lines[9:9] = [b'{"doc": "x4", "text": ["a"]}']
    lines[11:11] = [b'{"text": "no id"}']
    lines.append(b"")
    source.write_bytes(b"\n".join(lines) + b"\n")
    output = tmp_path / "out.jsonl"

    assert main([str(model), str(source), str(output), "--id-key", "doc", "--shard-size", "4"]) == 0
    summary = capsys.readouterr().out
    assert "docs 9 |" in summary and "errors 5 |" in summary

    assert read_jsonl(output) == [expected_record(nlp, r["text"], r["doc"]) for r in good]
    errors = read_jsonl(tmp_path / "out.errors.jsonl")
    assert [(e["line"], e["reason"].split(":")[0]) for e in errors] == [
        (3, "invalid JSON"),
        (6, "invalid UTF-8 at byte 23"),
        (8, "missing field 'text'"),
        (10, "field 'text' is not a string"),
        (12, "missing field 'doc'"),
    ]
    assert {e["source"] for e in errors} == {str(source)}
    # --strict: same output, non-zero exit.
    assert main([str(model), str(source), str(output), "--id-key", "doc", "--strict", "--overwrite"]) == 1
    assert len(read_jsonl(output)) == 9


def test_txt_folder_ids_are_file_and_line(model, nlp, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "b.txt").write_text(f"{TEXTS[0]}\n\n{TEXTS[1]}\n", "utf-8")
    (folder / "a.txt").write_text(f"{TEXTS[2]}\n", "utf-8")
    (folder / "notes.md").write_text("not an input", "utf-8")
    output = tmp_path / "out.jsonl"
    assert main([str(model), str(folder), str(output), "--keep-text"]) == 0
    records = read_jsonl(output)
    assert [(r["id"], r["text"]) for r in records] == [
        (f"{folder / 'a.txt'}:1", TEXTS[2]),
        (f"{folder / 'b.txt'}:1", TEXTS[0]),
        (f"{folder / 'b.txt'}:2", ""),
        (f"{folder / 'b.txt'}:3", TEXTS[1]),
    ]
    assert records[2]["spans"] == [] and records[2]["ents"] == []
    # A glob selects the same files.
    globbed = tmp_path / "globbed.jsonl"
    assert main([str(model), str(folder / "*.txt"), str(globbed), "--keep-text"]) == 0
    assert read_jsonl(globbed) == records


def test_parquet_in_and_out(model, nlp, tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    texts = TEXTS * 3
    table = pyarrow.table({"key": list(range(100, 100 + len(texts))), "body": texts})
    table = table.append_column("body2", pyarrow.array([None] * len(texts), pyarrow.string()))
    source = tmp_path / "in.parquet"
    parquet.write_table(table, source)
    out_parquet, out_jsonl = tmp_path / "out.parquet", tmp_path / "out.jsonl"
    args = [str(model), str(source), "--text-key", "body", "--id-key", "key", "--shard-size", "5", "--keep-text"]
    assert main(args[:2] + [str(out_parquet)] + args[2:]) == 0
    assert main(args[:2] + [str(out_jsonl)] + args[2:]) == 0
    rows = parquet.read_table(out_parquet).to_pylist()
    assert rows == read_jsonl(out_jsonl)
    assert parquet.read_schema(out_parquet).field("id").type == pyarrow.int64()
    assert rows == [dict(expected_record(nlp, t, 100 + i), text=t) for i, t in enumerate(texts)]
    # A null text is a bad record, as a missing one in JSONL.
    nulls = tmp_path / "nulls.jsonl"
    assert main([str(model), str(source), str(nulls), "--text-key", "body2"]) == 0
    errors = read_jsonl(tmp_path / "nulls.errors.jsonl")
    assert [e["line"] for e in errors] == list(range(1, len(texts) + 1))
    assert {e["reason"] for e in errors} == {"missing field 'body2'"}


def test_label_studio_tasks(model, nlp, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": t} for i, t in enumerate(TEXTS)])
    output = tmp_path / "tasks.json"
    assert main([str(model), str(source), str(output), "--id-key", "id", "--output-format", "label_studio"]) == 0
    tasks = json.loads(output.read_text("utf-8"))
    assert len(tasks) == len(TEXTS)
    for index, task in enumerate(tasks):
        text = TEXTS[index]
        assert task["data"] == {"text": text, "id": index}
        (prediction,) = task["predictions"]
        expected = expected_record(nlp, text, index)["spans"]
        assert len(prediction["result"]) == len(expected)
        for result, span in zip(prediction["result"], expected):
            assert result["type"] == "labels" and result["from_name"] == "label" and result["to_name"] == "text"
            assert result["value"] == {
                "start": span["start_char"],
                "end": span["end_char"],
                "text": text[span["start_char"] : span["end_char"]],
                "labels": [span["label"]],
            }
            assert result["score"] == span["score"]
        scores = [span["score"] for span in expected]
        assert prediction["score"] == pytest.approx(sum(scores) / len(scores) if scores else 0.0)
    assert any(task["predictions"][0]["result"] for task in tasks)
    # Label Studio offsets are code points: an astral character before an entity shifts it by one.
    emoji = write_jsonl(tmp_path / "emoji.jsonl", [{"text": "😀" + TEXTS[0]}])
    tasks = tmp_path / "emoji.jsonl.out.jsonl"
    assert main([str(model), str(emoji), str(tasks), "--output-format", "label_studio"]) == 0
    for result in read_jsonl(tasks)[0]["predictions"][0]["result"]:
        value = result["value"]
        assert ("😀" + TEXTS[0])[value["start"] : value["end"]] == value["text"]


def test_refuses_another_job_unless_overwrite(model, tmp_path, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    output = tmp_path / "out.jsonl"
    assert main([str(model), str(source), str(output)]) == 0
    first = output.read_bytes()
    # The same command again: nothing to do, output unchanged.
    assert main([str(model), str(source), str(output)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert output.read_bytes() == first
    assert main([str(model), str(source), str(output), "--keep-text"]) == 1
    assert "different job (differs in: options)" in capsys.readouterr().err
    assert output.read_bytes() == first
    assert main([str(model), str(source), str(output), "--keep-text", "--overwrite"]) == 0
    assert all(r["text"] for r in read_jsonl(output))


def test_kill_and_resume_keeps_every_record_once(model, tmp_path):
    n_docs = 1500
    source = write_jsonl(tmp_path / "in.jsonl", [{"n": i, "text": TEXTS[i % len(TEXTS)] * 3} for i in range(n_docs)])
    output = tmp_path / "out.jsonl"
    parts = tmp_path / "out.jsonl.parts"
    command = [sys.executable, "-m", "spacy_globalpointer.annotate", str(model), str(source), str(output),
               "--id-key", "n", "--shard-size", "20", "--batch-size", "16"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (parts / "shard-000001.jsonl").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not output.exists()
    manifest = json.loads((parts / "manifest.json").read_text("utf-8"))
    done = sum(shard["items"] for shard in manifest["shards"])
    assert 0 < done < n_docs

    # Shards are cut by input position, so the shard size may change on resuming.
    command[command.index("--shard-size") + 1] = "300"
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {len(manifest['shards'])} shards" in resumed.stderr
    assert f"docs {n_docs:,} |" in resumed.stdout
    assert [r["id"] for r in read_jsonl(output)] == list(range(n_docs))
    assert not list(parts.glob("shard-*"))


def test_annotate_records_api(nlp):
    records = [{"text": TEXTS[0], "key": "a"}, {"text": TEXTS[1], "key": "b"}]
    out = list(annotate_records(nlp, records, id_key="key", keep_text=True))
    assert out == [dict(expected_record(nlp, r["text"], r["key"]), text=r["text"]) for r in records]
    assert [r["id"] for r in annotate_records(nlp, records)] == [0, 1]
    with pytest.raises(ValueError, match="record 1: field 'text' is missing"):
        list(annotate_records(nlp, [{"text": "好"}, {"body": "x"}]))


def test_clear_errors_without_ray_or_pyarrow(model, tmp_path, monkeypatch, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": TEXTS[0]}])
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main([str(model), str(source), str(tmp_path / "out.jsonl"), "--engine", "ray"]) == 1
    assert 'pip install "spacy-globalpointer[ray]"' in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main([str(model), str(source), str(tmp_path / "out.parquet")]) == 1
    assert "Parquet needs pyarrow" in capsys.readouterr().err
    blank = spacy.blank("zh")
    blank_path = tmp_path / "blank"
    blank.to_disk(blank_path)
    assert main([str(blank_path), str(source), str(tmp_path / "out.jsonl")]) == 1
    assert "no 'globalpointer_spans' component" in capsys.readouterr().err
