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
from mobile_app.runtime.bundle import BundleError, artifacts, choose_artifact

FORMATS = ("tflite", "coreml")


def on_android() -> bool:
    """python-for-android sets ANDROID_ARGUMENT in every app it starts."""
    return "ANDROID_ARGUMENT" in os.environ


def interpreter_tflite_version() -> str | None:
    """The TFLite runtime version of the interpreter open_entry would use here (None: this machine has none): what
    the contract's rule picks a .tflite file by."""
    if on_android() and importlib.util.find_spec("tflite_runtime") is None:
        from mobile_app.runtime.litert_android import LITERT_ANDROID_RELEASE
        from mobile_app.runtime.runtime_versions import litert_tflite_version

        return litert_tflite_version(LITERT_ANDROID_RELEASE)
    from mobile_app.runtime.backends import BackendUnavailableError, find_interpreter

    try:
        return find_interpreter()[2]
    except BackendUnavailableError:
        return None


def pick_artifact(manifest: dict, fmt: str = "tflite", precision: str | None = None, file: str | None = None,
                  tflite_version: str | None = None) -> dict:
    """The manifest entry to run: the named file, else by the contract's rule (bundle.choose_artifact) for an interpreter
    of TFLite `tflite_version` (None: unknown, the file every interpreter runs), the requested precision or the default."""
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
    entry = choose_artifact(entries, tflite_version if fmt == "tflite" else None, precision)
    if entry is None:
        have = ", ".join(dict.fromkeys(str(e.get("precision")) for e in entries))
        raise BundleError(f"the {manifest.get('task')!r} bundle has no {fmt} artifact at precision {precision!r}; it has: {have}")
    return entry


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
    """The backend of the artifact `pick_artifact` chooses for this machine's interpreter."""
    version = interpreter_tflite_version() if fmt == "tflite" and file is None else None
    return open_entry(bundle_dir, manifest, pick_artifact(manifest, fmt, precision, file, version), pad_id=pad_id, num_threads=num_threads)
