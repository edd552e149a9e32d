"""Completion records of pipeline stages, so a re-run skips work whose inputs have not changed.

A stage's key hashes everything that decides its result: the data files, the key of the stage it
builds on, its settings and the source code that runs it. A stage writes its record last and
atomically (temp file, then os.replace), so an interrupted run leaves no record for the stage it
was in and the next run picks up exactly there.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from pathlib import Path

from mobile_app.runtime.files import write_atomic
from mobile_app.runtime.bundle import sha256_path

RECORD_VERSION = 1


def code_version(modules: list[str]) -> dict[str, str]:
    """sha256 of each module's source (every .py file of a package), so editing the code redoes the stage."""
    found = {}
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            found[name] = "absent"
            continue
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(origin.parent).as_posix().encode() + b"\0" + bytes.fromhex(sha256_path(file)))
        found[name] = digest.hexdigest()
    return found


def file_hashes(paths: dict[str, str | Path | None]) -> dict[str, str]:
    """sha256 of each named input file; a missing optional file hashes as 'absent'."""
    return {name: sha256_path(path) if path is not None and Path(path).exists() else "absent"
            for name, path in sorted(paths.items())}


def stage_inputs(stage: str, task: str, *, settings: dict, upstream: list[str] | tuple[str, ...] = (),
                 data: dict[str, str] | None = None, code: dict[str, str] | None = None) -> dict:
    """Everything a stage's result depends on, as plain JSON (kept in its record to explain a re-run)."""
    material = {"record_version": RECORD_VERSION, "stage": stage, "task": task, "settings": settings,
                "upstream": list(upstream), "data": data or {}, "code": code or {}}
    return json.loads(json.dumps(material, sort_keys=True, default=str))


def key_of(inputs: dict) -> str:
    """The hash of a stage's inputs (JSON with sorted keys, so order never matters)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode("utf-8")).hexdigest()


def stage_key(stage: str, task: str, **inputs) -> str:
    return key_of(stage_inputs(stage, task, **inputs))


def changed_inputs(old, new, prefix: str = "") -> list[str]:
    """Dotted names of the inputs that differ, e.g. ['code.export.quantize', 'settings.precisions']."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [name for key in sorted(set(old) | set(new))
                for name in changed_inputs(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".") or "inputs"]


class StageCache:
    """RUN_DIR/cache/<task>.<stage>.json: one completion record per stage of a task."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir) / "cache"

    def path(self, task: str, stage: str) -> Path:
        return self.dir / f"{task}.{stage}.json"

    def read(self, task: str, stage: str) -> dict | None:
        """The stage's record, or None when absent or unreadable."""
        try:
            record = json.loads(self.path(task, stage).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) else None

    def lookup(self, task: str, stage: str, key: str) -> dict | None:
        """The completed record for this exact key, or None (absent, stale key, or unreadable)."""
        record = self.read(task, stage)
        if record is None or record.get("key") != key or record.get("status") != "completed":
            return None
        return record

    def why_stale(self, task: str, stage: str, inputs: dict) -> str:
        """Why the stage must run: no record, or which of its inputs changed."""
        record = self.read(task, stage)
        if record is None or record.get("status") != "completed":
            return "not done yet"
        changed = changed_inputs(record.get("inputs") or {}, inputs)
        return "inputs changed: " + ", ".join(changed[:6]) + (" ..." if len(changed) > 6 else "") if changed else "its outputs are missing or changed"

    def complete(self, task: str, stage: str, inputs: dict, result: dict, seconds: float) -> dict:
        """Write the completion record (last thing a stage does, atomically) and return it."""
        record = {"status": "completed", "task": task, "stage": stage, "key": key_of(inputs), "inputs": inputs,
                  "result": result, "seconds": round(seconds, 3),
                  "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_atomic(self.path(task, stage), json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        return record
