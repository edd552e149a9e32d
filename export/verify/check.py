"""`python -m export verify`: every artifact of a bundle against the PyTorch student on the task's real eval split.

Raw text goes through the on-device tokenizer and QA windowing (export/model_inputs.py), each model through
its runner (export/verify/runners.py), the comparison through export/verify/parity.py. The result lands in the bundle
as parity.json / parity.md / parity_diffs.png and a summary in bundle.json. parity.json layout:
  {"task", "head", "metric_name", "examples", "student", "reference": {"metric"}, "passed", "failures": [...],
   "artifacts": [{"name", "file", "format", "precision", "size_bytes", "kind", "compared", "examples",
                  "max_abs_diff", "mean_abs_diff", "agreement", "metric", "metric_gap", "threshold",
                  "worst_example", "first_disagreement", "passed", "failures"}],
   "diffs": {name: [per-example max abs diff]}}
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from distill.errors import UserError
from distill.metrics import accuracy, squad_scores
from distill.tasks import get_task
from export.model_inputs import encode_classification, encoded_fields, qa_windows
from export.verify.parity import FALLBACK_THRESHOLD, ArtifactParity, compared_outputs, thresholds_with
from export.verify.runners import TorchRunner, artifact_kind, artifact_label, artifact_runner
from export.wrapper import ExportableBert, load_student
from mobile_app.runtime.bundle import MANIFEST_NAME, BundleError, artifacts, load_manifest

PARITY_JSON, PARITY_MD, PARITY_PNG = "parity.json", "parity.md", "parity_diffs.png"
SNIPPET_CHARS = 80


def _snippet(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 1] + "…"


def _encodings(spec, tokenizer, settings: dict, example: dict) -> list:
    if spec.is_qa:
        return qa_windows(tokenizer, example, settings)
    return [encode_classification(tokenizer, example["text"], settings["max_seq_length"])]


def _prediction(spec, manifest: dict, example: dict, windows: list, outputs: list[dict]):
    """Top-1 label index (classification) or the answer span [start_char, end_char, text] (QA)."""
    if not spec.is_qa:
        from mobile_app.runtime.classify import classify, from_probabilities

        if "logits" in outputs[0]:
            return classify(outputs[0]["logits"], manifest["labels"]).index
        probabilities = outputs[0]["probabilities"]
        if isinstance(probabilities, dict):
            probabilities = [probabilities[label] for label in manifest["labels"]]
        return from_probabilities(probabilities, manifest["labels"]).index
    from mobile_app.runtime.qa import best_span

    answer = best_span(windows, [np.asarray(o["start_logits"]).reshape(-1) for o in outputs],
                       [np.asarray(o["end_logits"]).reshape(-1) for o in outputs], example["context"],
                       max_answer_length=manifest["tokenizer"].get("max_answer_length", spec.max_answer_length))
    return [answer.start_char, answer.end_char, answer.text]


def _metric(spec, examples: list[dict], predictions: list) -> float:
    if spec.is_qa:
        return squad_scores({ex["id"]: pred[2] for ex, pred in zip(examples, predictions)}, examples)[spec.metric]
    if spec.metric != "accuracy":
        raise ValueError(f"verify has no metric {spec.metric!r}")
    return accuracy(predictions, [ex["label"] for ex in examples])


def _merged_pairs(head: str, reference: list[dict], candidate: list[dict], windows: list, labels) -> dict:
    """Compared arrays of all windows of one example, concatenated per quantity."""
    merged: dict[str, tuple[list, list]] = {}
    for ref, got, window in zip(reference, candidate, windows):
        for name, (a, b) in compared_outputs(head, ref, got, len(encoded_fields(window)[0]), labels).items():
            merged.setdefault(name, ([], []))
            merged[name][0].append(a)
            merged[name][1].append(b)
    return {name: (np.concatenate(a), np.concatenate(b)) for name, (a, b) in merged.items()}


def _run_all(runner, feeds: list[tuple], label: str, progress: bool) -> list[dict]:
    """Outputs of every model input in order; batched when the runner offers `run_batch` (the Core ML evaluator)."""
    if hasattr(runner, "run_batch"):
        return runner.run_batch(feeds)
    return [runner.run(*feed) for feed in tqdm(feeds, desc=label, unit="input", disable=not progress, leave=False)]


def _per_example(windows: list[list], flat: list[dict]) -> list[list[dict]]:
    """Regroup a flat list of window outputs by example."""
    grouped, start = [], 0
    for example_windows in windows:
        grouped.append(flat[start:start + len(example_windows)])
        start += len(example_windows)
    return grouped


def verify_bundle(bundle_dir: str | Path, data_dir: str | Path | None = None, student_dir: str | Path | None = None,
                  max_examples: int | None = None, thresholds: dict | None = None, progress: bool = True) -> dict:
    """Run the parity check, write parity.json/.md/.png into the bundle, and return the parity report."""
    from mobile_app.runtime.tokenizer import WordPieceTokenizer

    bundle_dir = Path(bundle_dir)
    manifest = load_manifest(bundle_dir)
    entries = artifacts(manifest)
    if not entries:
        raise BundleError(f"{bundle_dir} holds no artifacts to verify; export some with `python -m export tflite`")
    if max_examples is not None and max_examples < 1:
        raise UserError(f"--max-examples must be at least 1, got {max_examples}")
    spec = get_task(manifest["task"])
    student_dir = Path(student_dir or manifest.get("student") or "")
    model = ExportableBert(load_student(student_dir))
    if model.head != manifest["head"]:
        raise UserError(f"{student_dir} is a {model.head} model but {bundle_dir} is a {manifest['head']} bundle; pass the student it was exported from")
    table = thresholds_with(thresholds, head=manifest["head"])
    tokenizer = WordPieceTokenizer.from_manifest(bundle_dir, manifest)
    settings = manifest["tokenizer"]
    examples = spec.load(data_dir)["eval"][:max_examples]
    reference = TorchRunner(model, manifest["buckets"], tokenizer.pad_id)
    runners = [artifact_runner(bundle_dir, entry) for entry in entries]
    tallies = [ArtifactParity(artifact_label(e), artifact_kind(e), table.get(artifact_kind(e), FALLBACK_THRESHOLD)) for e in entries]
    started = time.perf_counter()
    windows = [_encodings(spec, tokenizer, settings, ex) for ex in tqdm(examples, desc=f"encode {spec.name}", unit="ex", disable=not progress)]
    feeds = [encoded_fields(w) for example_windows in windows for w in example_windows]
    reference_outputs = _per_example(windows, _run_all(reference, feeds, "pytorch student", progress))
    reference_predictions = [_prediction(spec, manifest, ex, w, out) for ex, w, out in zip(examples, windows, reference_outputs)]
    for tally, runner in zip(tallies, runners):
        outputs = _per_example(windows, _run_all(runner, feeds, tally.name, progress))
        for index, (example, example_windows) in enumerate(zip(examples, windows)):
            described = {"index": index, "id": example.get("id", index), "text": _snippet(example.get("question") or example.get("text", ""))}
            tally.add(described, _merged_pairs(spec.head, reference_outputs[index], outputs[index], example_windows, manifest["labels"]),
                      reference_predictions[index], _prediction(spec, manifest, example, example_windows, outputs[index]))
    reference_metric = _metric(spec, examples, reference_predictions)
    rows = []
    for entry, tally in zip(entries, tallies):
        tally.metric = _metric(spec, examples, tally.predictions)
        row = tally.summary(reference_metric, spec.metric)
        row.update(file=entry["file"], format=entry["format"], precision=entry.get("precision"), size_bytes=entry.get("size_bytes"))
        rows.append(row)
    report = {"task": spec.name, "head": spec.head, "metric_name": spec.metric, "examples": len(examples),
              "split": "eval", "student": str(student_dir), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "seconds": round(time.perf_counter() - started, 2), "reference": {"metric": reference_metric},
              "artifacts": rows, "failures": [f for row in rows for f in row["failures"]],
              "diffs": {t.name: t.diffs for t in tallies}}
    report["passed"] = not report["failures"]
    write_parity(bundle_dir, report)
    return report


def _json_safe(value):
    """inf/nan become strings so parity.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_parity(bundle_dir: Path, report: dict) -> None:
    """parity.json, parity.md, the diff plot, and a summary in bundle.json; each file written atomically."""
    from export.verify.report import diff_plot_png, render_markdown
    from mobile_app.runtime.files import write_atomic

    write_atomic(bundle_dir / PARITY_PNG, diff_plot_png(report))
    write_atomic(bundle_dir / PARITY_MD, render_markdown(report, PARITY_PNG))
    write_atomic(bundle_dir / PARITY_JSON, json.dumps(_json_safe(report), indent=2) + "\n")
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["parity"] = _json_safe({
        "passed": report["passed"], "examples": report["examples"], "report": PARITY_JSON, "created_at": report["created_at"],
        "reference_metric": report["reference"]["metric"],
        "artifacts": {row["name"]: {k: row[k] for k in ("passed", "max_abs_diff", "mean_abs_diff", "agreement", "metric")} for row in report["artifacts"]}})
    write_atomic(bundle_dir / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
