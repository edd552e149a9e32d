"""Completion records of pipeline stages, so a re-run skips work whose inputs have not changed.

A stage's key hashes everything that decides its result: the data files, the key of the stage it
builds on, its settings and the source code that runs it. A stage writes its record last and
atomically (temp file, then os.replace), so an interrupted run leaves no record for the stage it
was in and the next run picks up exactly there.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import time
from pathlib import Path

from mobile_app.runtime.files import write_atomic
from mobile_app.runtime.bundle import sha256_path

RECORD_VERSION = 1


# The kit's own packages: a stage's code is every module of these it reaches by importing.
KIT_PACKAGES = ("distill", "export", "mobile_app")


def module_source(name: str) -> Path | None:
    """The .py file of a module, found on disk without importing anything (a module's parents may import torch), or
    None for a name that is not a module (`from a import b` where b is a function)."""
    top, *rest = name.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return Path(spec.origin) if spec is not None and spec.origin and not rest else None
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(name: str, source: Path) -> set[str]:
    """The modules a module imports anywhere in its source (top level and inside functions); `from a import b` may
    name module a.b."""
    package = name if source.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def stage_code(entries: list[str], packages: tuple[str, ...] = KIT_PACKAGES) -> dict[str, str]:
    """{module: sha256 of its source file} of every module of `packages` that `entries` reach through their imports
    (entries and the packages above each module included): the code a stage runs, so editing any of it redoes the stage."""
    seen: dict[str, str] = {}
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in packages:
            continue
        source = module_source(name)
        if source is None:
            continue
        seen[name] = sha256_path(source)
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)] + sorted(_imported(name, source))
    return dict(sorted(seen.items()))


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
