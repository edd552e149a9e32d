"""One bundle artifact through whichever TFLite interpreter this Python has: the worker of verify's runtime matrix.

export/verify/matrix.py starts it with each runtime's Python (export/verify/runtimes.py), so it imports only
numpy, the standard library, mobile_app.runtime and the interpreter: it runs in environments with numpy 1.x
and no torch. It encodes each raw example, pads and runs it and post-processes the outputs with the app's
own code (mobile_app.runtime.prediction, TFLiteBackend), and times each example as the app would.

  python -m export.verify.runtime_worker --identify         -> {"module", "version", "numpy", "python"}
  python -m export.verify.runtime_worker REQUEST RESULT     (JSON files)
REQUEST {"bundle_dir", "file", "examples", "num_threads"}; RESULT {"interpreter", "loaded", "error", "failed_at",
"examples": [{"ids": [per window input ids], "outputs": [per window {name: values}], "prediction", "latency_ms"}]}.
A file the interpreter cannot open or prepare is `loaded: false` with the reason, never a crash.
"""
from __future__ import annotations

import json
import platform
import sys
import time


def identity() -> dict:
    """The interpreter backends.py picks here, its package version, numpy's and Python's."""
    import numpy

    from mobile_app.runtime.backends import _interpreter_class

    module = _interpreter_class().__module__.split(".")[0]
    package = __import__(module)
    version = getattr(package, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version(module.replace("_", "-"))
    return {"module": module, "version": version, "numpy": numpy.__version__, "python": platform.python_version()}


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines)[:400]}" if lines else type(error).__name__


def _open(bundle_dir: str, manifest: dict, file: str, tokenizer, num_threads: int):
    """The artifact's backend, every bucket's signature prepared by one short input (where old interpreters fail)."""
    from mobile_app.runtime.backends import TFLiteBackend

    entry = next((a for a in manifest.get("artifacts", []) if a.get("file") == file), None)
    if entry is None:
        raise ValueError(f"{file} is not an artifact of {bundle_dir}")
    backend = TFLiteBackend(f"{bundle_dir}/{file}", entry, num_threads=num_threads, pad_id=tokenizer.pad_id)
    for bucket in backend.buckets:
        backend.run([tokenizer.cls_id] + [tokenizer.sep_id] * (bucket - 1), [1] * bucket, [0] * bucket)
    return backend


def run(request: dict) -> dict:
    import numpy as np

    from mobile_app.runtime.bundle import load_manifest
    from mobile_app.runtime.prediction import example_inputs, example_prediction, input_fields
    from mobile_app.runtime.tokenizer import WordPieceTokenizer

    result = {"interpreter": identity(), "loaded": False, "error": None, "failed_at": None, "examples": []}
    manifest = load_manifest(request["bundle_dir"])
    tokenizer = WordPieceTokenizer.from_manifest(request["bundle_dir"], manifest)
    try:
        backend = _open(request["bundle_dir"], manifest, request["file"], tokenizer, int(request.get("num_threads", 2)))
    except Exception as error:  # any interpreter failure is the row's reason, not the worker's end
        result["error"] = _reason(error)
        return result
    result["loaded"] = True
    for index, example in enumerate(request["examples"]):
        try:
            started = time.perf_counter()
            windows = example_inputs(tokenizer, manifest, example)
            outputs = [backend.run(*input_fields(window)) for window in windows]
            prediction = example_prediction(manifest, example, windows, outputs)
            latency_ms = (time.perf_counter() - started) * 1000.0
        except Exception as error:
            result["error"], result["failed_at"] = _reason(error), index
            break
        result["examples"].append({"ids": [list(map(int, w.input_ids)) for w in windows],
                                   "outputs": [{k: np.asarray(v, dtype=np.float64).tolist() for k, v in o.items()} for o in outputs],
                                   "prediction": prediction, "latency_ms": latency_ms})
    return result


def main(argv: list[str]) -> int:
    if argv == ["--identify"]:
        print(json.dumps(identity()))
        return 0
    if len(argv) != 2:
        print("usage: python -m export.verify.runtime_worker (--identify | REQUEST.json RESULT.json)", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        request = json.load(handle)
    result = run(request)
    with open(argv[1], "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
