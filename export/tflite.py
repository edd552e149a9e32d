"""TFLite export: one .tflite file per precision and runtime profile, one signature per sequence-length bucket.

The float model is converted once with litert-torch (every bucket a signature `seq_<n>` of the same
module, so the weights are stored once); the other precisions are quantized from its bytes
(export/quantize.py), except int8-words4, quantized from a second float graph whose word lookup reads the packed
4-bit table (export/packed_words.py). A runtime profile (`--min-runtime`) is the oldest TFLite a file must run on;
by default a bundle gets the 2.8 profile's files, which every interpreter runs, and LiteRT's where they differ (hybrid
int8 on int8 kernels), so each interpreter opens the fastest file it can run (contract.py's rule). Each file's needs
(ops at the versions its tensors call for, buffer layout, oldest runtime; export/tflite_compat.py) go into its
manifest entry, where backends check them before loading; a precision no profile can have is left out, recorded
under the manifest's profile, and named in one console line. Files go into the task bundle through
export/bundle.py, so a failure leaves the previous bundle as it was.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm import tqdm

from distill.console import library_stdout
from mobile_app.runtime.errors import UserError
from export.bundle import base_manifest, staged_bundle, tool_versions, upsert_artifact
from export.quantize import check_precisions, parse_profiles, precision_notes, profile_gap, quantize_tflite
from export.student_folder import (check_buckets, check_labels, check_vocab_size, resolve_task,
                            tokenizer_settings, write_labels, write_vocab)
from export.packed_words import MODULE_SCOPE_REGEX, grid_gaps as word_grid_gaps
from export.wrapper import ExportableBert, load_student
from mobile_app.runtime.bundle import read_manifest
from mobile_app.runtime.contract import (ARTIFACT_PROFILE_FIELD, DEFAULT_TFLITE_PRECISIONS, LABELS_NAME, PACKED_WORDS_PRECISIONS,
                                         STUDENT_STAMP_KEY, TFLITE_NEEDS_FIELD, TFLITE_PROFILE_FIELD, VOCAB_NAME, signature_key)
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


def artifact_name(task: str, precision: str, profile: str | None = None) -> str:
    """`<task>_<precision>.tflite`, or for a later profile's file of the same precision `<task>_<precision>_rt<major.minor>.tflite`."""
    suffix = "" if profile is None else "_rt" + ".".join(profile.split(".")[:2])
    return f"{task}_{precision}{suffix}.tflite"


def _convert_all(model: ExportableBert, task: str, buckets: list[int], plan: dict[str, list[str]], calibration, progress: bool,
                 student_sha256: str):
    """Yield (manifest entry, .tflite bytes or None, the reason it was left out) per precision and profile of `plan`
    ({precision: [profiles, oldest first]}); a later profile's file is yielded only where its bytes differ from the
    precision's earlier ones. Conversion seconds include the shared float conversion."""
    from export.tflite_compat import inspect_tflite

    steps = tqdm(total=sum(map(len, plan.values())) + 1, desc=f"tflite {task}", disable=not progress, unit="step")
    steps.set_postfix_str(f"converting buckets {buckets}")
    start = time.perf_counter()
    float_model = convert_float(model, buckets)
    convert_seconds = time.perf_counter() - start
    packed_model, packed_seconds = None, 0.0
    steps.update()
    for precision, profiles in plan.items():
        made: list[bytes] = []
        for profile in profiles:
            steps.set_postfix_str(f"{precision} for TFLite {profile}")
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
                    data = quantize_tflite(source, precision, calibration, profile,
                                           keep_float=(MODULE_SCOPE_REGEX,) if precision in PACKED_WORDS_PRECISIONS else (),
                                           metadata={STUDENT_STAMP_KEY: student_sha256.encode()})
            except UserError:
                raise
            except Exception as error:  # the quantizer's own errors: name the precision that failed
                raise UserError(f"quantizing to {precision} failed ({type(error).__name__}: {error}); drop it from --precisions") from error
            steps.update()
            if data in made:  # this profile's recipe is the earlier one's: that file serves it
                continue
            seconds = convert_seconds + (packed_seconds if precision in PACKED_WORDS_PRECISIONS else 0.0) + time.perf_counter() - start
            needs = inspect_tflite(data)
            entry = {"file": artifact_name(task, precision, profile if made else None), "format": "tflite", "precision": precision,
                     ARTIFACT_PROFILE_FIELD: profile, "notes": precision_notes(precision, profile),
                     "signatures": {str(b): signature_key(b) for b in buckets}, "size_bytes": len(data),
                     "conversion_seconds": round(seconds, 2), TFLITE_NEEDS_FIELD: {k: v for k, v in needs.items() if k != "source"}}
            if version_key(needs["min_runtime"]) > version_key(profile):  # a guard behind profile_gap's early answer
                yield entry, None, f"it needs TFLite >= {needs['min_runtime']} ({needs['min_runtime_for']})"
                continue
            made.append(data)
            yield entry, data, None
    steps.close()


