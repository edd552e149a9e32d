"""A task bundle on disk: its manifest (`bundle.json`) and the checks that refuse a tampered one.

Standard library only: the app reads bundles on the phone with this same code.
"""
from __future__ import annotations

import json
from pathlib import Path

from mobile_app.runtime.contract import (ARTIFACT_FIELDS, DEFAULT_PRECISIONS, FORMAT_NAME, FORMAT_VERSION, MANIFEST_FIELDS, MANIFEST_NAME,
                                         TFLITE_NEEDS_FIELD)
from mobile_app.runtime.errors import UserError
from mobile_app.runtime.files import sha256_path
from mobile_app.runtime.runtime_versions import missing_runtime, version_key


class BundleError(UserError):
    """A bundle that is missing, incomplete, tampered or not what the caller asked for."""


def read_manifest(bundle_dir: str | Path) -> dict:
    """The parsed manifest, without checking file hashes."""
    manifest_path = Path(bundle_dir) / MANIFEST_NAME
    if not manifest_path.is_file():
        raise BundleError(f"{bundle_dir} is not a bundle (no {MANIFEST_NAME}); build one with `python -m export tflite STUDENT_DIR --out {bundle_dir}`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path} is not valid JSON ({error}); re-export the bundle") from None
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{manifest_path} is not a {FORMAT_NAME} v{FORMAT_VERSION} manifest; re-export the bundle with this version of the kit")
    missing = [name for name in MANIFEST_FIELDS if name not in manifest]
    incomplete = sorted({str(entry.get("file", "?")) for entry in manifest.get("artifacts") or []
                         if not isinstance(entry, dict) or any(name not in entry for name in ARTIFACT_FIELDS)})
    if missing or incomplete or not isinstance(manifest.get("artifacts"), list):
        what = f"lacks {', '.join(missing)}" if missing else f"has incomplete artifact entries ({', '.join(incomplete) or 'artifacts'})"
        raise BundleError(f"{manifest_path} {what}; re-export the bundle with this version of the kit")
    return manifest


def load_manifest(bundle_dir: str | Path, task: str | None = None, verify_files: bool = True) -> dict:
    """Read and check a bundle: every listed file present with its recorded sha256, and the expected task."""
    manifest = read_manifest(bundle_dir)
    if task is not None and manifest.get("task") != task:
        raise BundleError(f"{bundle_dir} holds a {manifest.get('task')!r} bundle, not {task!r}; pick the bundle built for {task!r}")
    if verify_files:
        for name, expected in manifest.get("files", {}).items():
            path = Path(bundle_dir) / name
            if not path.exists():
                raise BundleError(f"{bundle_dir}: {name} is listed in {MANIFEST_NAME} but missing; re-export the bundle")
            if sha256_path(path) != expected:
                raise BundleError(f"{bundle_dir}: {name} does not match its sha256 in {MANIFEST_NAME} (tampered or corrupted); re-export the bundle")
        for entry in artifacts(manifest):
            check_artifact_student(bundle_dir, manifest, entry)
    return manifest


def check_artifact_student(bundle_dir: str | Path, manifest: dict, entry: dict) -> None:
    """Refuse an artifact made from another student than the bundle's: by its entry's record and, for a .tflite, by
    the stamp inside the file (a file swapped in from another bundle keeps its own). Entries of bundles written
    before artifacts recorded their student carry no record and are not checked."""
    recorded, student = entry.get("student_sha256"), manifest.get("student_sha256")
    if recorded is None:
        return
    if recorded != student:
        raise BundleError(f"{bundle_dir}: {entry.get('file')} was converted from another student than the bundle's "
                          f"({recorded[:12]} vs {str(student)[:12]}); re-export the bundle from one student")
    if entry.get("format") != "tflite":
        return
    import mmap

    from mobile_app.runtime.artifact_student import read_student_stamp

    path = Path(bundle_dir) / entry["file"]
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            stamp = read_student_stamp(data)
    except (OSError, ValueError):
        return  # a file that is not whole is refused when an interpreter opens it, as that file's failure
    if stamp != recorded:
        raise BundleError(f"{bundle_dir}: {entry['file']} was made from another student ({(stamp or 'none recorded')[:12]}) than the "
                          f"bundle's ({recorded[:12]}): a file swapped in from another bundle; re-export the bundle")


def artifacts(manifest: dict, fmt: str | None = None) -> list[dict]:
    """The manifest's artifact entries, optionally only one format ('tflite' or 'coreml')."""
    return [a for a in manifest.get("artifacts", []) if fmt is None or a.get("format") == fmt]


def _needs(entry: dict) -> tuple[int, ...]:
    return version_key((entry.get(TFLITE_NEEDS_FIELD) or {}).get("min_runtime", "0"))


def choose_artifact(entries: list[dict], tflite_version: str | None = None, precision: str | None = None) -> dict | None:
    """The entry a runtime opens by the contract's rule (contract.py, above ARTIFACT_PROFILE_FIELD): of the files its
    interpreter (TFLite `tflite_version`; None: unknown) can run, the asked or default precision, its newest-needs file."""
    def runnable(pool: list[dict]) -> list[dict]:
        return pool if tflite_version is None else [e for e in pool if missing_runtime(e, tflite_version) is None]

    if precision is None:
        pool = runnable(entries) or entries
        present = [e.get("precision") for e in pool]
        precision = next((p for p in DEFAULT_PRECISIONS if p in present), present[0] if present else None)
    same = [e for e in entries if e.get("precision") == precision]
    if not same:
        return None
    pick = min if tflite_version is None else max
    return pick(runnable(same) or same, key=_needs)  # min/max keep the first listed of equal needs


def default_artifact(entries: list[dict], tflite_version: str | None = None) -> dict | None:
    """The entry the app opens when no precision is picked (choose_artifact's rule)."""
    return choose_artifact(entries, tflite_version)


def find_bundles(bundles_dir: str | Path) -> list[Path]:
    """The bundle folders in `bundles_dir` (each subfolder holding a manifest), classifiers first, then QA, each by name;
    a folder whose manifest cannot be read comes last (the app shows why it was refused)."""
    root = Path(bundles_dir)
    if not root.is_dir():
        return []

    def order(folder: Path):
        try:
            head = read_manifest(folder).get("head")
        except BundleError:
            return (2, folder.name)
        return (0 if head == "classification" else 1, folder.name)

    return sorted((p for p in root.iterdir() if p.is_dir() and (p / MANIFEST_NAME).is_file()), key=order)
