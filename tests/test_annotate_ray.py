"""The Ray engine: same output as the local engine, bad records, resuming, a killed actor survived."""
import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from annotate_util import TEXTS, read_jsonl, train_tiny_pipeline, write_jsonl  # noqa: E402
from spacy_globalpointer.annotate.cli import main  # noqa: E402
from spacy_globalpointer.annotate.engines import CRASH_FILE_ENV, SpanAnnotator  # noqa: E402
from spacy_globalpointer.annotate.shards import ShardStore  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return train_tiny_pipeline(tmp_path_factory.mktemp("annotate_ray") / "model")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster(tmp_path_factory):
    crash_file = tmp_path_factory.mktemp("crash") / "crash-once"
    os.environ[CRASH_FILE_ENV] = str(crash_file)  # workers inherit the driver's environment
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield crash_file
    ray.shutdown()
    del os.environ[CRASH_FILE_ENV]


def corpus(folder: Path, n_docs: int) -> Path:
    """Two JSONL shards with bad records among the good ones."""
    folder.mkdir()
    records = [{"n": i, "text": TEXTS[i % len(TEXTS)]} for i in range(n_docs)]
    half = n_docs // 2
    write_jsonl(folder / "part-0.jsonl", records[:half])
    with (folder / "part-0.jsonl").open("ab") as handle:
        handle.write(b'{"n": -1, "text": \n{"n": -2}\n')
    write_jsonl(folder / "part-1.jsonl", records[half:])
    with (folder / "part-1.jsonl").open("ab") as handle:
        handle.write(b'{"n": -3, "text": "\xc3"}\n')
    return folder


def run_both(model, source, tmp_path, *options):
    outputs = {}
    for engine in ("local", "ray"):
        output = tmp_path / f"{engine}.jsonl"
        assert main([str(model), str(source), str(output), "--engine", engine, *options]) == 0
        outputs[engine] = output
    return outputs


def test_ray_matches_local(model, tmp_path):
    source = corpus(tmp_path / "corpus", 40)
    # Text lines end at \n only, read whole by Ray or line by line locally.
    (source / "part-2.txt").write_bytes(f"{TEXTS[0]}\r\n{TEXTS[1]}\r{TEXTS[2]}\n".encode("utf-8"))
    outputs = run_both(model, source, tmp_path, "--id-key", "n", "--keep-text", "--batch-size", "8", "--shard-size", "15")
    local, remote = outputs["local"], outputs["ray"]
    assert remote.read_bytes() == local.read_bytes()
    records = read_jsonl(remote)
    assert [r["id"] for r in records[:40]] == list(range(40))
    assert [r["text"] for r in records[40:]] == [TEXTS[0], f"{TEXTS[1]}\r{TEXTS[2]}"]
    errors = read_jsonl(tmp_path / "ray.errors.jsonl")
    assert errors == read_jsonl(tmp_path / "local.errors.jsonl")
    assert [(Path(e["source"]).name, e["line"]) for e in errors] == [("part-0.jsonl", 21), ("part-0.jsonl", 22), ("part-1.jsonl", 21)]


def test_ray_parquet_label_studio_and_two_workers(model, tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    source = tmp_path / "shards"
    source.mkdir()
    for shard in range(2):  # one block each: both actors get work
        parquet.write_table(pyarrow.table({"text": TEXTS * 2}), source / f"{shard}.parquet")
    outputs = run_both(model, source, tmp_path, "--output-format", "label_studio", "--num-workers", "2", "--batch-size", "4")
    assert outputs["ray"].read_bytes() == outputs["local"].read_bytes()
    tasks = read_jsonl(outputs["ray"])
    rows = range(1, len(TEXTS) * 2 + 1)
    assert [t["data"]["id"] for t in tasks] == [f"{source / f'{shard}.parquet'}:{row}" for shard in range(2) for row in rows]


def test_ray_resumes_an_interrupted_local_job(model, tmp_path, monkeypatch):
    """A job's shards do not depend on the engine: the Ray engine finishes what the local one began."""
    source = corpus(tmp_path / "corpus", 30)
    reference = tmp_path / "reference.jsonl"
    assert main([str(model), str(source), str(reference), "--id-key", "n"]) == 0
    output = tmp_path / "out.jsonl"
    args = [str(model), str(source), str(output), "--id-key", "n", "--shard-size", "8"]
    write_shard = ShardStore.write_shard

    def interrupted_at_third_shard(store, *shard):
        if len(store.shards) == 2:
            raise KeyboardInterrupt
        write_shard(store, *shard)

    monkeypatch.setattr(ShardStore, "write_shard", interrupted_at_third_shard)
    assert main(args) == 130  # as after Ctrl-C
    monkeypatch.undo()
    assert not output.exists()
    assert main(args + ["--engine", "ray"]) == 0
    assert output.read_bytes() == reference.read_bytes()
    assert read_jsonl(tmp_path / "out.errors.jsonl") == read_jsonl(tmp_path / "reference.errors.jsonl")
    manifest = json.loads((tmp_path / "out.jsonl.parts" / "manifest.json").read_text("utf-8"))
    assert [shard["items"] for shard in manifest["shards"]] == [8, 8, 8, 8, 1]  # 33 input records


def test_killed_actor_is_retried_and_no_record_is_lost_or_doubled(model, tmp_path, ray_cluster):
    source = corpus(tmp_path / "corpus", 24)
    reference = tmp_path / "reference.jsonl"
    assert main([str(model), str(source), str(reference), "--id-key", "n"]) == 0
    ray_cluster.write_text("armed")  # the first actor batch exits its process
    output = tmp_path / "out.jsonl"
    assert main([str(model), str(source), str(output), "--id-key", "n", "--engine", "ray", "--batch-size", "4"]) == 0
    assert not ray_cluster.exists()  # the crash did happen
    assert output.read_bytes() == reference.read_bytes()


def test_span_annotator_in_a_users_own_job(model):
    dataset = ray.data.from_items([{"key": i, "body": text} for i, text in enumerate(TEXTS)] + [{"key": 99, "body": None}])
    annotated = dataset.map_batches(
        SpanAnnotator,
        batch_format="pyarrow",
        batch_size=3,
        fn_constructor_kwargs={"model": str(model), "text_key": "body"},
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    rows = sorted(annotated.take_all(), key=lambda row: row["key"])
    assert [row["key"] for row in rows] == list(range(len(TEXTS))) + [99]
    assert "body" not in rows[0]
    assert rows[-1]["spans"] is None and rows[-1]["ents"] is None
    assert any(row["spans"] for row in rows[:-1])
    assert set(rows[0]["spans"][0]) == {"start_char", "end_char", "start", "end", "label", "score"}
