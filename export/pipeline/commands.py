"""`tinybert-mobile distill|export|verify|pipeline|app`: the kit's one command, built from each stage's parsers.

The same subcommands run as `python -m distill`, `python -m export` and `python -m mobile_app`; this module only
puts them under one name. Exit codes are the stages' own: 0 good, 1 a parity threshold failed, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys

from distill.cli import add_distill_commands
from export.cli import add_export_commands, run_command
from export.pipeline.cli import add_pipeline_parser
from export.verify.cli import add_verify_parser
from mobile_app.__main__ import add_app_arguments, run_app_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinybert-mobile", description="Distil a BERT teacher into TinyBERT, export it to "
                                     "TFLite and Core ML with proven parity, and run it in a Kivy demo app.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    distill = commands.add_parser("distill", help="fine-tune the teacher and distil a student (run, teacher, general, task)")
    add_distill_commands(distill.add_subparsers(dest="stage_command", required=True, metavar="STAGE"))
    export = commands.add_parser("export", help="convert a student to phone formats in its task bundle (tflite, coreml)")
    add_export_commands(export.add_subparsers(dest="format", required=True, metavar="FORMAT"))
    add_verify_parser(commands)
    add_pipeline_parser(commands)
    app = commands.add_parser("app", help="start the Kivy demo app on the bundles")
    add_app_arguments(app)
    app.set_defaults(func=run_app_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
