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


def add_data_argument(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--data-dir", type=Path, required=required, default=None,
                        help="folder holding sst2/, sms_spam/, squad_v1/" + ("" if required else " (default $TINYBERT_DATA_DIR)"))


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
