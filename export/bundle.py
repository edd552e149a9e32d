"""Writing a task bundle atomically: build in a staging folder, then swap it in whole.

A re-export copies the current bundle into staging, adds or replaces its artifacts there, rewrites
the manifest with fresh hashes, and only then replaces the old bundle, so a failure mid-way leaves
the previous bundle untouched and never a half-written one. The writer never destroys what it did not
make: an --out that is a file or a folder other than a bundle is refused, and a bundle holds the
artifacts of one student only (the fingerprint of its config and weights is in the manifest).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from export.writer_lock import bundle_writer
from mobile_app.runtime.errors import UserError
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


def student_fingerprint(student_dir: Path) -> str:
    """sha256 over a student's config and weight files: which student a bundle's artifacts were made from."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(Path(student_dir).glob("config.json")) + sorted(Path(student_dir).glob("*.safetensors")):
        digest.update(file.name.encode() + b"\0" + bytes.fromhex(sha256_path(file)))
    return digest.hexdigest()


def base_manifest(task_spec, student_dir: Path, tokenizer_settings: dict) -> dict:
    """A fresh manifest for a task; artifact entries are appended by the exporters."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "task": task_spec.name,
        "head": task_spec.head,
        "labels": list(task_spec.labels),
        "text_pair": task_spec.is_pair,
        "title": task_spec.title or task_spec.name,
        "examples": [dict(example) for example in task_spec.examples],
        "buckets": list(task_spec.buckets),
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES[task_spec.head]),
        "tokenizer": tokenizer_settings,
        "student": str(Path(student_dir).resolve()),
        "student_sha256": student_fingerprint(student_dir),
        "artifacts": [],
        "files": {},
    }


def _check_target(bundle_dir: Path, fresh: dict) -> None:
    """Refuse an --out the export would destroy: a file, a folder that is not a bundle, or one holding the student."""
    student = Path(fresh["student"]).resolve() if fresh.get("student") else None
    if student is not None and (student == bundle_dir or bundle_dir in student.parents):
        raise UserError(f"--out {bundle_dir} holds the student {student}; writing the bundle there would delete it; pass another --out")
    if not os.path.lexists(bundle_dir):
        return
    if not bundle_dir.is_dir():
        raise UserError(f"--out {bundle_dir} is an existing file; pass a folder path for the bundle (nothing was written)")
    if not (bundle_dir / MANIFEST_NAME).is_file() and any(bundle_dir.iterdir()):
        raise UserError(f"--out {bundle_dir} is a folder with files but no {MANIFEST_NAME}, not a bundle; pass a new or empty folder "
                        "or an existing bundle (nothing was written)")


def _carried_over(bundle_dir: Path, fresh: dict) -> dict | None:
    """The manifest of the bundle at bundle_dir whose artifacts the new export keeps, or None to start it afresh.

    A bundle holds the artifacts of one student: one made from another student is replaced whole (said on the
    console), one of another task is refused, and so is one holding files the kit did not write."""
    if not (bundle_dir / MANIFEST_NAME).is_file():
        return None
    try:
        old = read_manifest(bundle_dir)
    except BundleError:
        return None  # unreadable manifest: the bundle is rebuilt whole
    if old.get("task") != fresh["task"]:
        raise UserError(f"{bundle_dir} already holds a {old.get('task')!r} bundle; use another --out for {fresh['task']!r}")
    listed = set(old.get("files", {})) | {MANIFEST_NAME}
    foreign = sorted(p.name for p in bundle_dir.iterdir() if p.name not in listed and not p.name.startswith("parity"))
    if foreign:
        raise UserError(f"{bundle_dir} holds files the kit did not write ({', '.join(foreign[:3])}); move them out or pass another --out")
    if old.get("student_sha256") and fresh.get("student_sha256"):
        same_student = old["student_sha256"] == fresh["student_sha256"]
    else:
        same_student = old.get("student") == fresh.get("student")
    if not same_student:
        print(f"note: {bundle_dir} held artifacts of another student ({old.get('student')}); replacing the bundle whole")
        return None
    return old


@contextlib.contextmanager
def staged_bundle(bundle_dir: str | Path, fresh_manifest: dict):
    """Yield (staging_dir, manifest) to fill; on success hash every file and swap the bundle in atomically.

    An existing bundle of the same task and student is carried over (its other artifacts stay); see _carried_over.
    """
    bundle_dir = Path(bundle_dir).resolve()
    _check_target(bundle_dir, fresh_manifest)
    with bundle_writer(bundle_dir, "exporting"):
        yield from _staged(bundle_dir, fresh_manifest)


def _staged(bundle_dir: Path, fresh_manifest: dict):
    old = _carried_over(bundle_dir, fresh_manifest)
    try:
        stage = make_stage(bundle_dir)
    except OSError as error:
        raise UserError(f"cannot write the bundle at {bundle_dir} ({error.strerror}); choose a writable --out") from None
    try:
        manifest = dict(fresh_manifest)
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
    """Add an artifact entry, replacing one with the same file name; it records the student it was converted from."""
    entry = {**entry, "student_sha256": manifest["student_sha256"]}
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["file"] != entry["file"]] + [entry]
