"""Argument groups the command lines share, so each flag is defined once.

`python -m distill`, `python -m export pipeline` and `tinybert-mobile` build their parsers from these.
Light on purpose: nothing here imports torch or transformers, so a bad flag fails fast.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from distill.settings import DEFAULT_INIT_HELP, PRESET_NAMES
from distill.student import PRESETS
from distill.teacher_spec import TEACHER_HELP, TEACHERS_HELP

DEFAULT_STUDENT = "tinybert-4l-312d"


def parse_student(text: str):
    """A preset name, or a custom shape LAYERSxHIDDENxHEADSxINTERMEDIATE such as 2x64x4x128."""
    parts = text.split("x")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return dict(zip(("layers", "hidden", "heads", "intermediate"), map(int, parts)))
    return text


def add_data_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the demo tasks' data: a folder holding sst2/, sms_spam/, squad_v1/ (default $TINYBERT_DATA_DIR)")


# The flags that describe a user's own task and data (Hugging Face run_glue.py's conventions); see distill/tasks.py.
TASK_DATA_FLAGS = ("train_file", "eval_file", "text_column", "text_pair_column", "label_column", "task_kind", "labels",
                   "dataset_name", "dataset_config", "train_split", "eval_split")


def add_task_data_arguments(parser: argparse.ArgumentParser, train: bool = True) -> None:
    """Your own data: files (CSV, TSV, JSON Lines; SQuAD JSON for QA) or a hub dataset, its columns and labels."""
    group = parser.add_argument_group("your own data (a new --task name; see docs/tasks.md)")
    if train:
        group.add_argument("--train-file", type=Path, metavar="F", help="training examples: .csv, .tsv, .jsonl, or SQuAD .json for QA")
    group.add_argument("--eval-file", type=Path, metavar="F", help="evaluation examples, same format (default: a stratified 10%% of --train-file)")
    group.add_argument("--text-column", metavar="C", help="default: sentence1 (with sentence2 as the pair) when present, else text or sentence")
    group.add_argument("--text-pair-column", metavar="C", help="the second text of a sentence-pair task (default: sentence2 beside sentence1)")
    group.add_argument("--label-column", metavar="C", help="default: label")
    group.add_argument("--task-kind", choices=("classification", "qa"), help="default: classification (SQuAD JSON: qa)")
    group.add_argument("--labels", nargs="+", metavar="L", help="the classes in the model's order (default: the teacher's id2label when it "
                       "has a head, else the train file's label names sorted); rows may give a label by name or by index")
    group.add_argument("--dataset-name", metavar="ID", help="a Hugging Face dataset id or local dataset folder, read with `datasets` "
                       "(pip install 'tinybert-mobile[hub]')")
    group.add_argument("--dataset-config", metavar="NAME", help="the dataset's configuration, e.g. sst2 of glue")
    if train:
        group.add_argument("--train-split", metavar="S", help="default: train")
    group.add_argument("--eval-split", metavar="S", help="default: validation when present, else cut from the train split")


def task_of_args(args: argparse.Namespace, name: str | None = None):
    """The TaskSpec the flags describe (distill/tasks.py task_from_flags); standard library only."""
    from distill.tasks import task_from_flags

    flags = {flag: getattr(args, flag, None) for flag in TASK_DATA_FLAGS}
    return task_from_flags(name if name is not None else args.task, **flags)


def add_distill_arguments(parser: argparse.ArgumentParser) -> None:
    """What decides a student: preset, teacher, student shape and start, seed and data limits."""
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES,
                        help="quick: minutes on 2 cores; medium: a better student (hours for QA on 2 cores; times in "
                             "benchmarks/RESULTS.md); full: the paper's schedule (default quick)")
    parser.add_argument("--teacher", action="append", default=None, metavar="[TASK=]PATH_OR_HUB_ID", help=TEACHER_HELP)
    parser.add_argument("--teachers", default=None, metavar="DIR", help=TEACHERS_HELP)
    parser.add_argument("--student", default=DEFAULT_STUDENT, type=parse_student,
                        help=f"student preset ({', '.join(PRESETS)}; default {DEFAULT_STUDENT}) or LAYERSxHIDDENxHEADSxINTERMEDIATE, "
                             "e.g. 2x64x4x128")
    parser.add_argument("--init", default=None, help="student start: random, general (our general distillation), teacher-layers "
                        "(the fine-tuned teacher with layers dropped, narrowed to a narrower student's width), or a general "
                        "TinyBERT folder / hub id; " + DEFAULT_INIT_HELP)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train-examples", type=int, default=None, metavar="N", help="cap the training split (quick experiments)")
    parser.add_argument("--max-eval-examples", type=int, default=None, metavar="N", help="cap the evaluation split for distillation metrics")


def add_setting_argument(parser: argparse.ArgumentParser) -> None:
    # KEY=VALUE text, typed by distill.settings.parse_settings against the settings' field types
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a distillation setting, e.g. --set intermediate_epochs=5 (repeatable; true/false, none for no limit)")
