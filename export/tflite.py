"""TFLite export: one .tflite file per precision, one signature per sequence-length bucket, weights shared.

The float model is converted once with litert-torch (every bucket a signature `seq_<n>` of the same
module, so the weights are stored once); the other precisions are quantized from its bytes
(export/quantize.py), except int8-words4, quantized from a second float graph whose word lookup reads the packed
4-bit table (export/packed_words.py), for a runtime profile (`min_runtime`, the oldest TFLite the files must run on). Each
file's needs (ops at the versions its tensors call for, buffer layout, oldest runtime; export/tflite_compat.py)
go into its manifest entry, where backends check them before loading; a precision the profile cannot have is
left out, recorded under the manifest's profile, and named in one console line. Files go into the task bundle
through export/bundle.py, so a failure leaves the previous bundle as it was.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from distill.console import library_stdout
from mobile_app.runtime.errors import UserError
from export.bundle import base_manifest, staged_bundle, tool_versions, upsert_artifact
from export.quantize import check_precisions, parse_min_runtime, precision_notes, profile_gap, quantize_tflite
from export.student_folder import (check_buckets, check_labels, check_vocab_size, resolve_task,
                            tokenizer_settings, write_labels, write_vocab)
from export.packed_words import MODULE_SCOPE_REGEX, grid_gaps as word_grid_gaps
from export.wrapper import ExportableBert, load_student
from mobile_app.runtime.bundle import read_manifest
from mobile_app.runtime.contract import (DEFAULT_TFLITE_PRECISIONS, LABELS_NAME, PACKED_WORDS_PRECISIONS, STUDENT_STAMP_KEY, TFLITE_NEEDS_FIELD,
                                         TFLITE_PROFILE_FIELD, VOCAB_NAME, signature_key)
from mobile_app.runtime.runtime_versions import version_key

DEFAULT_CALIBRATION_EXAMPLES = 256




class _NamedOutputs(torch.nn.Module):
    """Returns a dict so the signature outputs carry the manifest's names (logits / start_logits, end_logits)."""

    def __init__(self, model: ExportableBert):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids, attention_mask, token_type_ids)
        out = out if isinstance(out, tuple) else (out,)
        return dict(zip(self.model.output_names, out))


def convert_float(model: ExportableBert, buckets: list[int]) -> bytes:
    """The fp32 .tflite bytes of `model` with one batch-1 int32 signature per bucket."""
    import litert_torch

    named = _NamedOutputs(model).eval()
    converter = None
    for bucket in buckets:
        ids, mask, types = model.example_inputs(bucket)
        sample = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        converter = (litert_torch.signature if converter is None else converter.signature)(signature_key(bucket), named, sample_kwargs=sample)
    with torch.no_grad(), library_stdout():
        edge_model = converter.convert()
    return bytes(edge_model.model_content())


def artifact_name(task: str, precision: str) -> str:
    return f"{task}_{precision}.tflite"


def _convert_all(model: ExportableBert, task: str, buckets: list[int], precisions: list[str], calibration, progress: bool,
                 min_runtime: str, student_sha256: str):
    """Yield (manifest entry, .tflite bytes or None with the reason it was left out) per precision; conversion
    seconds include the shared float conversion."""
    from export.tflite_compat import inspect_tflite

    steps = tqdm(total=len(precisions) + 1, desc=f"tflite {task}", disable=not progress, unit="step")
    steps.set_postfix_str(f"converting buckets {buckets}")
    start = time.perf_counter()
    float_model = convert_float(model, buckets)
    convert_seconds = time.perf_counter() - start
    packed_model, packed_seconds = None, 0.0
    steps.update()
    for precision in precisions:
        steps.set_postfix_str(precision)
        start = time.perf_counter()
        source = float_model
        if precision in PACKED_WORDS_PRECISIONS:  # its own float graph: the word lookup reads the packed 4-bit table
            if packed_model is None:
                packed_model = convert_float(ExportableBert(model.model, packed_words=True), buckets)
                packed_seconds = time.perf_counter() - start
                start = time.perf_counter()
            source = packed_model
        try:
            with library_stdout():
                data = quantize_tflite(source, precision, calibration, min_runtime,
                                       keep_float=(MODULE_SCOPE_REGEX,) if precision in PACKED_WORDS_PRECISIONS else (),
                                       metadata={STUDENT_STAMP_KEY: student_sha256.encode()})
        except UserError:
            raise
        except Exception as error:  # the quantizer's own errors: name the precision that failed
            raise UserError(f"quantizing to {precision} failed ({type(error).__name__}: {error}); drop it from --precisions") from error
        seconds = convert_seconds + (packed_seconds if precision in PACKED_WORDS_PRECISIONS else 0.0) + time.perf_counter() - start
        needs = inspect_tflite(data)
        entry = {"file": artifact_name(task, precision), "format": "tflite", "precision": precision,
                 "notes": precision_notes(precision, min_runtime), "signatures": {str(b): signature_key(b) for b in buckets},
                 "size_bytes": len(data), "conversion_seconds": round(seconds, 2),
                 TFLITE_NEEDS_FIELD: {key: value for key, value in needs.items() if key != "source"}}
        if version_key(needs["min_runtime"]) > version_key(min_runtime):  # a guard behind profile_gap's early answer
            yield entry, None, f"it needs TFLite >= {needs['min_runtime']} ({needs['min_runtime_for']})"
        else:
            yield entry, data, None
        steps.update()
    steps.close()