def _leave_out(stage: Path, manifest: dict, precision: str, min_runtime: str, reason: str) -> None:
    """Record that no profile can have `precision`, drop a stale .tflite of it, and say so in one line."""
    manifest[TFLITE_PROFILE_FIELD]["unavailable"][precision] = reason
    _drop_stale(stage, manifest, precision)
    tqdm.write(_left_out_line(precision, min_runtime, reason))


def _drop_stale(stage: Path, manifest: dict, precision: str) -> None:
    """The .tflite files of `precision` from an earlier export: replaced by this one's, or gone with it."""
    for entry in [e for e in manifest["artifacts"] if e.get("format") == "tflite" and e.get("precision") == precision]:
        manifest["artifacts"].remove(entry)
        (stage / entry["file"]).unlink(missing_ok=True)


def _left_out_line(precision: str, min_runtime: str, reason: str) -> str:
    return f"tflite: {precision} not exported for --min-runtime {min_runtime}: {reason}; a newer --min-runtime (e.g. litert) makes it"


def export_tflite(student_dir: str | Path, bundle_dir: str | Path, precisions=DEFAULT_TFLITE_PRECISIONS,
                  task: str | None = None, data_dir: str | Path | None = None, buckets=None,
                  calibration_examples: int = DEFAULT_CALIBRATION_EXAMPLES, progress: bool = True,
                  min_runtime=None) -> dict:
    """Convert a student folder into the task bundle at bundle_dir; returns the written manifest.

    `min_runtime`: the runtime profiles to make files for, one or several ('2.8', '2.14', ..., or 'litert' for the TFLite
    of LiteRT 2.3.0; default contract.DEFAULT_TFLITE_PROFILES: 2.8, the oldest interpreter of the verify matrix, and
    litert). Every precision gets the oldest profile's file it can have; a newer profile adds one where it differs."""
    precisions = check_precisions(precisions)
    profiles = parse_profiles(min_runtime)
    oldest, newest = profiles[0], profiles[-1]
    plan = {p: [profile for profile in profiles if not profile_gap(p, profile)] for p in precisions}
    gaps = {p: profile_gap(p, newest) for p, made in plan.items() if not made}
    if len(gaps) == len(precisions):
        for precision, reason in gaps.items():
            tqdm.write(_left_out_line(precision, newest, reason))
        raise UserError(f"none of {', '.join(precisions)} can be made for --min-runtime {newest}; nothing was written to {bundle_dir}")
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
        manifest[TFLITE_PROFILE_FIELD] = {"min_runtime": oldest, "profiles": profiles, "unavailable": {}}
        for precision, reason in gaps.items():
            _leave_out(stage, manifest, precision, newest, reason)
        for precision, reason in grid_gaps.items():
            _drop_stale(stage, manifest, precision)
            tqdm.write(f"tflite: {precision} not exported: {reason}")
        plan = {p: made for p, made in plan.items() if p not in gaps and p not in grid_gaps}
        for precision in plan:
            _drop_stale(stage, manifest, precision)
        calibration, calibration_seconds = None, 0.0
        if "int8-static" in plan:
            from export.model_inputs import calibration_set
            from mobile_app.runtime.tokenizer import WordPieceTokenizer

            began = time.perf_counter()
            wordpiece = WordPieceTokenizer.from_manifest(stage, manifest)
            calibration = calibration_set(spec, wordpiece, tokenizer, spec.load(data_dir)["train"], buckets, calibration_examples)
            calibration_seconds = time.perf_counter() - began
        written: dict[str, int] = {}
        for entry, data, reason in _convert_all(model, spec.name, buckets, plan, calibration, progress, manifest["student_sha256"]):
            precision = entry["precision"]
            if data is None:
                if not written.get(precision) and entry[ARTIFACT_PROFILE_FIELD] == plan[precision][-1]:
                    _leave_out(stage, manifest, precision, entry[ARTIFACT_PROFILE_FIELD], reason)
                continue
            written[precision] = written.get(precision, 0) + 1
            if precision == "int8-static":
                entry.update(calibration_examples=len(next(iter(calibration.values()))),
                             conversion_seconds=round(entry["conversion_seconds"] + calibration_seconds, 2))
            (stage / entry["file"]).write_bytes(data)
            upsert_artifact(manifest, entry)
        if not written:
            raise UserError(f"no requested precision runs on TFLite {newest}; nothing was written to {bundle_dir}")
    return read_manifest(bundle_dir)
