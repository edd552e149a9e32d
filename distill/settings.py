"""Training settings: the `quick` (a demo on 2 CPU cores), `medium` and `full` (the paper's schedule) presets per task.

`full` follows Jiao et al. 2020 / the official task_distill.py: intermediate-layer distillation 20 epochs,
lr 5e-5, batch 32; prediction-layer distillation 3 epochs, lr 3e-5, temperature 1; general distillation
lr 1e-4, 3 epochs. `quick` subsamples and shortens everything to fit a 20-minute target on 2 cores.
`medium` trains a classification teacher as quick does (4,000 labelled examples) and spends its time on the
student where it was measured to count: a 20x larger general corpus, a 5x larger unlabelled transfer set, and a
student word table taken from the teacher by PCA and kept fixed (docs/sentiment-ladder.md). For QA it first
trains the teacher on every train question, then starts the student from the teacher's own layers cut to its
width (no general distillation) and distils it for 2 + 4 epochs (docs/qa-student-start.md; times in
benchmarks/RESULTS.md).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mobile_app.runtime.errors import UserError
from distill.tasks import TaskSpec
from distill.word_grid import WORD_BITS
from mobile_app.runtime.contract import DEFAULT_MAX_ANSWER_LENGTH


@dataclass(frozen=True)
class DistillSettings:
    max_seq_length: int
    doc_stride: int = 128
    max_query_length: int = 64
    max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH
    max_train_examples: int | None = None   # task train examples used by every stage (None: all)
    max_eval_examples: int | None = None    # eval examples scored for teacher and student (None: all)
    batch_size: int = 32
    eval_batch_size: int = 64
    teacher_epochs: int = 3
    teacher_lr: float = 5e-5
    teacher_max_train_examples: int | None = None
    teacher_freeze_embeddings: bool = False  # quick: keep the 11.7M word-embedding weights fixed while fine-tuning
    general_epochs: int = 3
    general_lr: float = 1e-4
    general_max_texts: int | None = None
    general_embedding_init: str = "random"  # the paper; "teacher-pca": see distill/embedding_init.py
    student_freeze_word_embeddings: bool = False  # keep the student's word table fixed in every phase
    student_word_bits: int | None = None  # 4: the task student's word table on the 4-bit grid, fixed (distill/word_grid.py)
    intermediate_epochs: int = 20
    intermediate_lr: float = 5e-5
    prediction_epochs: int = 3
    prediction_lr: float = 3e-5
    temperature: float = 1.0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    train_precision: str = "fp32"  # one of TRAIN_PRECISIONS: training forward passes in float32 or bfloat16 autocast
    fused_optimizer: bool = True  # AdamW as one fused kernel (False: torch's per-tensor loop; benchmarks/RESULTS.md)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def stage_fields(self, prefix: str, shared: tuple[str, ...]) -> dict:
        """The settings that decide what a cached stage (teacher_, general_) trains, for its cache key: its own
        fields and `shared`, less its size limit, which the hash of the examples it trains on stands for."""
        return {k: v for k, v in self.as_dict().items()
                if (k.startswith(prefix) and k not in _SIZE_LIMITS) or k in shared}


# a stage's example limit picks its data; the data's hash, not the limit, goes into the stage's cache key
_SIZE_LIMITS = ("teacher_max_train_examples", "general_max_texts")


EMBEDDING_INITS = ("teacher-pca", "random")
# "auto": bfloat16 where the device computes it natively (AMX / AVX512-BF16 CPUs, recent GPUs), else float32
TRAIN_PRECISIONS = ("fp32", "bf16", "auto")

# quick: short sequences (SST-2/SMS are short; official SST-2 uses 64), subsampled train sets, few epochs.
# Timings: benchmarks/RESULTS.md, "Distillation (bench_distill.py)".
_QUICK = {
    "classification": dict(max_seq_length=64, max_train_examples=4000, teacher_epochs=1, teacher_lr=1e-4, teacher_freeze_embeddings=True,
                           general_epochs=1, general_lr=5e-4, general_max_texts=2000,
                           intermediate_epochs=3, intermediate_lr=5e-4, prediction_epochs=3, prediction_lr=2e-4),
    # QA windows are 4x longer and SQuAD needs far more steps than a quick budget allows: the demo trains on
    # 700 questions (teacher-pca embeddings gave no gain here: docs/qa-student-start.md).
    "qa": dict(max_seq_length=256, max_train_examples=700, max_eval_examples=150, teacher_epochs=1, teacher_lr=1.5e-4,
               teacher_freeze_embeddings=True, general_epochs=1, general_lr=5e-4, general_max_texts=300,
               intermediate_epochs=1, intermediate_lr=5e-4, prediction_epochs=2, prediction_lr=3e-4),
}
# A task may change any of these in its definition ("presets": {preset name: settings}, distill/task_definitions/): spam's
# messages are longer, so two epochs per phase; a smaller set made the student predict all-ham (docs/presets.md).
# medium: quick's teacher, then the measured levers for the student (docs/sentiment-ladder.md): general distillation
# on 40,000 texts and task distillation on 20,000 unlabelled transfer texts, both from the train split.
_MEDIUM = {
    "classification": dict(max_train_examples=20000, teacher_max_train_examples=4000, general_max_texts=40000,
                           general_embedding_init="teacher-pca", student_freeze_word_embeddings=True),
    # QA: quick's teacher (700 questions, 25 steps) is barely better than chance, and the student levers alone gave
    # nothing (docs/qa-student-start.md). Medium QA first trains a teacher worth copying on every train question (2
    # epochs), then starts the student from that teacher's layers (_PRESET_INIT) and distils it at fine-tuning
    # learning rates, 2 intermediate + 4 prediction epochs (times: benchmarks/RESULTS.md). The classification
    # tasks' general-distillation levers did not carry over; they apply only to a student the teacher's layers
    # cannot seed.
    "qa": dict(max_train_examples=None, max_eval_examples=None, teacher_epochs=2, teacher_lr=1e-4, general_max_texts=None,
               general_embedding_init="teacher-pca", student_freeze_word_embeddings=True,
               intermediate_epochs=2, intermediate_lr=2e-4, prediction_epochs=4, prediction_lr=1e-4),
}
# Each preset is the task's defaults (the paper's, i.e. full) with these layers applied in order, each layer the kind's
# settings and then the task definition's own for that layer's name.
_PRESET_LAYERS = {"quick": (("quick", _QUICK),), "medium": (("quick", _QUICK), ("medium", _MEDIUM)), "full": ()}
PRESET_NAMES = tuple(_PRESET_LAYERS)
# The student's start when --init is not given: general distillation, except for medium QA, which starts from the
# fine-tuned teacher's own layers cut to the student's width (distill/narrowing.py). Why: docs/qa-student-start.md.
_PRESET_INIT = {"medium": {"qa": "teacher-layers"}}
# Given a teacher that already has the task's head (--teacher / --teachers), quick trains no teacher and starts every
# task's student from that teacher's own layers: no general distillation, the whole budget goes to the student
# (benchmarks/RESULTS.md, "Quick preset with the ready teachers").
_READY_TEACHER_INIT = {"quick": "teacher-layers"}
# ...and, for a student started that way, these settings on top of the preset, per kind then the task definition's
# "quick with a ready teacher" (measured in
# benchmarks/RESULTS.md, "Quick preset with the ready teachers"): every word table on the 4-bit grid, so export can ship
# the int8-words4 file at int8-dynamic's answers; the budget goes to more transfer data instead of more epochs. QA trains
# on twice the questions without the intermediate phase (cheaper, and it scored higher than 1,400 questions with it) and
# is scored on every held-out question, the figure its targets are set on. Training runs in bfloat16 where the CPU has
# it (same students, 16-31% less training time).
_READY_TEACHER_SETTINGS = {"quick": (
    "quick with a ready teacher",
    {"classification": dict(student_word_bits=4, train_precision="auto"),
     "qa": dict(student_word_bits=4, train_precision="auto", max_train_examples=2800, max_eval_examples=None, intermediate_epochs=0, prediction_epochs=2,
                prediction_lr=8e-4)},
)}


def default_init(task: TaskSpec, preset: str, teacher_ready: bool = False) -> str:
    """The student start `preset` uses for `task` when the caller names none (`teacher_ready`: the teacher was given
    with the task's head, so it is not fine-tuned here)."""
    if teacher_ready and preset in _READY_TEACHER_INIT:
        return _READY_TEACHER_INIT[preset]
    return _PRESET_INIT.get(preset, {}).get(task.kind, "general")


# for --init's help in every command that takes it, so the help follows the table
DEFAULT_INIT_HELP = "default: the preset's (" + ", ".join(
    [f"{init} for {preset} {kind}" for preset, kinds in _PRESET_INIT.items() for kind, init in kinds.items()]
    + [f"{init} for {preset} with a teacher that has the task's head" for preset, init in _READY_TEACHER_INIT.items()]) + ", else general)"


_BOOLEANS = {"true": True, "false": False}
# bounds every preset and override must keep
_AT_LEAST_ONE = ("max_seq_length", "batch_size", "eval_batch_size", "doc_stride", "max_query_length", "max_answer_length",
                 "max_train_examples", "max_eval_examples", "teacher_max_train_examples", "general_max_texts")
# a learning rate of 0 keeps a phase's weights as they start (tests use it); a temperature of 0 divides by zero
_NOT_NEGATIVE = ("teacher_epochs", "general_epochs", "intermediate_epochs", "prediction_epochs", "weight_decay", "warmup_ratio",
                 "teacher_lr", "general_lr", "intermediate_lr", "prediction_lr")
_POSITIVE = ("temperature",)


def _field_type(name: str) -> str:
    """A DistillSettings field's annotation as written ('int', 'float', 'bool', 'str', 'int | None')."""
    return {f.name: str(f.type) for f in dataclasses.fields(DistillSettings)}[name]


def setting_value(name: str, value):
    """`value` (text from --set KEY=VALUE, or a Python value from the API) as field `name`'s type, or a UserError."""
    kind = _field_type(name)
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    wanted = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}[base]
    if optional:
        wanted += " or none"
    if isinstance(value, str) and base != "str":
        text = value.strip().lower()
        if optional and text in ("none", "null"):
            return None
        try:
            value = {"int": int, "float": float, "bool": _BOOLEANS.__getitem__}[base](text)
        except (KeyError, ValueError):
            raise UserError(f"setting {name} must be {wanted}, got {value!r}") from None
    elif value is None and optional:
        return None
    elif base == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, {"int": int, "float": float, "bool": bool, "str": str}[base]) or (base != "bool" and isinstance(value, bool)):
        raise UserError(f"setting {name} must be {wanted}, got {value!r}")
    if base == "float" and not math.isfinite(value):
        raise UserError(f"setting {name} must be a finite number, got {value!r}")
    return value


