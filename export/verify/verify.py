"""`python -m export verify`: every artifact of a bundle against the PyTorch student on the task's real eval split.

Every example, for the PyTorch reference and for every artifact, goes through the app's own path from text to
answer, `TaskRunner.run_example` (tokenizer, QA windows, padding, span search). Each TFLite artifact runs on each
selected runtime (export/verify/matrix.py: one interpreter release per environment, from export/verify/runtimes.py),
Core ML artifacts in this process as the runtime's backend factory opens them (the MIL evaluator off macOS);
the comparison is export/verify/parity.py's, with the same thresholds on every runtime. The result lands in the
bundle as parity.json / parity.md / parity_diffs.png and, per artifact entry of bundle.json, `verified_on`.
parity.json layout:
  {"task", "head", "metric_name", "examples", "student", "reference": {"metric"}, "passed", "failures": [...],
   "runtimes": [{"name", "package", "version", "module", "environment", "installed"}],
   "artifacts": [one row per artifact and runtime: {"name", "file", "format", "precision", "size_bytes", "kind",
                 "runtime", "runtime_label", "status", "reason", "interpreter", "latency_ms": {"median", "p90", "examples", "threads"},
                 "compared", "examples", "max_abs_diff", "mean_abs_diff", "reference_max_abs", "max_scaled_diff", "agreement", "metric",
                 "metric_gap", "threshold",
                 "worst_example", "first_disagreement", "passed", "failures"}],
   "diffs": {"<file> @ <runtime>": [per-example max abs diff]}}
A row's status: "checked" (thresholds decide `passed`), "does not load" or "fails" (failed), "not installed"
(passed null: neither passes nor fails the bundle).
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from mobile_app.runtime.errors import UserError
from distill.metrics import accuracy, squad_scores
from distill.tasks import TASK_FILE, TaskSpec, demo_task_names, get_task, read_task_file
from export.verify import arm64
from export.verify.matrix import (CHECKED, DOES_NOT_LOAD, FAILS, MATRIX_CHOICES, NEUTRAL, NOT_FOR_RUNTIME, NOT_INSTALLED, check_runtime_result,
                                  interpreter_label, latency_summary, run_worker, runtime_mismatch, select_runtimes, unchecked_row)
from export.verify.parity import FALLBACK_THRESHOLD, ArtifactParity, compared_outputs, thresholds_with
from export.verify.torch_reference import TorchRunner
from export.verify.runtimes import is_installed
from export.verify.student_side import check_labels, check_tokenizer
from export.wrapper import ExportableBert, load_student
from export.writer_lock import bundle_writer
from mobile_app.runtime.bundle import MANIFEST_NAME, BundleError, artifacts, default_artifact, load_manifest
from mobile_app.runtime.runtime_versions import missing_runtime
from mobile_app.runtime.contract import PARITY_JSON, PARITY_MD, PARITY_PNG, VERIFIED_ON
from mobile_app.runtime.backend_factory import open_entry
from mobile_app.runtime.task_runner import TaskRunner, input_fields, prediction_key

SNIPPET_CHARS = 80


def _snippet(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"


def _metric(spec, examples: list[dict], predictions: list) -> float:
    if spec.is_qa:
        return squad_scores({ex["id"]: pred[2] for ex, pred in zip(examples, predictions)}, examples)[spec.metric]
    if spec.metric != "accuracy":
        raise ValueError(f"verify has no metric {spec.metric!r}")
    return accuracy(predictions, [ex["label"] for ex in examples])


def _merged_pairs(head: str, reference: list[dict], candidate: list[dict], windows: list) -> dict:
    """Compared arrays of all windows of one example, concatenated per quantity."""
    import numpy as np

    merged: dict[str, tuple[list, list]] = {}
    for ref, got, window in zip(reference, candidate, windows):
        for name, (a, b) in compared_outputs(head, ref, got, len(window.input_ids)).items():
            merged.setdefault(name, ([], []))
            merged[name][0].append(a)
            merged[name][1].append(b)
    return {name: (np.concatenate(a), np.concatenate(b)) for name, (a, b) in merged.items()}


def _coreml_evaluator(path, entry: dict, buckets=None, pad_id: int = 0):
    """Core ML off macOS: coremltools' MIL evaluator of the saved program (imported only when a Core ML file is opened)."""
    from export.verify.coreml_eval import CoreMLEvaluatorBackend

    return CoreMLEvaluatorBackend(path, entry, buckets, pad_id=pad_id)


