"""The bundle contract: what the converters write, verification checks and the runtime reads, in one place.

As a Hugging Face `exporters` config does for a model: per head the input and output names, how a
bucket's signature is named, the attention-mask value baked into the graph, the manifest's name,
format and fields, and the files beside it. Standard library only, so the phone reads it too.
"""
from __future__ import annotations

# The one head -> Hugging Face model class table (class names; `distill.heads` resolves them).
HEAD_ARCHITECTURES = {"classification": "BertForSequenceClassification", "qa": "BertForQuestionAnswering"}
# Fine-tuned models export and verify as they are from either family (DistilBERT: no token type embeddings, so its
# files take token_type_ids like every bundle and ignore them); students are always BERT.
FAMILY_ARCHITECTURES = {"bert": HEAD_ARCHITECTURES,
                        "distilbert": {"classification": "DistilBertForSequenceClassification", "qa": "DistilBertForQuestionAnswering"}}
HEADS = tuple(HEAD_ARCHITECTURES)

# Model inputs (int32, shape (1, bucket)) in the order the exported graphs take them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Model outputs (float32) per head; QA's are per token and trimmed back to the input length.
OUTPUT_NAMES = {"classification": ("logits",), "qa": ("start_logits", "end_logits")}
PER_TOKEN_OUTPUTS = OUTPUT_NAMES["qa"]
# A Core ML classifier returns its label and probabilities by label instead of logits.
COREML_LABEL_OUTPUT = "label"
COREML_PROBABILITIES_OUTPUT = "label_probs"
PROBABILITIES_OUTPUT = "probabilities"

# QA answers span at most this many tokens unless the bundle's tokenizer settings say otherwise
# (manifest["tokenizer"]["max_answer_length"], written from the task's definition).
DEFAULT_MAX_ANSWER_LENGTH = 30

# Added to the attention scores of padded positions: finite and far below any real score
# (float32's minimum would overflow to -inf in fp16 and give NaN).
MASK_VALUE = -1e4

# The manifest and the files it names.
MANIFEST_NAME = "bundle.json"
FORMAT_NAME = "tinybert-mobile-bundle"
FORMAT_VERSION = 2
VOCAB_NAME = "vocab.txt"
LABELS_NAME = "labels.txt"
# What `python -m export verify` writes into a bundle.
PARITY_JSON, PARITY_MD, PARITY_PNG = "parity.json", "parity.md", "parity_diffs.png"
# Fields every manifest carries (export/bundle.py writes them, mobile_app/runtime/bundle.py checks them).
# What the phone needs of the task definition (distill/tasks.py): "task" (its name), "head" (its kind: classification or
# qa), "labels" (in logit order), "text_pair" (a classifier of two texts), "title" (the app's tab) and "examples" (inputs
# the app offers to tap: {"text"} / {"text", "text_pair"} / {"question", "context"}); its lengths are in "tokenizer".
MANIFEST_FIELDS = ("format", "format_version", "task", "head", "labels", "text_pair", "title", "examples", "buckets",
                   "tokenizer", "student", "artifacts", "files")
# Fields every artifact entry in `artifacts` carries (a .tflite entry adds its `signatures` and runtime needs, a
# Core ML entry its buckets, inputs, outputs and labels).
ARTIFACT_FIELDS = ("file", "format", "precision", "size_bytes")
# Written into each artifact entry by `python -m export verify`: [{"runtime", "interpreter", "status", "passed"}], the
# TFLite runtimes (export/verify/runtimes.py) or Core ML runner it was checked on.
VERIFIED_ON = "verified_on"

# Core ML variants: compute precision, or weights compressed from the fp16 program.
COREML_VARIANTS = ("fp16", "fp32", "int8", "int8-words4", "palettize6", "palettize4")
DEFAULT_COREML_VARIANTS = ("fp16",)
# TFLite precisions, in the order bundles list them.
TFLITE_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-words4", "int8-static")
# What an export makes when no precision is named (`python -m export tflite`, the pipeline). int8-static is opt-in: its
# int16 activations run on slow reference kernels and calibration adds minutes, for a size saving only
# (benchmarks/RESULTS.md); int8-words4 is made only from a student with its word table on the 4-bit grid, else left out
# in one line.
DEFAULT_TFLITE_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-words4")
# Precisions whose word table is stored packed on its 4-bit grid (export/packed_words.py): TFLite converts them from a
# float graph of their own, Core ML palettizes that table per row.
PACKED_WORDS_PRECISIONS = ("int8-words4",)

# What a .tflite artifact needs from its interpreter (export/tflite_compat.py writes it per artifact entry,
# mobile_app/runtime/runtime_versions.py reads it; the layout is described there), and the runtime profile a
# bundle's .tflite files were made for: {"min_runtime": "2.8.0", "unavailable": {precision: reason}}.
TFLITE_NEEDS_FIELD = "tflite_runtime_needs"
TFLITE_PROFILE_FIELD = "tflite_profile"

# The artifact the app opens when the user picks none: the first of these the bundle has (int8-words4 exists only for a
# student distilled with its word table on the 4-bit grid; benchmarks/RESULTS.md, "Latency and size").
DEFAULT_PRECISIONS = ("int8-words4", "int8-dynamic")

# Precisions the app's picker does not offer: int8-static's int16 activations ran slower than fp32 on every CPU it was
# timed on (20x on an AMD EPYC, benchmarks/RESULTS.md), for a size saving only; load_task(precision=...) still opens it.
SLOWER_THAN_FP32 = ("int8-static",)

# Runtime profiles a .tflite export makes by default (`--min-runtime`): the oldest TFLite the files must run on (2.8,
# python-for-android's recipe), then LiteRT 2.3.0's, whose hybrid int8 runs on int8 kernels where the 2.8 profile's
# dequantizes to float and computes in float (benchmarks/RESULTS.md). A later profile adds a file only where its
# bytes differ from an earlier profile's file of the same precision, named "<task>_<precision>_rt<major.minor>.tflite".
DEFAULT_TFLITE_PROFILES = ("2.8", "litert")
# Each .tflite entry records the profile it was made for (a full TFLite version) under this field.
ARTIFACT_PROFILE_FIELD = "profile"
# THE RULE by which a runtime picks among the files of a bundle (mobile_app/runtime/bundle.py, choose_artifact), given its
# interpreter's TFLite version: only files whose recorded needs (TFLITE_NEEDS_FIELD) that version meets are candidates
# (none meeting: every file, so the refusal names what is missing); the precision is the one asked for, else the first
# of DEFAULT_PRECISIONS among the candidates; of that precision's files, the one whose needs are the newest runs, since
# a newer profile only differs where it computes on faster kernels. An unknown version (None) takes the oldest needs.


def signature_key(bucket: int) -> str:
    """The name of a .tflite signature (and Core ML shape) that takes inputs of `bucket` tokens."""
    return f"seq_{int(bucket)}"

# The flatbuffer metadata entry of every exported .tflite that names the student it was converted from (its
# `student_sha256`); artifact entries of bundle.json record the same value.
STUDENT_STAMP_KEY = "tinybert_student_sha256"
