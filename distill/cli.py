"""Command line of the distillation stage: `run` (every stage) or one stage: `teacher`, `general`, `task`."""
from __future__ import annotations

import argparse
import json
import os
import sys

from distill.errors import UserError
from distill.settings import DEFAULT_INIT_HELP, PRESET_NAMES
from distill.student import PRESETS
from distill.tasks import TASKS


def _setting(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_student(text: str):
    """A preset name, or a custom shape LAYERSxHIDDENxHEADSxINTERMEDIATE such as 2x64x4x128."""
    parts = text.split("x")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return dict(zip(("layers", "hidden", "heads", "intermediate"), map(int, parts)))
    return text




def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m distill", description="Distil a BERT teacher into a TinyBERT student.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {"run": "every stage: teacher, general distillation (with --init general), task distillation",
             "teacher": "fine-tune the teacher's task head (cached in OUT/teacher/)",
             "general": "general distillation of a student encoder on plain text (OUT/general/)",
             "task": "task distillation only, from OUT/teacher/ (and OUT/general/ with --init general)"}
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--task", required=True, help=f"task to distil for: {', '.join(TASKS)}")
        sub.add_argument("--data-dir", default=None, help="folder with sst2/, sms_spam/, squad_v1/ (default $TINYBERT_DATA_DIR)")
        sub.add_argument("--out", required=True, help="output folder: OUT/teacher/, OUT/general/, OUT/student/")
        sub.add_argument("--preset", default="quick", choices=PRESET_NAMES, help="quick: minutes on 2 cores; "
                         "medium: a better student (2 cores: ~20 min for sentiment or spam, ~2 h for QA); full: the paper's schedule")
        sub.add_argument("--teacher", default=None, help="BERT model folder or hub id (default: the offline MiniLM-L6-H384 base)")
        sub.add_argument("--student", default="tinybert-4l-312d", type=parse_student,
                         help=f"student preset ({', '.join(PRESETS)}) or LAYERSxHIDDENxHEADSxINTERMEDIATE")
        sub.add_argument("--init", default=None, help="student start: random, general (our general distillation), teacher-layers (the fine-tuned teacher "
                         "with layers dropped, and narrowed to a narrower student's width), or a general TinyBERT folder / hub id; "
                         + DEFAULT_INIT_HELP)
        sub.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/")
        sub.add_argument("--seed", type=int, default=42)
        sub.add_argument("--max-train-examples", type=int, default=None)
        sub.add_argument("--max-eval-examples", type=int, default=None)
        sub.add_argument("--set", dest="overrides", action="append", type=_setting, default=[], metavar="KEY=VALUE",
                         help="override a setting, e.g. --set intermediate_epochs=5 (repeatable)")
        sub.add_argument("--stop-after-epochs", type=int, default=None, help="stop after N epochs in this invocation (resume later)")
        if name == "general":
            sub.add_argument("--corpus", nargs="+", default=None, help="text files, one text per line (default: the task's training texts)")
    return parser


STAGES_OF = {"run": ("teacher", "general", "task"), "teacher": ("teacher",), "general": ("general",), "task": ("task",)}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from distill import api
        from distill.trainer import Interrupted

        kwargs = dict(task=args.task, data_dir=args.data_dir, out_dir=args.out, preset=args.preset, teacher=args.teacher,
                      student=args.student, seed=args.seed, max_train_examples=args.max_train_examples,
                      max_eval_examples=args.max_eval_examples, overrides=dict(args.overrides), init=args.init,
                      resume=args.resume, stop_after_epochs=args.stop_after_epochs)
        if args.command == "general":
            path = api.run_general(corpus=args.corpus, **kwargs)
        else:
            path = api.run_task(stages=STAGES_OF[args.command], **kwargs)
        if int(os.environ.get("RANK", "0")) == 0:
            print(path)
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"stopped: {stop}", file=sys.stderr)
        return 3
