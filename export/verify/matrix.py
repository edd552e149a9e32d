"""Each TFLite artifact through each selected runtime (export/verify/runtimes.py), one worker process per pair.

The worker (export/verify/runtime_worker.py) runs in the runtime's own environment and returns its input ids,
raw outputs, predictions and per-example latency; here they are checked against the PyTorch reference with the
same thresholds for every runtime (export/verify/parity.py). An artifact a runtime cannot open is a failed row
("does not load: REASON"), a runtime whose environment is missing a "not installed" row: never a crash.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from mobile_app.runtime.errors import UserError
from export.verify.runtimes import BY_NAME, RUNTIMES, WORKER_MODULE, Runtime, installed_runtimes, worker_env

NOT_INSTALLED, DOES_NOT_LOAD, FAILS, CHECKED = "not installed", "does not load", "fails", "checked"
# A file that needs a newer TFLite than the runtime's: the app never opens it there (contract.py's rule), so the row
# neither passes nor fails, like "not installed".
NOT_FOR_RUNTIME = "needs a newer runtime"
NEUTRAL = (NOT_INSTALLED, NOT_FOR_RUNTIME)
# Which .tflite files meet every runtime: all of them, or only the one the app ships (the rest: the first runtime).
MATRIX_CHOICES = ("all", "shipped")
WORKER_TIMEOUT_S = 3600


def select_runtimes(names: list[str] | None) -> list[Runtime]:
    """The runtimes to run: the named ones ("all": every registered one), else every installed one."""
    if not names:
        return installed_runtimes()
    if "all" in names:
        return list(RUNTIMES)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise UserError(f"unknown runtime {', '.join(unknown)}; choose from {', '.join(BY_NAME)} (or all)")
    return [BY_NAME[n] for n in dict.fromkeys(names)]


def run_worker(runtime: Runtime, bundle_dir: Path, file: str | None, examples: list[dict], num_threads: int = 2, qemu: str | None = None) -> dict:
    """The worker's result for one artifact (an emulated runtime under QEMU build `qemu`, default the preferred one);
    a worker that dies or hangs becomes {"loaded": False, "error": why}."""
    with tempfile.TemporaryDirectory(prefix="tinybert-verify-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"bundle_dir": str(Path(bundle_dir).resolve()), "file": file, "examples": examples,
                                       "num_threads": num_threads}), encoding="utf-8")
        try:
            done = subprocess.run([*runtime.command(qemu), "-m", WORKER_MODULE, str(request), str(result)],
                                  capture_output=True, text=True, env=worker_env(runtime.python_env()), timeout=WORKER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"loaded": False, "error": f"no answer within {WORKER_TIMEOUT_S} s", "interpreter": None}
        if done.returncode != 0 or not result.is_file():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
            return {"loaded": False, "error": f"the worker crashed ({how}): {lines[-1] if lines else 'no message'}", "interpreter": None}
        return json.loads(result.read_text(encoding="utf-8"))


def latency_summary(values: list[float], threads: int) -> dict | None:
    """Median and 90th percentile of per-example latency in ms (tokenize + model + post-processing), on `threads`
    interpreter threads while other checks may run beside it."""
    if not values:
        return None
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)), "examples": len(values), "threads": threads}


def interpreter_label(found: dict | None, emulator: str | None = None) -> str | None:
    """'ai_edge_litert 2.3.0 (numpy 2.4.6, Python 3.11.2)'; an emulated one adds its machine and emulator."""
    if not found:
        return None
    machine = found.get("machine")
    where = f", {machine}" if machine and machine != "x86_64" else ""
    return f"{found['module']} {found['version']} (numpy {found['numpy']}, Python {found['python']}{where}{', ' + emulator if emulator else ''})"


def unchecked_row(entry: dict, runtime: Runtime, status: str, reason: str | None, found: dict | None = None) -> dict:
    """The row of an artifact a runtime did not check: not installed (neutral) or failed before the parity check."""
    failures = [] if status in NEUTRAL else [f"{entry['file']} on {runtime.name}: {status}: {reason}"]
    return {"name": entry["file"], "runtime": runtime.name, "runtime_label": runtime.label, "status": status, "reason": reason,
            "interpreter": interpreter_label(found), "examples": 0, "latency_ms": None,
            "passed": None if status in NEUTRAL else False, "failures": failures}


def runtime_mismatch(runtime: Runtime, found: dict | None) -> str | None:
    """Why the interpreter the worker found is not the runtime's pinned one, if it is not."""
    if found and (found["module"], found["version"]) != (runtime.module, runtime.version):
        return f"its environment runs {found['module']} {found['version']}, not {runtime.label}; re-run `make setup`"
    return None


def check_runtime_result(result: dict, windows: list[list], prediction_of) -> tuple[list[str], list]:
    """Per-example mismatches of the worker's input ids and of its post-processing with this process's, as messages."""
    problems, predictions = [], []
    for index, (example_windows, got) in enumerate(zip(windows, result["examples"])):
        expected_ids = [list(map(int, w.input_ids)) for w in example_windows]
        if got["ids"] != expected_ids and len(problems) < 3:
            problems.append(f"its tokenizer gave other input ids at example #{index}")
        again = prediction_of(index, got["outputs"])
        if json.loads(json.dumps(again)) != got["prediction"] and len(problems) < 3:
            problems.append(f"its post-processing gave {got['prediction']!r} at example #{index} where this process gives {again!r}")
        predictions.append(got["prediction"])
    return problems, predictions