# where Core ML cannot run, verify checks Core ML artifacts with coremltools' evaluator (the phone never does)
OFF_DEVICE = {"coreml": _coreml_evaluator}


def artifact_kind(entry: dict) -> str:
    """`format/precision`, the key of the parity threshold table."""
    return f"{entry.get('format')}/{entry.get('precision')}"


def _inprocess_label(backend) -> str:
    """How the matrix names the runtime of an in-process Core ML check: Core ML itself, or coremltools' evaluator."""
    from importlib.metadata import version

    name = "core-ml" if backend.name == "coreml" else "coremltools-evaluator"
    return f"{name}-{version('coremltools')}"


def _per_example(windows: list[list], flat: list[dict]) -> list[list[dict]]:
    """Regroup a flat list of window outputs by example."""
    grouped, start = [], 0
    for example_windows in windows:
        grouped.append(flat[start:start + len(example_windows)])
        start += len(example_windows)
    return grouped


class _Evaluation:
    """The eval examples, their on-device encodings and the PyTorch reference: what every artifact row is tallied against."""

    def __init__(self, spec, reference: TaskRunner, examples: list[dict], runs: list, table: dict):
        self.spec, self.reference, self.manifest, self.examples, self.table = spec, reference, reference.manifest, examples, table
        self.windows = [run.inputs for run in runs]
        self.reference_outputs = [run.outputs for run in runs]
        self.reference_predictions = [prediction_key(run.result) for run in runs]
        self.reference_metric = _metric(spec, examples, self.reference_predictions)

    def prediction(self, index: int, outputs: list[dict]):
        """The app's answer to example `index` from an artifact's outputs of its windows, as parity compares it."""
        return prediction_key(self.reference.predict(self.examples[index], self.windows[index], outputs))

    def tally(self, entry: dict, outputs: list[list[dict]], predictions: list, runtime: str | None) -> tuple[ArtifactParity, dict]:
        """The parity row of an artifact's outputs of the first len(outputs) examples (an emulated row sees fewer),
        its metric gap against the reference's on those same examples."""
        kind, count = artifact_kind(entry), len(outputs)
        tally = ArtifactParity(entry["file"], kind, self.table.get(kind, FALLBACK_THRESHOLD), runtime=runtime)
        for index, (example, example_windows) in enumerate(zip(self.examples[:count], self.windows)):
            described = {"index": index, "id": example.get("id", index), "text": _snippet(example.get("question") or example.get("text", ""))}
            tally.add(described, _merged_pairs(self.spec.head, self.reference_outputs[index], outputs[index], example_windows),
                      self.reference_predictions[index], predictions[index])
        tally.metric = _metric(self.spec, self.examples[:count], tally.predictions)
        reference = self.reference_metric if count == len(self.examples) else \
            _metric(self.spec, self.examples[:count], self.reference_predictions[:count])
        return tally, tally.summary(reference, self.spec.metric)


