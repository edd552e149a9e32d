"""The Python API of the distillation stage, used by the CLI and the one-command pipeline.

One function per stage, each callable alone: `run_teacher` (the teacher, fine-tuned and cached when it lacks
the task head), `run_general` (general distillation of a student encoder), `run_student` (task distillation:
student start -> intermediate layers -> prediction layer -> evaluation -> OUT/student/ + distill_report.json),
and `run_task`, which runs them in order. Work already done is skipped by one rule (`run_folder.cached_record`):
a stage's folder whose record carries the same key; `force=True` redoes it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mobile_app.runtime.errors import UserError
from distill.evaluate import evaluate
from distill.features import FEATURE_KEYS, collate
from distill.general import general_distill, read_corpus, task_texts
from distill.attention_scores import encoder_of, freeze_word_embeddings
from distill.objectives import IntermediateObjective, PredictionObjective
from distill.run_folder import cached_record, check_writable, save_model_folder, weights_bytes, write_json
from mobile_app.runtime.files import replace_dir
from distill.settings import DistillSettings, default_init, settings_for
from distill.student import (TEACHER_LAYERS, check_general_source, load_general_encoder, load_teacher_layers, new_student,
                             resolve_shape, student_config, teacher_layer_map)
from distill.tasks import TASK_FILE, TaskSpec, example_inputs, get_task
from distill.teacher import KEY_FILE as TEACHER_KEY_FILE
from distill.teacher import (default_teacher, has_task_head, head_labels, load_tokenizer, prepare_teacher, source_identity,
                             task_features, teacher_config)
from distill.soft_targets import with_teacher_logits
from distill.word_grid import snap
from distill.trainer import EpochBudget, Interrupted, Phase, make_accelerator, phase_finished, run_phase

REPORT_FILE = "distill_report.json"


def _sample(examples: list[dict], limit: int | None, seed: int, keep_order: bool) -> list[dict]:
    """A seeded random subset (all when limit is None); eval subsets keep the file order."""
    if not limit or limit >= len(examples):
        return list(examples)
    picked = random.Random(seed).sample(range(len(examples)), limit)
    return [examples[i] for i in (sorted(picked) if keep_order else picked)]


# training features a narrower teacher-layers student's cut is measured on (distill/narrowing.py), in batches of 16
PROBE_FEATURES = 64


def _probe_batches(features: list[dict], seed: int, pad_id: int) -> list[dict]:
    picked = _sample(features, PROBE_FEATURES, seed, keep_order=True)
    return [collate([{k: f[k] for k in FEATURE_KEYS} for f in picked[i:i + 16]], pad_id) for i in range(0, len(picked), 16)]


def _has_checkpoints(out: Path) -> bool:
    """Whether a run folder holds anything --resume continues from: epoch checkpoints or a cached teacher / general student."""
    return any((out / "checkpoints").glob("*/epoch-*")) or (out / "teacher").is_dir() or (out / "general").is_dir()


def _parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class _Run:
    """Everything a run needs, checked before anything is written: built by `_plan` from its steps."""
    task: TaskSpec
    preset: str
    seed: int
    out: Path
    settings: DistillSettings
    shape: object
    teacher_source: str
    teacher_config: object
    teacher_ready: bool
    student_config: object = None
    init: str = "general"
    teacher_layers: list | None = None
    corpus: list[str] | None = None
    train: list[dict] = field(default_factory=list)
    unlabelled: list[dict] = field(default_factory=list)
    eval: list[dict] = field(default_factory=list)
    tokenizer: object = None

    def key(self) -> str:
        blob = {"task": self.task.name, "settings": self.settings.as_dict(), "shape": self.shape.__dict__, "seed": self.seed,
                "init": self.init, "teacher": source_identity(self.teacher_source),
                "data": hashlib.sha256(json.dumps([self.train, self.eval], sort_keys=True).encode()).hexdigest()}
        if not self.task.builtin:  # a user's task: its labels and lengths decide the student too
            blob["definition"] = {k: v for k, v in self.task.to_dict().items() if k not in ("data", "examples")}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _with_teacher(task, preset: str, seed: int, out_dir, teacher, student, overrides: dict) -> _Run:
    """Step 1: the task (its labels fixed against the teacher's head), the teacher and the preset's settings."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    settings = settings_for(spec, preset, overrides)  # checks the overrides before the teacher is read
    teacher_source = str(teacher) if teacher is not None else default_teacher()
    config = teacher_config(teacher_source)
    if not spec.labels:  # a user's task without --labels: the teacher's classes, else the train file's
        spec = spec.resolved(head_labels(config))
    ready = has_task_head(config, spec, teacher_source)  # a head for another task or other labels is refused here
    positions = getattr(config, "max_position_embeddings", None)
    if positions and settings.max_seq_length > positions:
        raise UserError(f"max_seq_length {settings.max_seq_length} is longer than the teacher's {positions} position "
                        f"embeddings; use --set max_seq_length={positions} or less")
    return _Run(spec, preset, int(seed), Path(out_dir), settings, resolve_shape(student), teacher_source, config, ready)


def _choose_start(run: _Run, init: str | None, overrides: dict) -> None:
    """Step 2: the student's start and its config: the caller's --init, else the preset's (which may change settings)."""
    if init is None and run.teacher_ready and default_init(run.task, run.preset, True) == TEACHER_LAYERS:
        run.settings = settings_for(run.task, run.preset, overrides, ready_teacher_start=True)
    run.student_config = student_config(run.shape, run.teacher_config, run.task.head, run.task.labels)
    run.init = str(init) if init is not None else default_init(run.task, run.preset, run.teacher_ready)
    named = ("random", "general", TEACHER_LAYERS)
    if run.init not in named and not Path(run.init).exists() and run.init.count("/") != 1:
        raise UserError(f"--init {run.init!r} is not 'random', 'general', '{TEACHER_LAYERS}', a folder or a hub id (owner/name)")
    if run.init == TEACHER_LAYERS:
        try:
            run.teacher_layers = teacher_layer_map(run.shape, run.teacher_config)
        except UserError as why:
            if init is not None:
                raise
            # the preset's start, not the caller's: a student the teacher's layers cannot seed starts from general
            print(f"note: the {run.preset} preset starts {run.task.name} students from the teacher's layers, which cannot "
                  f"seed this one ({why}); starting it from general distillation instead")
            run.init = "general"
            run.settings = settings_for(run.task, run.preset, overrides)  # the ready-teacher settings go with that start
    if run.init == TEACHER_LAYERS:
        # copied layers compute what the teacher's did only with the teacher's activation and LayerNorm epsilon
        run.student_config.hidden_act = run.teacher_config.hidden_act
        run.student_config.layer_norm_eps = run.teacher_config.layer_norm_eps
    elif run.init not in named:
        check_general_source(run.init, run.shape)
    fixed_table = "student_word_bits" if run.settings.student_word_bits else "student_freeze_word_embeddings"
    if (run.settings.student_freeze_word_embeddings or run.settings.student_word_bits) and (run.init == "random" or (
            run.init == "general" and run.settings.general_embedding_init == "random")):
        raise UserError(f"{fixed_table} would keep a random word table; start it from the teacher "
                        "(--set general_embedding_init=teacher-pca with --init general) or from a checkpoint (--init PATH)")


def _load_data(run: _Run, data_dir, corpus) -> None:
    """Step 3: the output folder checked, then the examples: the train subset, the unlabelled texts, the eval split."""
    if run.out.exists() and not run.out.is_dir():
        raise UserError(f"--out {run.out} exists and is not a folder; pass a folder path")
    check_writable(run.out)
    run.corpus = read_corpus(corpus) if corpus else None
    splits = run.task.load(data_dir) if run.corpus is None or data_dir is not None or not run.task.builtin else {"train": [], "eval": []}
    run.train = _sample(splits["train"], run.settings.max_train_examples, run.seed, keep_order=False)
    # general distillation may read texts beyond the labelled subset: the whole train split, labels unused
    run.unlabelled = _sample(splits["train"], None, run.seed, keep_order=False)
    random.Random(run.seed).shuffle(run.unlabelled)
    run.eval = _sample(splits["eval"], run.settings.max_eval_examples, run.seed, keep_order=True)
    run.tokenizer = load_tokenizer(run.teacher_source)


def _plan(task, data_dir, out_dir, preset: str = "quick", teacher=None, student="tinybert-4l-312d", seed: int = 42,
          max_train_examples: int | None = None, max_eval_examples: int | None = None, overrides: dict | None = None,
          init: str | None = None, corpus=None) -> _Run:
    """The run, checked step by step before anything is written."""
    overrides = dict(overrides or {})
    if max_train_examples is not None:
        overrides["max_train_examples"] = max_train_examples
    if max_eval_examples is not None:
        overrides["max_eval_examples"] = max_eval_examples
    run = _with_teacher(task, preset, seed, out_dir, teacher, student, overrides)
    _choose_start(run, init, overrides)
    _load_data(run, data_dir, corpus)
    return run


def _teacher_stage(run: _Run, accelerator, budget, resume: bool, force: bool):
    """(teacher in eval mode on the device, report info): a given teacher with the head as is, else fine-tuned (cached)."""
    teacher, info = prepare_teacher(accelerator, run.teacher_source, run.task, run.train, run.settings, run.seed, run.out, resume,
                                    budget, force=force)
    return teacher.to(accelerator.device), info


def _general_stage(run: _Run, accelerator, budget, resume: bool, force: bool) -> dict:
    """General distillation of a student encoder into OUT/general/ (cached by its key)."""
    texts = run.corpus or task_texts(run.task, run.unlabelled)
    _, info = general_distill(accelerator, run.teacher_source, run.shape, texts, run.settings, run.seed, run.out, resume, budget,
                              force=force)
    return info


def _student_start(run: _Run, teacher, features):
    """The task student before distillation, the report's account of its start, and the teacher dims a cut kept."""
    student = new_student(run.student_config, run.seed)
    init_info, hidden_dims = {"kind": "random"}, None
    if run.init == "general":
        init_info = {"kind": "general", **load_general_encoder(student, run.out / "general")}
    elif run.init == TEACHER_LAYERS:
        info, hidden_dims = load_teacher_layers(student, teacher, run.teacher_layers,
                                                _probe_batches(features, run.seed, run.tokenizer.pad_token_id))
        init_info = {"kind": TEACHER_LAYERS, **info}
    elif run.init != "random":
        init_info = {"kind": "checkpoint", **load_general_encoder(student, run.init)}
    if run.settings.student_word_bits:
        # the table the phone will store, from the first step on: the rest of the student learns around it
        table = encoder_of(student).embeddings.word_embeddings.weight
        with torch.no_grad():
            table.copy_(snap(table))
        init_info["word_table"] = f"{run.settings.student_word_bits}-bit grid, fixed"
    if run.settings.student_freeze_word_embeddings or run.settings.student_word_bits:
        freeze_word_embeddings(student)
    return student, init_info, hidden_dims


def _task_stage(run: _Run, accelerator, budget, resume: bool, teacher, teacher_info: dict, general_info, timings: dict,
                began: tuple[float, float]) -> Path:
    """Intermediate then prediction-layer distillation, evaluation of both models, OUT/student/ + its report."""
    s = run.settings
    features = task_features(run.tokenizer, run.task, run.train, s)
    student, init_info, hidden_dims = _student_start(run, teacher, features)
    student.to(accelerator.device)
    common = dict(batch_size=s.batch_size, seed=run.seed, checkpoints=run.out / "checkpoints", resume=resume, budget=budget,
                  warmup_ratio=s.warmup_ratio, weight_decay=s.weight_decay, pad_id=run.tokenizer.pad_token_id,
                  precision=s.train_precision, fused_optimizer=s.fused_optimizer)
    try:
        t0 = time.time()
        objective = IntermediateObjective(student, teacher, hidden_dims=hidden_dims)
        intermediate = run_phase(accelerator, Phase("intermediate", objective, features, s.intermediate_epochs, s.intermediate_lr), **common)
        timings["intermediate"] = round(time.time() - t0, 1)
        t0 = time.time()
        if s.prediction_epochs > 0 and not phase_finished(common["checkpoints"], "prediction", s.prediction_epochs, resume):
            features = with_teacher_logits(teacher, features, s.eval_batch_size, run.tokenizer.pad_token_id, accelerator.device,
                                           show=accelerator.is_local_main_process)
        prediction = run_phase(accelerator, Phase("prediction", PredictionObjective(student, teacher, s.temperature), features,
                                                  s.prediction_epochs, s.prediction_lr), **common)
        timings["prediction"] = round(time.time() - t0, 1)
    except Interrupted as stop:
        accelerator.print(f"interrupted: {stop}")
        raise

    t0 = time.time()
    teacher_metrics = evaluate(accelerator, teacher, run.task, run.tokenizer, run.eval, s, desc="eval teacher")
    student_metrics = evaluate(accelerator, student, run.task, run.tokenizer, run.eval, s, desc="eval student")
    timings["evaluation"] = round(time.time() - t0, 1)
    timings["total"] = round(time.time() - began[0], 1)
    # CPU seconds of this process (all threads): wall time on a machine shared with other jobs says little
    timings["cpu_total"] = round(time.process_time() - began[1], 1)
    metric = run.task.metric
    report = {
        "run_key": run.key(), "task": run.task.name, "head": run.task.head, "labels": list(run.task.labels), "metric": metric,
        "preset": run.preset, "seed": run.seed, "settings": s.as_dict(),
        "data": {"train_examples": len(run.train), "train_features": len(features), "eval_examples": len(run.eval)},
        "teacher": {**teacher_info, "metrics": teacher_metrics, "parameters": _parameters(teacher),
                    "layers": run.teacher_config.num_hidden_layers, "hidden": run.teacher_config.hidden_size},
        "student": {"shape": run.shape.__dict__, "init": init_info, "metrics": student_metrics, "parameters": _parameters(student)},
        "retention": (student_metrics[metric] / teacher_metrics[metric]) if teacher_metrics[metric] else None,
        "general": general_info, "phases": {"intermediate": intermediate, "prediction": prediction},
        "layer_mapping": objective.mapping, "wall_seconds": timings,
        "processes": accelerator.num_processes,
    }
    student_dir = run.out / "student"
    if accelerator.is_main_process:
        with replace_dir(student_dir) as stage:
            save_model_folder(accelerator.unwrap_model(student), run.tokenizer, stage)
            report["student"]["weights_bytes"] = weights_bytes(stage)
            teacher_dir = Path(teacher_info["dir"])
            report["teacher"]["weights_bytes"] = weights_bytes(teacher_dir) if teacher_dir.is_dir() else None
            write_json(stage / REPORT_FILE, report)
            # the task the student answers, with the inputs its bundle will offer: export and verify read this one definition
            task = dataclasses.replace(run.task, examples=example_inputs(run.task, run.eval))
            write_json(stage / TASK_FILE, task.to_dict())
        shutil.rmtree(run.out / "checkpoints", ignore_errors=True)
        print(f"{run.task.name}: teacher {metric} {teacher_metrics[metric]:.2f}, student {student_metrics[metric]:.2f} "
              f"(retention {100 * (report['retention'] or 0):.1f}%), {report['student']['parameters']:,} student parameters, "
              f"{timings['total']:.0f}s -> {student_dir}")
    accelerator.wait_for_everyone()
    return student_dir


def _student_if_fresh(run: _Run, force: bool) -> Path | None:
    """OUT/student/ when its report carries this run's key (and --force was not given)."""
    student_dir = run.out / "student"
    if cached_record(student_dir, REPORT_FILE, run.key(), key_field="run_key", force=force) is None:
        return None
    print(f"student: {student_dir} is up to date (same run key); nothing to do")
    return student_dir


def _distil(run: _Run, earlier_stages: bool, resume: bool, stop_after_epochs: int | None, force: bool, accelerator) -> Path:
    """Task distillation, running the teacher and general stages first (earlier_stages) or reading their folders."""
    began = (time.time(), time.process_time())
    fresh = _student_if_fresh(run, force)
    if fresh is not None:
        return fresh
    if not earlier_stages:
        if not run.teacher_ready and not (run.out / "teacher" / TEACHER_KEY_FILE).is_file():
            raise UserError(f"no fine-tuned teacher in {run.out / 'teacher'}; run `python -m distill teacher` (or `run`) first")
        if run.init == "general" and not (run.out / "general" / "config.json").is_file():
            raise UserError(f"no general student in {run.out / 'general'}; run `python -m distill general` first or pass --init random")
    if resume and not _has_checkpoints(run.out):
        raise UserError(f"--resume: {run.out} holds no checkpoints or cached stages to continue from; run without --resume")
    accelerator = accelerator or make_accelerator()
    budget = EpochBudget(stop_after_epochs)
    timings = {}
    t0 = time.time()
    teacher, teacher_info = _teacher_stage(run, accelerator, budget, resume, force and earlier_stages)
    timings["teacher"] = round(time.time() - t0, 1)
    general_info = None
    if run.init == "general" and earlier_stages:
        t0 = time.time()
        general_info = _general_stage(run, accelerator, budget, resume, force)
        timings["general"] = round(time.time() - t0, 1)
    return _task_stage(run, accelerator, budget, resume, teacher, teacher_info, general_info, timings, began)


def run_task(task: TaskSpec | str, data_dir, out_dir, *, resume: bool = False, stop_after_epochs: int | None = None, force: bool = False,
             accelerator=None, **options) -> Path:
    """Every stage for `task`: teacher, general distillation (when the student starts from it), task distillation.

    Returns OUT/student/. `task` is a TaskSpec or a demo task's name; `options` are what decides the student (`_plan`):
    `preset`; `teacher`, a BERT folder or hub id (default: the offline MiniLM-L6-H384 base; one that already has the task's head is used as is); `student`, a
    preset name or {"layers", "hidden", "heads", "intermediate"}; `init`: "random", "general" (our general
    distillation, OUT/general/), "teacher-layers", a general TinyBERT folder / hub id, or None for the preset's start
    (`default_init`); `seed`; `max_train_examples`, `max_eval_examples`; `overrides` (any DistillSettings field).
    `stop_after_epochs` stops after that many epochs (raises Interrupted); `resume=True` continues from
    OUT/checkpoints/. Each stage reuses its folder when its key matches; `force=True` redoes them.
    """
    return _distil(_plan(task, data_dir, out_dir, **options), True, resume, stop_after_epochs, force, accelerator)


def run_student(task: TaskSpec | str, data_dir, out_dir, *, resume: bool = False, stop_after_epochs: int | None = None, force: bool = False,
                accelerator=None, **options) -> Path:
    """Task distillation only, from the teacher stage's folder (and the general stage's with init general)."""
    return _distil(_plan(task, data_dir, out_dir, **options), False, resume, stop_after_epochs, force, accelerator)


def run_teacher(task: TaskSpec | str, data_dir, out_dir, *, resume: bool = False, stop_after_epochs: int | None = None, force: bool = False,
                accelerator=None, **options) -> Path:
    """The teacher stage only: the given teacher when it has the task's head, else it fine-tuned into OUT/teacher/."""
    run = _plan(task, data_dir, out_dir, **options)
    _, info = _teacher_stage(run, accelerator or make_accelerator(), EpochBudget(stop_after_epochs), resume, force)
    return Path(info["dir"])


def run_general(task: TaskSpec | str, data_dir, out_dir, *, resume: bool = False, stop_after_epochs: int | None = None, force: bool = False,
                accelerator=None, **options) -> Path:
    """General distillation only, into OUT/general/: on `corpus` text files, else on the task's training texts."""
    run = _plan(task, data_dir, out_dir, **{**options, "init": "general"})
    return Path(_general_stage(run, accelerator or make_accelerator(), EpochBudget(stop_after_epochs), resume, force)["dir"])
