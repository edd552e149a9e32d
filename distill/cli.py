"""Command line of the distillation stage: `run` (every stage) or one stage: `teacher`, `general`, `task`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from distill.cli_args import add_data_argument, add_distill_arguments, add_setting_argument, add_task_data_arguments, task_of_args
from mobile_app.runtime.errors import UserError
from distill.tasks import demo_task_names
from distill.teacher_spec import teachers_for

COMMANDS = {"run": "every stage: teacher, general distillation (with --init general), task distillation",
            "teacher": "fine-tune the teacher's task head (cached in OUT/teacher/)",
            "general": "general distillation of a student encoder on plain text (OUT/general/)",
            "task": "task distillation only, from OUT/teacher/ (and OUT/general/ with --init general)"}


LOG_NAME = "distill.log"


def add_distill_commands(subparsers) -> None:
    """Register run / teacher / general / task, each with the shared distillation arguments."""
    for name, text in COMMANDS.items():
        sub = subparsers.add_parser(name, help=text, description=text)
        sub.add_argument("--task", required=True, help=f"a demo task ({', '.join(demo_task_names())}) or your task's name with "
                         "--train-file/--eval-file or --dataset-name")
        add_data_argument(sub)
        add_task_data_arguments(sub)
        sub.add_argument("--out", required=True, help="output folder: OUT/teacher/, OUT/general/, OUT/student/")
        add_distill_arguments(sub)
        add_setting_argument(sub)
        sub.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/")
        sub.add_argument("--stop-after-epochs", type=int, default=None, help="stop after N epochs in this invocation (resume later)")
        if name == "general":
            sub.add_argument("--corpus", nargs="+", default=None, help="text files, one text per line (default: the task's training texts)")
        sub.set_defaults(func=run_stage, check=check_args, log_file=lambda args: Path(args.out) / LOG_NAME, stage=name)


def check_args(args: argparse.Namespace) -> None:
    """Everything the flags alone can tell is wrong, before the heavy imports; types the --set overrides in place."""
    from distill.run_folder import check_writable
    from distill.settings import parse_settings, settings_for
    from distill.teacher_spec import local_head_labels

    spec = task_of_args(args)
    args.teacher_source = teachers_for((spec.name,), args.teacher, args.teachers).get(spec.name)
    args.overrides = parse_settings(args.overrides)
    for flag in ("max_train_examples", "max_eval_examples", "stop_after_epochs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {value}; leave it out for no limit")
    flagged = {k: getattr(args, k) for k in ("max_train_examples", "max_eval_examples") if getattr(args, k) is not None}
    settings_for(spec, args.preset, {**args.overrides, **flagged})
    check_writable(args.out)
    if not spec.labels and not spec.is_qa:  # the labels the teacher's head gives, or the train file's
        spec = spec.resolved(local_head_labels(args.teacher_source), args.data_dir)
    if args.stage != "general" or args.corpus is None:
        spec.load(args.data_dir)  # every file, column and label checked now, not after minutes of imports
    args.task_spec = spec


def run_stage(args: argparse.Namespace) -> int:
    """Run the chosen stage; prints the folder it wrote. Exit 3 when stopped early (`--stop-after-epochs`)."""
    from distill import stages
    from distill.trainer import Interrupted

    kwargs = dict(task=args.task_spec, data_dir=args.data_dir, out_dir=args.out, preset=args.preset, teacher=args.teacher_source,
                  student=args.student, seed=args.seed, max_train_examples=args.max_train_examples,
                  max_eval_examples=args.max_eval_examples, overrides=args.overrides, init=args.init,
                  resume=args.resume, stop_after_epochs=args.stop_after_epochs)
    stage = {"run": stages.run_task, "teacher": stages.run_teacher, "general": stages.run_general, "task": stages.run_student}[args.stage]
    if args.stage == "general":
        kwargs["corpus"] = args.corpus
    try:
        path = stage(**kwargs)
    except Interrupted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:
        print(path)
    return 0
