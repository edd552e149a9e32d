"""Core ML export: the student as ML Program (.mlpackage) variants in the task bundle.

One trace of `ExportableBert` is converted once per compute precision (fp16, fp32); the weight-compressed
variants (int8 linear, 6- and 4-bit k-means palettes) are derived from the fp16 program, so every variant
holds the same graph. Sequence length is flexible: enumerated over the task buckets (needs iOS 18, the first
release allowing several enumerated inputs) or a range up to the longest bucket (iOS 16).
Classifiers carry their labels (ct.ClassifierConfig: a `label` and a `label_probs` output, softmax inside);
QA models return `start_logits` and `end_logits`.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mobile_app.runtime.errors import UserError
from export.bundle import base_manifest, staged_bundle, upsert_artifact
from export.student_folder import check_buckets, check_labels, check_vocab_size, resolve_task, tokenizer_settings, write_labels, write_vocab
from export.packed_words import grid_gaps
from export.wrapper import ExportableBert, load_student, word_table
from mobile_app.runtime.contract import (COREML_LABEL_OUTPUT, COREML_PROBABILITIES_OUTPUT, COREML_VARIANTS, INPUT_NAMES, OUTPUT_NAMES,
                                         PACKED_WORDS_PRECISIONS)

FLEXIBLE_MODES = ("enumerated", "range")
# Weights with fewer elements stay fp16 (LayerNorm, biases); low enough that tiny test models still get compressed.
COMPRESS_MIN_ELEMENTS = 512
DEPLOYMENT_TARGET = {"enumerated": "iOS18", "range": "iOS16"}
VARIANT_NOTES = {
    "fp16": "fp16 weights and compute",
    "fp32": "fp32 weights and compute",
    "int8": "int8 per-channel symmetric weights (dequantized to fp16), fp16 compute",
    "int8-words4": "int8 as above, the word table as its 4-bit grid: 16 levels per row (fp16 lookup table per row), fp16 compute",
    "palettize6": "6-bit k-means palette per tensor (fp16 lookup table), fp16 compute",
    "palettize4": "4-bit k-means palette per tensor (fp16 lookup table), fp16 compute",
}


class _ConvertibleModule(torch.nn.Module):
    """ExportableBert as the converter wants it: classifiers end in softmax (ct.ClassifierConfig reads its one
    output as class probabilities); QA passes through. Tracing ExportableBert as a submodule, not the top
    module, also keeps its shape arithmetic 0-d, which coremltools 9 with numpy 2 needs."""

    def __init__(self, wrapper: ExportableBert):
        super().__init__()
        self.wrapper = wrapper

    def forward(self, input_ids, attention_mask, token_type_ids):
        outputs = self.wrapper(input_ids, attention_mask, token_type_ids)
        return torch.softmax(outputs, dim=-1) if self.wrapper.head == "classification" else outputs


def check_variants(variants) -> list[str]:
    """The requested variants in canonical order; an unknown one is a UserError."""
    wanted = list(dict.fromkeys(variants))
    unknown = [v for v in wanted if v not in COREML_VARIANTS]
    if unknown or not wanted:
        raise UserError(f"unknown Core ML variant {', '.join(unknown) or '(none given)'}; choose from {' '.join(COREML_VARIANTS)}")
    return [v for v in COREML_VARIANTS if v in wanted]


def artifact_name(variant: str, flexible: str) -> str:
    return f"model_{variant}.mlpackage" if flexible == "enumerated" else f"model_{variant}_range.mlpackage"


def _input_types(buckets: list[int], flexible: str):
    import coremltools as ct

    if flexible == "enumerated":
        shape = ct.EnumeratedShapes(shapes=[(1, b) for b in buckets], default=(1, buckets[-1]))
    else:
        shape = ct.Shape(shape=(1, ct.RangeDim(lower_bound=1, upper_bound=buckets[-1], default=buckets[-1])))
    return [ct.TensorType(name=name, shape=shape, dtype=np.int32) for name in INPUT_NAMES]


def convert_wrapper(wrapper: ExportableBert, labels, buckets: list[int], flexible: str, precision: str):
    """Trace and convert one ExportableBert to an in-memory ML Program at fp16 or fp32 compute."""
    import coremltools as ct

    module = _ConvertibleModule(wrapper)
    wrapper.check_bucket(buckets[-1])
    with torch.no_grad():
        traced = torch.jit.trace(module.eval(), wrapper.example_inputs(buckets[-1]))
    options = {}
    if wrapper.head == "classification":
        options["classifier_config"] = ct.ClassifierConfig(list(labels), predicted_feature_name=COREML_LABEL_OUTPUT)
    else:
        options["outputs"] = [ct.TensorType(name=name) for name in OUTPUT_NAMES["qa"]]
    return ct.convert(traced, inputs=_input_types(buckets, flexible), convert_to="mlprogram",
                      minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET[flexible]),
                      compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32, **options)


def _word_lookup(mlmodel) -> str:
    """The name of the gather op that reads the word table (its weight is named after bert.embeddings.word_embeddings)."""
    for op in mlmodel._mil_program.functions["main"].operations:
        if op.op_type == "gather" and "word_embeddings_weight" in op.inputs["x"].name:
            return op.name
    raise UserError("the converted program has no word-table lookup to palettize; export int8 instead")


def compress(mlmodel, variant: str):
    """An int8 or palettized copy of an fp16 ML Program (weights only; the graph is unchanged)."""
    from coremltools.optimize import coreml as cto

    int8 = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                       weight_threshold=COMPRESS_MIN_ELEMENTS)
    if variant == "int8":
        return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=int8))
    if variant in PACKED_WORDS_PRECISIONS:
        # A grid table (distill/word_grid.py) has 16 values per row: a per-row palette of its own values stores it
        # exactly at 4 bits ("unique" mode), then every other weight goes int8.
        words = _word_lookup(mlmodel)
        rows = cto.OpPalettizerConfig(mode="unique", granularity="per_grouped_channel", group_size=1, channel_axis=0,
                                      weight_threshold=COMPRESS_MIN_ELEMENTS)
        palettized = cto.palettize_weights(mlmodel, cto.OptimizationConfig(op_name_configs={words: rows}))
        return cto.linear_quantize_weights(palettized, cto.OptimizationConfig(global_config=int8, op_name_configs={words: None}))
    nbits = {"palettize6": 6, "palettize4": 4}[variant]
    op_config = cto.OpPalettizerConfig(mode="kmeans", nbits=nbits, granularity="per_tensor", weight_threshold=COMPRESS_MIN_ELEMENTS)
    return cto.palettize_weights(mlmodel, cto.OptimizationConfig(global_config=op_config))


def describe(mlmodel, spec, head: str, buckets: list[int], tokenizer: dict, variant: str) -> None:
    """Human-readable and machine-readable metadata carried inside the .mlpackage."""
    mlmodel.short_description = (f"TinyBERT {spec.name} {'classifier' if head == 'classification' else 'extractive QA model'}"
                                 f" ({variant}); inputs are WordPiece ids padded to one of {buckets} tokens")
    mlmodel.author = "tinybert-mobile"
    mlmodel.license = "Apache-2.0"
    mlmodel.version = "1"
    mlmodel.input_description["input_ids"] = "WordPiece token ids, [CLS] ... [SEP] then 0 padding"
    mlmodel.input_description["attention_mask"] = "1 for real tokens, 0 for padding"
    mlmodel.input_description["token_type_ids"] = "0 for the first segment (question), 1 for the second (context)"
    if head == "classification":
        mlmodel.output_description[COREML_LABEL_OUTPUT] = "most probable label"
        mlmodel.output_description[COREML_PROBABILITIES_OUTPUT] = "probability of each label"
    else:
        mlmodel.output_description["start_logits"] = "answer start score per token"
        mlmodel.output_description["end_logits"] = "answer end score per token"
    user = {"task": spec.name, "head": head, "precision": variant, "buckets": ",".join(map(str, buckets)),
            "labels": ",".join(spec.labels), "vocab": tokenizer["vocab"], "do_lower_case": str(tokenizer["do_lower_case"]).lower(),
            "max_seq_length": str(tokenizer["max_seq_length"])}
    for key in ("doc_stride", "max_query_length", "max_answer_length"):
        if key in tokenizer:
            user[key] = str(tokenizer[key])
    mlmodel.user_defined_metadata.update(user)


def _entry(name: str, variant: str, flexible: str, head: str, labels, buckets: list[int], path: Path, seconds: float) -> dict:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {
        "file": name, "format": "coreml", "precision": variant, "notes": VARIANT_NOTES[variant],
        "compute_precision": "fp32" if variant == "fp32" else "fp16",
        "flexible": flexible, "deployment_target": DEPLOYMENT_TARGET[flexible], "buckets": list(buckets),
        "inputs": list(INPUT_NAMES),
        "outputs": [COREML_LABEL_OUTPUT, COREML_PROBABILITIES_OUTPUT] if head == "classification" else list(OUTPUT_NAMES["qa"]),
        # Compressed variants count the fp16 conversion they start from plus their compression.
        "labels": list(labels), "size_bytes": size, "conversion_seconds": round(seconds, 2),
    }


def export_coreml(student_dir, bundle_dir, variants=("fp16",), task: str | None = None, buckets=None,
                  flexible: str = "enumerated") -> dict:
    """Convert a student folder to the requested Core ML variants and write them into its task bundle; returns the manifest."""
    if flexible not in FLEXIBLE_MODES:
        raise UserError(f"unknown flexible-shape mode {flexible!r}; choose 'enumerated' or 'range'")
    variants = check_variants(variants)
    student_dir = Path(student_dir)
    model = load_student(student_dir)
    wrapper = ExportableBert(model)
    gaps = grid_gaps(word_table(model), variants)
    if gaps and len(gaps) == len(variants):
        raise UserError(f"{next(iter(gaps))} cannot be made from {student_dir}: {next(iter(gaps.values()))}; nothing was written to {bundle_dir}")
    for variant, reason in gaps.items():
        tqdm.write(f"coreml: {variant} not exported: {reason}")
    variants = [v for v in variants if v not in gaps]
    spec = resolve_task(student_dir, task, wrapper.head, model.config, bundle_dir)
    check_labels(model, spec)
    buckets = check_buckets(buckets or spec.buckets, model.config.max_position_embeddings)
    if flexible == "enumerated" and len(buckets) < 2:
        raise UserError(f"Core ML enumerated lengths need at least 2 buckets, got {buckets}; give two or more --buckets, or --range")
    tokenizer = tokenizer_settings(student_dir, spec, buckets)
    fresh = base_manifest(spec, student_dir, tokenizer)
    fresh["buckets"] = list(buckets)
    with staged_bundle(bundle_dir, fresh) as (stage, manifest):
        check_vocab_size(write_vocab(student_dir, stage / tokenizer["vocab"]), model)
        if write_labels(spec, stage / "labels.txt") is not None:
            manifest["extra_files"] = sorted(set(manifest.get("extra_files", [])) | {"labels.txt"})
        converted: dict[str, tuple[object, float]] = {}
        for variant in tqdm(variants, desc="Core ML variants", unit="variant"):
            base = "fp32" if variant == "fp32" else "fp16"
            started = time.perf_counter()
            if base not in converted:
                converted[base] = (convert_wrapper(wrapper, spec.labels, buckets, flexible, base), time.perf_counter() - started)
                started = time.perf_counter()
            mlmodel, base_seconds = converted[base]
            if variant not in ("fp16", "fp32"):
                mlmodel = compress(mlmodel, variant)
            describe(mlmodel, spec, wrapper.head, buckets, tokenizer, variant)
            name = artifact_name(variant, flexible)
            mlmodel.save(str(stage / name))
            seconds = base_seconds + time.perf_counter() - started
            upsert_artifact(manifest, _entry(name, variant, flexible, wrapper.head, spec.labels, buckets, stage / name, seconds))
    return manifest
