"""Writing a task bundle atomically: build in a staging folder, then swap it in whole.

A re-export copies the current bundle into staging, adds or replaces its artifacts there, rewrites
the manifest with fresh hashes, and only then replaces the old bundle, so a failure mid-way leaves
the previous bundle untouched and never a half-written one.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

from distill.errors import UserError
from mobile_app.runtime.files import make_stage, swap_in, write_atomic
from mobile_app.runtime.bundle import BundleError, read_manifest, sha256_path
from mobile_app.runtime.contract import FORMAT_NAME, FORMAT_VERSION, INPUT_NAMES, MANIFEST_NAME, OUTPUT_NAMES


def tool_versions() -> dict[str, str]:
    """Versions of the tools that made a bundle, recorded in its manifest."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("tinybert-mobile", "torch", "transformers", "coremltools", "litert-torch", "ai-edge-quantizer", "ai-edge-litert", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def base_manifest(task_spec, student_dir: Path, tokenizer_settings: dict) -> dict:
    """A fresh manifest for a task; artifact entries are appended by the exporters."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "task": task_spec.name,
        "head": task_spec.head,
        "labels": list(task_spec.labels),
        "buckets": list(task_spec.buckets),
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES[task_spec.head]),
        "tokenizer": tokenizer_settings,
        "student": str(student_dir),
        "artifacts": [],
        "files": {},
    }


@contextlib.contextmanager
def staged_bundle(bundle_dir: str | Path, fresh_manifest: dict):
    """Yield (staging_dir, manifest) to fill; on success hash every file and swap the bundle in atomically.

    An existing bundle of the same task is carried over (its other artifacts stay); one of another task is refused.
    """
    bundle_dir = Path(bundle_dir).resolve()
    try:
        stage = make_stage(bundle_dir)
    except OSError as error:
        raise UserError(f"cannot write the bundle at {bundle_dir} ({error.strerror}); choose a writable --out") from None
    try:
        manifest = dict(fresh_manifest)
        if (bundle_dir / MANIFEST_NAME).is_file():
            try:
                old = read_manifest(bundle_dir)
            except BundleError:
                old = None
            if old is not None and old.get("task") != manifest["task"]:
                raise UserError(f"{bundle_dir} already holds a {old.get('task')!r} bundle; use another --out for {manifest['task']!r}")
            if old is not None:
                for name in old.get("files", {}):
                    src = bundle_dir / name
                    if src.is_dir():
                        shutil.copytree(src, stage / name)
                    elif src.is_file():
                        shutil.copy2(src, stage / name)
                manifest["artifacts"] = list(old.get("artifacts", []))
                for key in ("parity",):
                    if key in old:
                        manifest[key] = old[key]
        yield stage, manifest
        listed = {a["file"] for a in manifest["artifacts"]} | set(manifest.get("extra_files", [])) | {manifest["tokenizer"]["vocab"]}
        manifest["files"] = {name: sha256_path(stage / name) for name in sorted(listed) if (stage / name).exists()}
        missing = sorted(listed - set(manifest["files"]))
        if missing:
            raise UserError(f"bundle is incomplete, missing {', '.join(missing)}; nothing was written to {bundle_dir}")
        write_atomic(stage / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        swap_in(stage, bundle_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def upsert_artifact(manifest: dict, entry: dict) -> None:
    """Add an artifact entry, replacing one with the same file name."""
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["file"] != entry["file"]] + [entry]