def parse_settings(texts) -> dict:
    """--set KEY=VALUE flags as {field: typed value}: unknown keys and values of the wrong type are UserErrors."""
    fields = {f.name for f in dataclasses.fields(DistillSettings)}
    parsed = {}
    for text in texts or []:
        key, sep, value = str(text).partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {text!r}; e.g. --set intermediate_epochs=5")
        if key not in fields:
            raise UserError(f"unknown setting {key!r} in --set; valid: {', '.join(sorted(fields))}")
        parsed[key] = setting_value(key, value)
    return parsed


def _check_ranges(settings: DistillSettings) -> None:
    for name in _AT_LEAST_ONE:
        value = getattr(settings, name)
        if value is not None and value < 1:
            hint = "; leave it out for no limit" if name.startswith(("max_train", "max_eval", "teacher_max", "general_max")) else ""
            raise UserError(f"setting {name} must be at least 1, got {value}{hint}")
    for name in _NOT_NEGATIVE:
        if getattr(settings, name) < 0:
            raise UserError(f"setting {name} must not be negative, got {getattr(settings, name)}")
    for name in _POSITIVE:
        if getattr(settings, name) <= 0:
            raise UserError(f"setting {name} must be above 0, got {getattr(settings, name)}")
    if settings.student_word_bits is not None and settings.student_word_bits not in WORD_BITS:
        raise UserError(f"setting student_word_bits must be {' or '.join(map(str, WORD_BITS))} or none, got {settings.student_word_bits}")
    if settings.train_precision not in TRAIN_PRECISIONS:
        raise UserError(f"setting train_precision must be one of {', '.join(TRAIN_PRECISIONS)}, got {settings.train_precision!r}")
    if settings.warmup_ratio > 1:
        raise UserError(f"setting warmup_ratio is a fraction of the steps, from 0 to 1; got {settings.warmup_ratio}")


