"""The pipeline's settings: one frozen PipelineConfig, filled by the CLI from flags or by tests, checked up front."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from mobile_app.runtime.errors import UserError
from distill.tasks import TaskSpec, demo_task_names, get_task
from mobile_app.runtime.contract import DEFAULT_COREML_VARIANTS, DEFAULT_TFLITE_PRECISIONS
from export.quantize import check_precisions

DEFAULT_VERIFY_EXAMPLES = 500                       # the parity proof's minimum; the whole eval split when smaller
# examples per emulated ARM64 LiteRT row in the main job: QEMU runs a QA student at seconds per question, so the
# pipeline proves the ARM kernels on fewer than `verify`'s default (benchmarks/RESULTS.md has both runs)
DEFAULT_PIPELINE_ARM_EXAMPLES = 50


def _check_writable(folder: Path) -> None:
    """Refuse an output folder that cannot be created, without creating anything yet."""
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {folder} ({existing} is not a writable folder); choose another path")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run depends on; the CLI fills it from flags, tests from tiny settings."""
    data_dir: Path | None
    run_dir: Path
    bundles_dir: Path
    tasks: tuple[str, ...] = demo_task_names()
    definitions: dict[str, dict] | None = None              # a user's tasks by name: TaskSpec.to_dict(); the rest are demo tasks
    preset: str = "quick"
    teacher: str | dict[str, str] | None = None             # one for every task, or {task: folder or hub id}; none: fine-tuned
    student: str | dict = "tinybert-4l-312d"
    init: str | None = None                                 # student start: random | general | teacher-layers | a folder or hub id; None: the preset's
    seed: int = 42
    precisions: tuple[str, ...] = DEFAULT_TFLITE_PRECISIONS
    coreml_variants: tuple[str, ...] = DEFAULT_COREML_VARIANTS
    skip_coreml: bool = False
    force: bool = False
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    buckets: dict[str, tuple[int, ...]] | None = None       # per task; None = the task registry's buckets
    distill_overrides: dict | None = None                   # passed to distill.stages.run_task (tests: epochs, batch size)
    verify_max_examples: int | None = DEFAULT_VERIFY_EXAMPLES
    verify_thresholds: dict | None = None                   # passed to the verifier (tests: a threshold that must fail)
    verify_runtimes: tuple[str, ...] | None = None          # TFLite runtimes of the parity matrix; None: every installed one
    verify_matrix: str = "shipped"                          # the shipped .tflite on every runtime, the rest on the first ("all": each on each)
    verify_arm_examples: int = DEFAULT_PIPELINE_ARM_EXAMPLES  # eval examples per emulated ARM64 LiteRT row (the file the app opens there)
    latency_runs: int = 10

    def validate(self) -> "PipelineConfig":
        """Refuse bad settings before any work starts, one line each."""
        if not self.tasks:
            raise UserError("no tasks given; pass --tasks with any of: " + " ".join(demo_task_names()))
        specs = [self.task_spec(task) for task in self.tasks]
        if any(spec.builtin for spec in specs) and (self.data_dir is None or not Path(self.data_dir).is_dir()):
            raise UserError(f"data directory {self.data_dir} does not exist; pass --data-dir holding sst2/, sms_spam/, squad_v1/")
        precisions = tuple(check_precisions(self.precisions))
        variants = self.coreml_variants
        if not self.skip_coreml:
            from export.coreml import check_variants

            variants = tuple(check_variants(self.coreml_variants))
        from export.verify.parity import thresholds_with

        thresholds_with(self.verify_thresholds)
        from export.verify.matrix import select_runtimes

        select_runtimes(list(self.verify_runtimes or []))
        from export.verify.matrix import MATRIX_CHOICES

        if self.verify_matrix not in MATRIX_CHOICES:
            raise UserError(f"unknown verify matrix {self.verify_matrix!r}; choose one of: {', '.join(MATRIX_CHOICES)}")
        for name in ("max_train_examples", "max_eval_examples", "verify_max_examples", "verify_arm_examples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                flag = "arm-examples" if name == "verify_arm_examples" else name.replace("_", "-")
                raise UserError(f"--{flag} must be a positive number, got {value}")
        if Path(self.run_dir).resolve() == Path(self.bundles_dir).resolve():
            raise UserError("--out and --bundles must be different folders (the run keeps models and cache, bundles are for the app)")
        for folder in (self.run_dir, self.bundles_dir):
            _check_writable(Path(folder))
        from distill.student import resolve_shape
        from distill.teacher import has_task_head, teacher_config

        resolve_shape(self.student)
        for task in self.tasks:  # a given teacher is checked (BERT, the task's head and labels) before any task runs
            source = self.teacher_for(task)
            if source is not None:
                has_task_head(teacher_config(source), self.task_spec(task), source)
        # Canonical order and no repeats: the same work always has the same cache key.
        return replace(self, tasks=tuple(dict.fromkeys(self.tasks)), precisions=precisions, coreml_variants=variants)

    def teacher_for(self, task: str) -> str | None:
        """The task's teacher source; None: the offline base, fine-tuned for the task."""
        return self.teacher.get(task) if isinstance(self.teacher, dict) else self.teacher

    def task_spec(self, task: str) -> TaskSpec:
        """The task's definition: the user's (from flags) or the demo task's."""
        if self.definitions and task in self.definitions:
            return TaskSpec.from_dict(self.definitions[task], where=f"task {task}")
        return get_task(task)

    def task_buckets(self, task: str) -> tuple[int, ...]:
        return tuple((self.buckets or {}).get(task) or self.task_spec(task).buckets)