def _runtime_row(evaluation: _Evaluation, bundle_dir: Path, entry: dict, runtime, threads: int, count: int) -> tuple[dict, list | None]:
    """One TFLite artifact on one runtime, on the first `count` examples: its parity row (and per-example diffs), or the
    reason it has none. An emulated row that fails is re-run on the other QEMU build before it counts as the kernel's."""
    if not is_installed(runtime):
        return unchecked_row(entry, runtime, NOT_INSTALLED, f"no environment {runtime.env_dir()}; run `make setup`"), None
    lacking = missing_runtime(entry, runtime.tflite_version)
    if lacking:
        return unchecked_row(entry, runtime, NOT_FOR_RUNTIME, f"{lacking}; the app opens another file there"), None
    if not runtime.emulated:
        return _worker_row(evaluation, bundle_dir, entry, runtime, threads, count, None)
    runs = [_worker_row(evaluation, bundle_dir, entry, runtime, threads, count, qemu) for qemu in runtime.qemus()[:1]]
    if not runs[0][0]["passed"]:
        runs += [_worker_row(evaluation, bundle_dir, entry, runtime, threads, count, qemu) for qemu in runtime.qemus()[1:]]
    row, diffs = next((run for run in runs if run[0]["passed"]), runs[0])
    row["emulator_runs"] = [{"emulator": r["emulator"], "status": r["status"], "passed": r["passed"], "agreement": r.get("agreement")}
                            for r, _ in runs]
    if len(runs) > 1:
        emulators = [r["emulator"] for r, _ in runs]
        if row["passed"]:
            row["reason"] = (f"fails on {emulators[0]} but passes on {row['emulator']}: an emulator defect, not the "
                             f"interpreter's ARM kernels ({runs[0][0]['failures'][0] if runs[0][0]['failures'] else runs[0][0]['status']})")
        else:
            row["failures"] = row["failures"] + [f"{entry['file']} on {runtime.name}: fails on {' and '.join(emulators)} alike: "
                                                 "an ARM kernel failure, not an emulator's"]
    return row, diffs


def _worker_row(evaluation: _Evaluation, bundle_dir: Path, entry: dict, runtime, threads: int, count: int,
                qemu: str | None) -> tuple[dict, list | None]:
    """One run of the runtime's worker (an emulated one under QEMU build `qemu`) and its parity row."""
    emulator = None
    if qemu is not None:
        emulator = f"QEMU {arm64.qemu_version(arm64.qemu_path(runtime.env_dir(), qemu))} -cpu {runtime.cpu}"
    result = run_worker(runtime, bundle_dir, entry["file"], evaluation.examples[:count], num_threads=threads, qemu=qemu)
    found = result.get("interpreter")
    row, diffs = _checked_row(evaluation, entry, runtime, threads, result, found)
    label = runtime.label if emulator is None else f"{runtime.package} {runtime.version} aarch64, {emulator}"
    row.update(runtime_label=label, interpreter=interpreter_label(found, emulator), emulator=emulator, cpu=runtime.cpu)
    return row, diffs


def _checked_row(evaluation: _Evaluation, entry: dict, runtime, threads: int, result: dict, found: dict | None) -> tuple[dict, list | None]:
    mismatch = runtime_mismatch(runtime, found)
    if mismatch:
        return unchecked_row(entry, runtime, FAILS, mismatch, found), None
    if not result["loaded"]:
        return unchecked_row(entry, runtime, DOES_NOT_LOAD, result["error"], found), None
    if result["failed_at"] is not None:
        return unchecked_row(entry, runtime, FAILS, f"example #{result['failed_at']}: {result['error']}", found), None
    problems, predictions = check_runtime_result(result, evaluation.windows, evaluation.prediction)
    tally, row = evaluation.tally(entry, [got["outputs"] for got in result["examples"]], predictions, runtime.name)
    row["failures"] += [f"{tally.label}: {problem}" for problem in problems]
    row.update(runtime=runtime.name, runtime_label=runtime.label, status=CHECKED, reason=None, interpreter=interpreter_label(found),
               latency_ms=latency_summary([got["latency_ms"] for got in result["examples"]], threads), passed=not row["failures"])
    return row, tally.diffs


