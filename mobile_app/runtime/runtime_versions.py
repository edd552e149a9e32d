"""Which TensorFlow Lite runtime a bundle artifact needs, and which one this interpreter is (stdlib only).

`python -m export tflite` reads every .tflite file with TFLite's flatbuffer schema (export/tflite_compat.py) and
records in the artifact's manifest entry, under contract.TFLITE_NEEDS_FIELD:
  {"min_runtime": "2.18.0", "min_runtime_for": "EMBEDDING_LOOKUP v4",
   "ops": {"FULLY_CONNECTED": {"version": 12, "runtime": "2.17.0"}, ...},
   "buffers": {"count": 49, "external": 0}}       (external > 0 adds "runtime": the oldest that reads them)
Versions are TFLite runtime versions (TensorFlow's numbering, as in TFLite's runtime_version.cc). The phone
cannot import the schema package, so backends compare this record with their interpreter's version before
loading the file.
"""
from __future__ import annotations

from mobile_app.runtime.contract import TFLITE_NEEDS_FIELD

# ai-edge-litert / the LiteRT Android library number their releases on their own; the TFLite runtime inside
# is what op versions are checked against. ai-edge-litert 2.3.0's native library carries the version string
# "2.22.0-dev0+selfbuilt" (measured here with `strings`); older LiteRT releases are not mapped (treated as the
# release they forked from, TFLite 2.18, the first with ai-edge-litert 1.0).
LITERT_TFLITE_VERSIONS = {"2.3.0": "2.22.0"}
LITERT_FALLBACK_TFLITE_VERSION = "2.18.0"


def version_key(version: str) -> tuple[int, ...]:
    """'2.14.0' -> (2, 14, 0); '2.22.0-dev0+selfbuilt' -> (2, 22, 0): runtime versions compare as numbers."""
    parts = []
    for part in str(version).split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts + [0] * (3 - len(parts)))


def normalize(version: str) -> str:
    """'2.8' -> '2.8.0'."""
    return ".".join(str(p) for p in version_key(version))


def litert_tflite_version(litert_version: str) -> str:
    """The TFLite runtime version inside a LiteRT release (ai-edge-litert wheel or LiteRT Android AAR)."""
    return LITERT_TFLITE_VERSIONS.get(normalize(litert_version), LITERT_FALLBACK_TFLITE_VERSION)


def missing_runtime(entry: dict, tflite_version: str) -> str | None:
    """None when an interpreter of `tflite_version` can run the artifact, else what it lacks ('FULLY_CONNECTED v12
    (2.17.0) need TFLite >= 2.17.0'). An entry without a record (bundles exported before it existed) is not checked."""
    needs = entry.get(TFLITE_NEEDS_FIELD)
    if not needs:
        return None
    have = version_key(tflite_version)
    if version_key(needs["min_runtime"]) <= have:
        return None
    lacking = [f"{op} v{info['version']} ({info['runtime']})" for op, info in sorted(needs.get("ops", {}).items())
               if version_key(info["runtime"]) > have]
    buffers = needs.get("buffers", {})
    runtime = buffers.get("runtime", needs["min_runtime"])
    if buffers.get("external") and version_key(runtime) > have:
        lacking.append(f"{buffers['external']} weight buffers outside the flatbuffer ({runtime})")
    return f"{', '.join(lacking) or needs['min_runtime_for']} need TFLite >= {needs['min_runtime']}"
