"""`python -m export pipeline`: flags -> PipelineConfig -> run -> exit code.

Exit codes: 0 all good; 1 a parity threshold failed (the task and artifact are named); 2 bad input (export/commands.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.cli_args import TASK_DATA_FLAGS, add_data_argument, add_distill_arguments, add_task_data_arguments, task_of_args
from distill.tasks import demo_task_names
from distill.teacher_spec import local_head_labels, teachers_for
from export.verify.cli import add_matrix_argument, add_runtimes_argument, add_threshold_argument, threshold_overrides
from export.pipeline.config import DEFAULT_PIPELINE_ARM_EXAMPLES, DEFAULT_VERIFY_EXAMPLES, PipelineConfig
from mobile_app.runtime.contract import COREML_VARIANTS, DEFAULT_COREML_VARIANTS, DEFAULT_TFLITE_PRECISIONS, TFLITE_PRECISIONS
from mobile_app.runtime.errors import UserError


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_data_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="run folder: models, stage cache, report.md/.html")
    parser.add_argument("--bundles", required=True, type=Path, help="bundles for the app: BUNDLES/<task>/bundle.json")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help=f"demo tasks, any of {' '.join(demo_task_names())} (default: all)")
    parser.add_argument("--task", metavar="NAME", help="your own task: its name, with --train-file/--eval-file or --dataset-name")
    add_task_data_arguments(parser)
    add_distill_arguments(parser)
    parser.add_argument("--precisions", nargs="+", default=list(DEFAULT_TFLITE_PRECISIONS), metavar="P",
                        help=f"TFLite precisions, any of {' '.join(TFLITE_PRECISIONS)}")
    parser.add_argument("--coreml-variants", nargs="+", default=list(DEFAULT_COREML_VARIANTS), metavar="V",
                        help=f"Core ML variants, any of {' '.join(COREML_VARIANTS)}")
    parser.add_argument("--skip-coreml", action="store_true", help="build TFLite artifacts only")
    parser.add_argument("--force", action="store_true", help="ignore every cache (pipeline stages and distillation folders) and redo all")
    parser.add_argument("--verify-max-examples", type=int, default=DEFAULT_VERIFY_EXAMPLES, metavar="N",
                        help=f"parity on the first N eval examples (default {DEFAULT_VERIFY_EXAMPLES}; all when the split is smaller)")
    add_threshold_argument(parser)
    add_runtimes_argument(parser, arm_examples=DEFAULT_PIPELINE_ARM_EXAMPLES)
    add_matrix_argument(parser, default="shipped")
    parser.set_defaults(func=lambda args: run_and_report(args.config), check=check_pipeline, log_file=lambda args: Path(args.out) / "export.log")
    return parser


def add_pipeline_parser(subparsers) -> argparse.ArgumentParser:
    """Register `pipeline` on a subcommand list (`python -m export`, `tinybert-mobile`)."""
    parser = subparsers.add_parser("pipeline", help="distil, export, verify and report every task in one go",
                                   description="Per task: distillation -> TFLite -> Core ML -> parity -> latency; bundles for the app and a report.")
    return add_pipeline_arguments(parser)


def _tasks(args: argparse.Namespace) -> tuple[tuple[str, ...], dict | None]:
    """(task names, the user's task definitions): --tasks of the demo tasks, or --task NAME with its data flags."""
    described = [flag for flag in TASK_DATA_FLAGS if getattr(args, flag, None) is not None]
    if args.task is None:
        if described:
            raise UserError(f"--{described[0].replace('_', '-')} describes your own data; name the task with --task NAME")
        return tuple(args.tasks or demo_task_names()), None
    if args.tasks:
        raise UserError("pass --tasks (demo tasks) or --task NAME (your own task), not both")
    spec = task_of_args(args)
    if spec.builtin:
        return (spec.name,), None
    if not spec.labels and not spec.is_qa:
        spec = spec.resolved(local_head_labels(teachers_for((spec.name,), args.teacher, args.teachers).get(spec.name)))
    spec.load(args.data_dir)  # files, columns and labels checked before any stage runs
    return (spec.name,), {spec.name: spec.to_dict()}


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    tasks, definitions = _tasks(args)
    return PipelineConfig(data_dir=args.data_dir, run_dir=args.out, bundles_dir=args.bundles, tasks=tasks, definitions=definitions,
                          preset=args.preset, teacher=teachers_for(tasks, args.teacher, args.teachers) or None,
                          student=args.student, init=args.init, seed=args.seed,
                          precisions=tuple(args.precisions), coreml_variants=tuple(args.coreml_variants),
                          skip_coreml=args.skip_coreml, force=args.force, max_train_examples=args.max_train_examples,
                          max_eval_examples=args.max_eval_examples, verify_max_examples=args.verify_max_examples,
                          verify_thresholds=threshold_overrides(args.threshold) or None,
                          verify_runtimes=tuple(args.runtimes) if args.runtimes else None, verify_matrix=args.matrix,
                          verify_arm_examples=args.arm_examples)


def check_pipeline(args: argparse.Namespace) -> None:
    """Every flag checked and turned into the run's PipelineConfig, before anything heavy is imported."""
    args.config = config_from_args(args)


def run_and_report(cfg: PipelineConfig) -> int:
    """Run the pipeline and print its summary table; the exit code: 0 good, 1 parity failed."""
    from export.pipeline.report import console_summary
    from export.pipeline.run import run_pipeline

    summary = run_pipeline(cfg)
    print(console_summary(summary))
    print(f"\nreport: {summary['report']['markdown']} and {summary['report']['html']}")
    for task in summary["tasks"]:
        for artifact in task["artifacts"]:
            if artifact.get("passed") is False:
                for failure in artifact.get("failures") or [f"{artifact['name']}: a parity threshold failed"]:
                    print(f"parity FAILED (task {task['task']}): {failure}", file=sys.stderr)
    return summary["exit_code"]
