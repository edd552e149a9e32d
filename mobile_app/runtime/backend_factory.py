"""Opening one bundle artifact: the one place that decides which artifact runs and which backend runs it.

The app (`load_task`), `python -m export verify` (in-process and in every interpreter's worker) and the latency
stage all open artifacts here, so the file verified is opened the way the phone opens it.

- TFLite: `LiteRTAndroidBackend` on Android when the APK has no p4a tflite-runtime, else `TFLiteBackend`.
- Core ML: `CoreMLBackend` on macOS. Where Core ML cannot run (Linux), a caller may hand in an off-device stand-in:
  `python -m export verify` passes coremltools' MIL evaluator, which the phone never has; without one, the Core ML
  backend refuses in one line.
numpy + standard library at import time.
"""
from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path

from mobile_app.runtime.backends import Backend, CoreMLBackend, TFLiteBackend
from mobile_app.runtime.bundle import BundleError, artifacts, default_artifact

FORMATS = ("tflite", "coreml")


def on_android() -> bool:
    """python-for-android sets ANDROID_ARGUMENT in every app it starts."""
    return "ANDROID_ARGUMENT" in os.environ


def pick_artifact(manifest: dict, fmt: str = "tflite", precision: str | None = None, file: str | None = None) -> dict:
    """The manifest entry to run: the named file, else the requested precision, else the bundle's default."""
    if fmt not in FORMATS:
        raise BundleError(f"unknown model format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    entries = artifacts(manifest, fmt)
    if file is not None:
        entry = next((e for e in artifacts(manifest) if e.get("file") == file), None)
        if entry is None:
            raise BundleError(f"{file} is not an artifact of the {manifest.get('task')!r} bundle; pick one bundle.json lists")
        return entry
    if not entries:
        raise BundleError(f"the {manifest.get('task')!r} bundle has no {fmt} artifact; export one with `python -m export {fmt}`")
    if precision is None:
        return default_artifact(entries)
    for entry in entries:
        if entry.get("precision") == precision:
            return entry
    have = ", ".join(str(e.get("precision")) for e in entries)
    raise BundleError(f"the {manifest.get('task')!r} bundle has no {fmt} artifact at precision {precision!r}; it has: {have}")


def open_entry(bundle_dir: str | Path, manifest: dict, entry: dict, pad_id: int = 0, num_threads: int = 2,
               off_device: dict | None = None) -> Backend:
    """The backend of one manifest artifact entry. `off_device` ({format: backend class}) stands in where the format's
    own runtime cannot run (verify's Core ML evaluator on Linux)."""
    path = Path(bundle_dir) / entry["file"]
    fmt = entry.get("format")
    if fmt == "coreml":
        buckets = entry.get("buckets") or manifest.get("buckets")
        backend_class = (off_device or {}).get(fmt, CoreMLBackend) if platform.system() != "Darwin" else CoreMLBackend
        return backend_class(path, entry, buckets, pad_id=pad_id)
    if fmt != "tflite":
        raise BundleError(f"{bundle_dir}: artifact {entry.get('file')} has unknown format {fmt!r}; re-export the bundle")
    if on_android() and importlib.util.find_spec("tflite_runtime") is None:  # an APK without p4a's tflite-runtime recipe
        from mobile_app.runtime.litert_android import LiteRTAndroidBackend

        return LiteRTAndroidBackend(path, entry, num_threads=num_threads, pad_id=pad_id)
    return TFLiteBackend(path, entry, num_threads=num_threads, pad_id=pad_id)


def open_backend(bundle_dir: str | Path, manifest: dict, fmt: str = "tflite", precision: str | None = None, pad_id: int = 0,
                 file: str | None = None, num_threads: int = 2) -> Backend:
    """The backend of the artifact `pick_artifact` chooses."""
    return open_entry(bundle_dir, manifest, pick_artifact(manifest, fmt, precision, file), pad_id=pad_id, num_threads=num_threads)