def settings_for(task: TaskSpec, preset: str = "quick", overrides: dict | None = None,
                 ready_teacher_start: bool = False) -> DistillSettings:
    """The preset's settings for `task`, with `overrides` (any DistillSettings field) applied last.

    `ready_teacher_start`: the teacher came with the task's head and the student starts from its layers (the preset's
    own start for it), which adds the preset's _READY_TEACHER_SETTINGS."""
    if preset not in PRESET_NAMES:
        raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESET_NAMES)}")
    values = dict(max_seq_length=task.train_max_seq_length or task.max_seq_length, doc_stride=task.doc_stride,
                  max_query_length=task.max_query_length, max_answer_length=task.max_answer_length)
    layers = _PRESET_LAYERS[preset] + ((_READY_TEACHER_SETTINGS[preset],) if ready_teacher_start and preset in _READY_TEACHER_SETTINGS else ())
    for name, by_kind in layers:
        values.update(by_kind.get(task.kind, {}))
        values.update(task.presets.get(name, {}))
    fields = {f.name for f in dataclasses.fields(DistillSettings)}
    unknown = sorted(set(overrides or {}) - fields)
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    values.update({name: setting_value(name, value) for name, value in (overrides or {}).items()})
    settings = DistillSettings(**values)
    _check_ranges(settings)
    if settings.general_embedding_init not in EMBEDDING_INITS:
        raise UserError(f"general_embedding_init {settings.general_embedding_init!r} is not one of: {', '.join(EMBEDDING_INITS)}")
    if task.is_qa and settings.doc_stride >= settings.max_seq_length - settings.max_query_length - 3:
        raise UserError(f"doc_stride {settings.doc_stride} leaves no room in max_seq_length {settings.max_seq_length}; lower doc_stride")
    return settings
