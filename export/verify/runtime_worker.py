"""One bundle artifact through whichever TFLite interpreter this Python has: the worker of verify's runtime matrix.

export/verify/matrix.py starts it with each runtime's Python (export/verify/runtimes.py), so it imports only
numpy, the standard library, mobile_app.runtime and the interpreter: it runs in environments with numpy 1.x
and no torch. It opens the artifact as the app does (`load_task`) and runs each raw example through the app's own
`TaskRunner.run_example` (tokenize, pad, run, post-process), timed as the app's user waits for it.

  python -m export.verify.runtime_worker --identify         -> {"module", "version", "numpy", "python", "machine"}
  python -m export.verify.runtime_worker REQUEST RESULT     (JSON files)
REQUEST {"bundle_dir", "file", "examples", "num_threads"} (file null: the one the app opens with this interpreter);
RESULT {"interpreter", "file", "loaded", "error", "failed_at",
"examples": [{"ids": [per window input ids], "outputs": [per window {name: values}], "prediction", "latency_ms"}]}.
A file the interpreter cannot open or prepare is `loaded: false` with the reason, never a crash.
"""
from __future__ import annotations

import json
import platform
import sys


def identity() -> dict:
    """The interpreter backends.py picks here, its package version, numpy's and Python's."""
    import numpy

    from mobile_app.runtime.backends import find_interpreter

    module = find_interpreter()[0].__module__.split(".")[0]
    package = __import__(module)
    version = getattr(package, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version(module.replace("_", "-"))
    return {"module": module, "version": version, "numpy": numpy.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def _reason(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {' '.join(lines)[:400]}" if lines else type(error).__name__


def run(request: dict) -> dict:
    import numpy as np

    from mobile_app.runtime.task_runner import load_task, prediction_key

    result = {"interpreter": identity(), "loaded": False, "error": None, "failed_at": None, "examples": []}
    try:
        runner = load_task(request["bundle_dir"], file=request.get("file"), num_threads=int(request.get("num_threads", 2)))
        result["file"] = runner.artifact_name
        runner.warm_up()
    except Exception as error:  # any interpreter failure is the row's reason, not the worker's end
        result["error"] = _reason(error)
        return result
    result["loaded"] = True
    for index, example in enumerate(request["examples"]):
        try:
            run = runner.run_example(example)
        except Exception as error:
            result["error"], result["failed_at"] = _reason(error), index
            break
        result["examples"].append({"ids": [list(map(int, w.input_ids)) for w in run.inputs],
                                   "outputs": [{k: np.asarray(v, dtype=np.float64).tolist() for k, v in o.items()} for o in run.outputs],
                                   "prediction": prediction_key(run.result), "latency_ms": run.latency_ms})
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