def _inprocess_row(evaluation: _Evaluation, bundle_dir: Path, entry: dict, progress: bool) -> tuple[dict, list]:
    """A Core ML artifact in this process, opened by the runtime's backend factory (Core ML on macOS, the MIL evaluator
    elsewhere). A backend that batches (the evaluator) runs the windows the app's runner encoded all at once."""
    reference = evaluation.reference
    backend = open_entry(bundle_dir, evaluation.manifest, entry, pad_id=reference.tokenizer.pad_id, off_device=OFF_DEVICE)
    if hasattr(backend, "run_batch"):
        flat = backend.run_batch([input_fields(w) for windows in evaluation.windows for w in windows], progress=progress)
        outputs = _per_example(evaluation.windows, flat)
    else:
        runner = TaskRunner(bundle_dir, evaluation.manifest, reference.tokenizer, backend, entry["format"])
        outputs = [runner.run_example(example).outputs for example in tqdm(evaluation.examples, desc=entry["file"], unit="ex",
                                                                          disable=not progress, leave=False)]
    predictions = [evaluation.prediction(index, out) for index, out in enumerate(outputs)]
    tally, row = evaluation.tally(entry, outputs, predictions, None)
    label = _inprocess_label(backend)
    row.update(runtime=label, runtime_label=label, status=CHECKED, reason=None, interpreter=label, latency_ms=None)
    return row, tally.diffs


# examples an emulated ARM64 row runs by default: the shipped hybrid int8 file of a demo student took about 0.3 s per
# SST-2 sentence under QEMU (benchmarks/RESULTS.md)
DEFAULT_ARM_EXAMPLES = 200

# at most this many checks at once: each old interpreter's worker holds its own TensorFlow in memory
MAX_LANES = 4


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers narrow; else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _lanes(jobs: int) -> tuple[int, int]:
    """(checks run at once, interpreter threads each): one check per core, since a worker gains little from a second
    thread (TFLite 2.8 ran QA at the same speed on 1 and 2) and the Core ML evaluator uses one."""
    cores = _cores()
    lanes = max(1, min(jobs, cores, MAX_LANES))
    return lanes, max(1, cores // lanes)


def _slowest_first(jobs: list[tuple], selected: list) -> list[int]:
    """Job indices, the likely slowest first so that the lanes end together: older interpreters (later in the
    runtime list) ran the same file several times slower than LiteRT, and the Core ML evaluator sits between."""
    def cost(index: int) -> int:
        runtime = jobs[index][1]
        if runtime is None:
            return 1
        return 2 * selected.index(runtime) + (100 if runtime.emulated else 0)
    return sorted(range(len(jobs)), key=cost, reverse=True)


def _run_jobs(check, jobs: list[tuple], order: list[int], lanes: int, progress: bool) -> list:
    """check(job) for every job, `lanes` at a time (threads: TFLite checks wait on their worker process), in job order."""
    results: list = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=lanes) as pool, \
            tqdm(total=len(jobs), desc="artifacts x runtimes", unit="run", disable=not progress) as bar:
        futures = {pool.submit(check, jobs[index]): index for index in order}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    return results


def diff_key(row: dict) -> str:
    """The key of a row's per-example differences in parity.json's "diffs"."""
    return f"{row['name']} @ {row['runtime']}"


def task_for_bundle(manifest: dict, student_dir: Path, given: TaskSpec | None) -> TaskSpec:
    """The task whose eval data verifies a bundle: the one given, the definition saved with its student, or the demo
    task of its name; its labels are the bundle's."""
    if given is not None:
        spec = given
    elif (student_dir / TASK_FILE).is_file():
        spec = read_task_file(student_dir / TASK_FILE)
    elif manifest["task"] in demo_task_names():
        spec = get_task(manifest["task"])
    else:
        raise UserError(f"no eval data known for task {manifest['task']!r}; pass --eval-file (and its --text-column/--label-column)")
    if spec.head != manifest["head"]:
        raise UserError(f"the eval data is for a {spec.head} task but the bundle is a {manifest['head']} model; pass its own data")
    return spec if spec.is_qa else spec.with_labels(manifest["labels"])


