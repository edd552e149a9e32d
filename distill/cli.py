"""Command line of the distillation stage: `run` (every stage) or one stage: `teacher`, `general`, `task`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from distill.cli_args import add_data_argument, add_distill_arguments, add_setting_argument
from distill.console import library_note, route_library_output
from mobile_app.runtime.errors import UserError
from distill.tasks import TASKS
from distill.teacher_spec import teachers_for

COMMANDS = {"run": "every stage: teacher, general distillation (with --init general), task distillation",
            "teacher": "fine-tune the teacher's task head (cached in OUT/teacher/)",
            "general": "general distillation of a student encoder on plain text (OUT/general/)",
            "task": "task distillation only, from OUT/teacher/ (and OUT/general/ with --init general)"}


LOG_NAME = "distill.log"


def _say_library_note() -> None:
    note = library_note()
    if note:
        print(f"library warnings: {note}")


def add_distill_commands(subparsers) -> None:
    """Register run / teacher / general / task, each with the shared distillation arguments."""
    for name, text in COMMANDS.items():
        sub = subparsers.add_parser(name, help=text, description=text)
        sub.add_argument("--task", required=True, help=f"task to distil for: {', '.join(TASKS)}")
        add_data_argument(sub)
        sub.add_argument("--out", required=True, help="output folder: OUT/teacher/, OUT/general/, OUT/student/")
        add_distill_arguments(sub)
        add_setting_argument(sub)
        sub.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/")
        sub.add_argument("--stop-after-epochs", type=int, default=None, help="stop after N epochs in this invocation (resume later)")
        if name == "general":
            sub.add_argument("--corpus", nargs="+", default=None, help="text files, one text per line (default: the task's training texts)")
        sub.set_defaults(func=run_command, stage=name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill", description="Distil a BERT teacher into a TinyBERT student.")
    add_distill_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def check_args(args: argparse.Namespace) -> dict:
    """Everything the flags alone can tell is wrong, before the heavy imports; returns the typed --set overrides."""
    from distill.run_folder import check_writable
    from distill.settings import parse_settings, settings_for
    from distill.tasks import get_task

    overrides = parse_settings(args.overrides)
    for flag in ("max_train_examples", "max_eval_examples", "stop_after_epochs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1, got {value}; leave it out for no limit")
    flagged = {k: getattr(args, k) for k in ("max_train_examples", "max_eval_examples") if getattr(args, k) is not None}
    settings_for(get_task(args.task), args.preset, {**overrides, **flagged})
    check_writable(args.out)
    return overrides


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen stage; prints the folder it wrote. Exit 2 on bad input, 3 when stopped early."""
    try:
        teacher = teachers_for((args.task,), args.teacher, args.teachers).get(args.task)  # before the heavy imports
        args.overrides = check_args(args)
        route_library_output(Path(args.out) / LOG_NAME)
        from distill import stages
        from distill.trainer import Interrupted

        kwargs = dict(task=args.task, data_dir=args.data_dir, out_dir=args.out, preset=args.preset, teacher=teacher,
                      student=args.student, seed=args.seed, max_train_examples=args.max_train_examples,
                      max_eval_examples=args.max_eval_examples, overrides=args.overrides, init=args.init,
                      resume=args.resume, stop_after_epochs=args.stop_after_epochs)
        stage = {"run": stages.run_task, "teacher": stages.run_teacher, "general": stages.run_general, "task": stages.run_student}[args.stage]
        if args.stage == "general":
            kwargs["corpus"] = args.corpus
        path = stage(**kwargs)
        if int(os.environ.get("RANK", "0")) == 0:
            _say_library_note()
            print(path)
        return 0
    except UserError as error:
        library_note(save=False)
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        _say_library_note()
        print(f"stopped: {stop}", file=sys.stderr)
        return 3


def main(argv=None) -> int:
    return run_command(build_parser().parse_args(argv))
