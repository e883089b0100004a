"""Resumable output: shards of finished records in ``OUTPUT.parts/`` described by a manifest.

A shard is committed in three atomic steps (temporary file, fsync, rename): its
errors file, its records file, then the manifest listing it. Only shards listed in
the manifest count, so a job killed at any point resumes after its last listed
shard and every record ends up in the output exactly once.
"""
import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from .io import Position, errors_path, write_atomic, write_output

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
COUNTS = ("items", "docs", "chars", "spans", "errors")


class JobMismatch(RuntimeError):
    """``OUTPUT.parts/`` (or a finished OUTPUT) belongs to another job."""


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


class ShardStore:
    """The shards of one job: what is done, where to resume, and the final join into OUTPUT."""

    def __init__(self, output: Path, job: Dict[str, Any], *, overwrite: bool = False) -> None:
        self.output = output
        self.folder = parts_dir(output)
        self.job = job
        if overwrite and self.folder.exists():
            shutil.rmtree(self.folder)
        manifest = self._read_manifest()
        if manifest is None:
            if output.exists() and not overwrite:
                raise JobMismatch(f"{output} exists and {self.folder} does not describe it: pass --overwrite to replace it")
            self.folder.mkdir(parents=True, exist_ok=True)
            manifest = {"version": MANIFEST_VERSION, "job": job, "shards": [], "complete": False}
            self.manifest = manifest
            self._save_manifest()
        elif manifest.get("job") != job:
            differing = sorted(k for k in set(job) | set(manifest.get("job", {})) if job.get(k) != manifest["job"].get(k))
            raise JobMismatch(
                f"{self.folder} holds a different job (differs in: {', '.join(differing)}): "
                "pass --overwrite to start again"
            )
        self.manifest = manifest

    @property
    def complete(self) -> bool:
        return bool(self.manifest["complete"])

    @property
    def shards(self) -> List[Dict[str, Any]]:
        return self.manifest["shards"]

    @property
    def resume_after(self) -> Optional[Position]:
        """Position of the last record in a committed shard (None: start from the beginning)."""
        return tuple(self.shards[-1]["end"]) if self.shards else None

    def totals(self) -> Dict[str, int]:
        return {name: sum(shard[name] for shard in self.shards) for name in COUNTS}

    def write_shard(self, lines: List[bytes], errors: List[Dict[str, Any]], counts: Dict[str, int], end: Position) -> None:
        """Commit one shard: records (JSON lines), bad records, counts, and its last position."""
        name = f"shard-{len(self.shards):06d}"
        write_atomic(self.folder / f"{name}.errors.jsonl", (_json_line(e) for e in errors))
        write_atomic(self.folder / f"{name}.jsonl", lines)
        self.shards.append(dict(counts, name=name, end=list(end)))
        self._save_manifest()

    def finish(self, keep_text: bool) -> None:
        """Join the shards into OUTPUT and its errors file, then keep only the (complete) manifest."""
        names = [shard["name"] for shard in self.shards]
        write_output(self.output, [self.folder / f"{n}.jsonl" for n in names], keep_text=keep_text)
        write_output(errors_path(self.output), [self.folder / f"{n}.errors.jsonl" for n in names])
        self.manifest["complete"] = True
        self._save_manifest()
        for name in names:
            (self.folder / f"{name}.jsonl").unlink()
            (self.folder / f"{name}.errors.jsonl").unlink()

    def _read_manifest(self) -> Optional[Dict[str, Any]]:
        path = self.folder / MANIFEST
        if not path.exists():
            return None
        return json.loads(path.read_text("utf-8"))

    def _save_manifest(self) -> None:
        text = json.dumps(self.manifest, ensure_ascii=False, indent=1) + "\n"
        write_atomic(self.folder / MANIFEST, [text.encode("utf-8")])


def _json_line(data: Dict[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