def verify_bundle(bundle_dir: str | Path, data_dir: str | Path | None = None, student_dir: str | Path | None = None,
                  max_examples: int | None = None, thresholds: dict | None = None, progress: bool = True,
                  runtimes: list[str] | None = None, matrix: str = "all", task: TaskSpec | None = None,
                  student_mismatch_ok: bool = False, arm_examples: int = DEFAULT_ARM_EXAMPLES) -> dict:
    """Run the parity check on `runtimes` (names; default every installed one), write parity.json/.md/.png into the
    bundle and `verified_on` into bundle.json, and return the parity report.

    `matrix`: "all" runs every .tflite on every x86-64 runtime; "shipped" runs on each runtime the file the app opens
    there (mobile_app.runtime.bundle.default_artifact, by its TFLite version) and the other .tflite files on the first
    one only. A file that needs a newer TFLite than a runtime's is a neutral row there. An emulated ARM64 runtime runs
    only the file the app opens there, on the first `arm_examples` examples (an old interpreter's row, whose file
    computes in float, its Runtime.example_share of them): emulation is slow.
    `task`: where the eval examples are (from the verify command's data flags); default: the definition saved with
    the student, else the demo task of the bundle's name. `student_mismatch_ok`: prove the bundle against a student
    other than the one it was exported from (refused otherwise; the report then says so). Holds the bundle's writer
    lock throughout (export/writer_lock.py)."""
    with bundle_writer(bundle_dir, "verifying"):
        return _verify_bundle(bundle_dir, data_dir, student_dir, max_examples, thresholds, progress, runtimes, matrix, task,
                              student_mismatch_ok, arm_examples)


def _verify_bundle(bundle_dir, data_dir, student_dir, max_examples, thresholds, progress, runtimes, matrix, task,
                   student_mismatch_ok, arm_examples) -> dict:
    if matrix not in MATRIX_CHOICES:
        raise UserError(f"unknown matrix {matrix!r}; choose one of: {', '.join(MATRIX_CHOICES)}")
    from mobile_app.runtime.tokenizer import WordPieceTokenizer

    selected = select_runtimes(runtimes)
    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    entries = artifacts(manifest)
    if not entries:
        raise BundleError(f"{bundle_dir} holds no artifacts to verify; export some with `python -m export tflite`")
    if max_examples is not None and max_examples < 1:
        raise UserError(f"--max-examples must be at least 1, got {max_examples}")
    if arm_examples < 1:
        raise UserError(f"--arm-examples must be at least 1, got {arm_examples}")
    student_dir = Path(student_dir or manifest.get("student") or "")
    if not student_dir.is_dir():
        raise UserError(f"student folder {student_dir} does not exist; pass --student, the folder the bundle was exported from")
    spec = task_for_bundle(manifest, student_dir, task)
    model = ExportableBert(load_student(student_dir))
    if model.head != manifest["head"]:
        raise UserError(f"{student_dir} is a {model.head} model but {bundle_dir} is a {manifest['head']} bundle; pass the student it was exported from")
    mismatch = _student_mismatch(student_dir, manifest, bundle_dir, student_mismatch_ok)
    table = thresholds_with(thresholds, head=manifest["head"])
    tokenizer = WordPieceTokenizer.from_manifest(bundle_dir, manifest)
    examples = spec.eval_examples(data_dir)[:max_examples]
    check_labels(model.model, student_dir, manifest, bundle_dir)
    check_tokenizer(student_dir, tokenizer, spec, examples, bundle_dir)
    reference = TaskRunner(bundle_dir, manifest, tokenizer, TorchRunner(model, manifest["buckets"], tokenizer.pad_id), "pytorch")
    started = time.perf_counter()
    runs = [reference.run_example(ex) for ex in tqdm(examples, desc=f"pytorch student {spec.name}", unit="ex", disable=not progress)]
    evaluation = _Evaluation(spec, reference, examples, runs, table)
    tflite = artifacts(manifest, "tflite")
    # the file the app opens on each runtime (contract.py's rule, by its TFLite version)
    shipped = {runtime.name: (default_artifact(tflite, runtime.tflite_version) or {}).get("file") for runtime in selected}
    native = [runtime for runtime in selected if not runtime.emulated]

    def runtimes_of(entry: dict) -> list:
        """Every file on every native runtime ("all") or each runtime's own file and the rest on the first; an emulated
        runtime runs only the file the app opens there."""
        if entry.get("format") != "tflite":
            return [None]
        own = [runtime for runtime in selected if shipped[runtime.name] == entry["file"]]
        if matrix == "all":
            return list(dict.fromkeys(native + [r for r in own if r.emulated]))
        return list(dict.fromkeys(native[:1] + own))

    jobs = [(entry, runtime) for entry in entries for runtime in runtimes_of(entry)]
    lanes, threads = _lanes(len(jobs))
    # coremltools keeps the MIL block being built or evaluated in a module-level stack: one in-process check at a time
    in_process = threading.Lock()

    def check(job: tuple) -> tuple[dict, list | None]:
        entry, runtime = job
        if runtime is not None:
            count = runtime.examples_of(len(examples), arm_examples)
            row, diff = _runtime_row(evaluation, bundle_dir, entry, runtime, threads, count)
        else:
            with in_process:
                row, diff = _inprocess_row(evaluation, bundle_dir, entry, progress and lanes == 1)
        row.update(file=entry["file"], format=entry["format"], precision=entry.get("precision"), size_bytes=entry.get("size_bytes"),
                   kind=artifact_kind(entry))
        return row, diff

    done = _run_jobs(check, jobs, _slowest_first(jobs, selected), lanes, progress)
    rows, diffs = [row for row, _ in done], {diff_key(row): diff for row, diff in done if diff is not None}
    report = {"task": spec.name, "head": spec.head, "metric_name": spec.metric, "examples": len(examples),
              "split": "eval", "student": str(student_dir), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "seconds": round(time.perf_counter() - started, 2), "reference": {"metric": evaluation.reference_metric},
              "runtimes": [{"name": r.name, "package": r.package, "version": r.version, "module": r.module,
                            "environment": str(r.env_dir() or "main"), "installed": is_installed(r)} for r in selected],
              "artifacts": rows, "failures": [f for row in rows for f in row["failures"]], "diffs": diffs}
    if mismatch:
        report["student_mismatch"] = mismatch
    report["passed"] = not report["failures"]
    write_parity(bundle_dir, report)
    return report