def _leave_out(stage: Path, manifest: dict, precision: str, min_runtime: str, reason: str) -> None:
    """Record that the profile cannot have `precision`, drop a stale .tflite of it, and say so in one line."""
    profile = manifest.setdefault(TFLITE_PROFILE_FIELD, {"min_runtime": min_runtime, "unavailable": {}})
    profile["unavailable"][precision] = reason
    _drop_stale(stage, manifest, precision)
    tqdm.write(_left_out_line(precision, min_runtime, reason))


def _drop_stale(stage: Path, manifest: dict, precision: str) -> None:
    """A .tflite of `precision` from an earlier export described another student: it leaves the bundle."""
    for entry in [e for e in manifest["artifacts"] if e.get("format") == "tflite" and e.get("precision") == precision]:
        manifest["artifacts"].remove(entry)
        (stage / entry["file"]).unlink(missing_ok=True)


def _left_out_line(precision: str, min_runtime: str, reason: str) -> str:
    return f"tflite: {precision} not exported for --min-runtime {min_runtime}: {reason}; a newer --min-runtime (e.g. litert) makes it"


def export_tflite(student_dir: str | Path, bundle_dir: str | Path, precisions=DEFAULT_TFLITE_PRECISIONS,
                  task: str | None = None, data_dir: str | Path | None = None, buckets=None,
                  calibration_examples: int = DEFAULT_CALIBRATION_EXAMPLES, progress: bool = True,
                  min_runtime: str | None = None) -> dict:
    """Convert a student folder into the task bundle at bundle_dir; returns the written manifest.

    `min_runtime`: the oldest TFLite runtime the files must load and run on ('2.8', '2.14', ..., or 'litert' for the
    TFLite of LiteRT 2.3.0; default 2.8, the oldest interpreter of the verify matrix)."""
    precisions = check_precisions(precisions)
    min_runtime = parse_min_runtime(min_runtime)
    gaps = {p: reason for p in precisions if (reason := profile_gap(p, min_runtime))}
    if len(gaps) == len(precisions):
        for precision, reason in gaps.items():
            tqdm.write(_left_out_line(precision, min_runtime, reason))
        raise UserError(f"none of {', '.join(precisions)} can be made for --min-runtime {min_runtime}; nothing was written to {bundle_dir}")
    model = ExportableBert(load_student(student_dir))
    grid_gaps = word_grid_gaps(model.bert.embeddings.word_embeddings.weight, precisions)
    if grid_gaps and len(set(grid_gaps) | set(gaps)) == len(precisions):
        raise UserError(f"{next(iter(grid_gaps))} cannot be made from {student_dir}: {next(iter(grid_gaps.values()))}; "
                        f"nothing was written to {bundle_dir}")
    spec = resolve_task(student_dir, task, model.head, model.model.config, bundle_dir)
    check_labels(model.model, spec)
    buckets = check_buckets(buckets or spec.buckets, model.max_positions)
    tokenizer = tokenizer_settings(student_dir, spec, buckets)
    fresh = base_manifest(spec, Path(student_dir).resolve(), tokenizer)
    fresh["buckets"] = buckets
    fresh["tools"] = tool_versions()

    with staged_bundle(bundle_dir, fresh) as (stage, manifest):
        manifest.pop("parity", None)  # it described the artifacts being replaced; `verify` writes a fresh one
        check_vocab_size(write_vocab(student_dir, stage / VOCAB_NAME), model.model)
        if write_labels(spec, stage / LABELS_NAME):
            manifest["extra_files"] = sorted(set(manifest.get("extra_files", [])) | {LABELS_NAME})
        manifest[TFLITE_PROFILE_FIELD] = {"min_runtime": min_runtime, "unavailable": {}}
        for precision, reason in gaps.items():
            _leave_out(stage, manifest, precision, min_runtime, reason)
        for precision, reason in grid_gaps.items():
            _drop_stale(stage, manifest, precision)
            tqdm.write(f"tflite: {precision} not exported: {reason}")
        precisions = [p for p in precisions if p not in gaps and p not in grid_gaps]
        calibration, calibration_seconds = None, 0.0
        if "int8-static" in precisions:
            from export.model_inputs import calibration_set
            from mobile_app.runtime.tokenizer import WordPieceTokenizer

            began = time.perf_counter()
            wordpiece = WordPieceTokenizer.from_manifest(stage, manifest)
            calibration = calibration_set(spec, wordpiece, tokenizer, spec.load(data_dir)["train"], buckets, calibration_examples)
            calibration_seconds = time.perf_counter() - began
        written = 0
        for entry, data, reason in _convert_all(model, spec.name, buckets, precisions, calibration, progress, min_runtime,
                                                  manifest["student_sha256"]):
            if data is None:
                _leave_out(stage, manifest, entry["precision"], min_runtime, reason)
                continue
            written += 1
            if entry["precision"] == "int8-static":
                entry.update(calibration_examples=len(next(iter(calibration.values()))),
                             conversion_seconds=round(entry["conversion_seconds"] + calibration_seconds, 2))
            (stage / entry["file"]).write_bytes(data)
            upsert_artifact(manifest, entry)
        if not written:
            raise UserError(f"no requested precision runs on TFLite {min_runtime}; nothing was written to {bundle_dir}")
    return read_manifest(bundle_dir)