def _student_mismatch(student_dir: Path, manifest: dict, bundle_dir: Path, allowed: bool) -> dict | None:
    """None when student_dir is the student the bundle was exported from; else refused, or (allowed) a note for the report."""
    from export.bundle import student_fingerprint

    given, recorded = student_fingerprint(student_dir), manifest.get("student_sha256")
    if recorded is None or given == recorded:
        return None
    if not allowed:
        raise UserError(f"{student_dir} is not the student {bundle_dir} was exported from (sha256 {given[:12]} vs {recorded[:12]} in "
                        f"{MANIFEST_NAME}); pass the bundle's own student, or --student-mismatch-ok to prove the bundle against this one")
    return {"student_sha256": given, "bundle_student_sha256": recorded}


def _json_safe(value):
    """inf/nan become strings so parity.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def verified_on(report: dict, file: str) -> list[dict]:
    """bundle.json's record of the runtimes one artifact ran on (not installed ones are left out)."""
    return [{k: row.get(k) for k in ("runtime", "interpreter", "status", "passed")}
            for row in report["artifacts"] if row["name"] == file and row["status"] not in NEUTRAL]


def write_parity(bundle_dir: Path, report: dict) -> None:
    """parity.json, parity.md, the diff plot, and a summary in bundle.json; each file written atomically."""
    from export.verify.report import diff_plot_png, render_markdown
    from mobile_app.runtime.files import write_atomic

    write_atomic(bundle_dir / PARITY_PNG, diff_plot_png(report))
    write_atomic(bundle_dir / PARITY_MD, render_markdown(report, PARITY_PNG))
    write_atomic(bundle_dir / PARITY_JSON, json.dumps(_json_safe(report), indent=2) + "\n")
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["parity"] = _json_safe({"passed": report["passed"], "examples": report["examples"], "report": PARITY_JSON,
                                     "created_at": report["created_at"], "reference_metric": report["reference"]["metric"]})
    for entry in manifest.get("artifacts", []):
        entry[VERIFIED_ON] = _json_safe(verified_on(report, entry["file"]))
    write_atomic(bundle_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
