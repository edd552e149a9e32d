"""`tinybert-mobile distill|export|verify|pipeline|app|package`: the kit's one command line.

Each stage package only registers its parsers (`add_*_commands(subparsers)`); every parsed command then runs
through `run_command`, the one place that handles what all commands share:
  - `args.check(args)`: what the flags alone can tell is wrong, before any heavy import;
  - `args.log_file(args)`: the log file that library warnings go to (distill/console.py), said in one line at the end;
  - a `UserError` (BundleError included) becomes one `error: ...` line and exit code 2, writing no log.
`python -m distill`, `python -m export` and `python -m mobile_app` are aliases of the same commands.
Exit codes: 0 good, 1 a parity threshold failed, 2 bad input, 3 distillation stopped early (`--stop-after-epochs`).
"""
from __future__ import annotations

import argparse
import sys

from distill.cli import add_distill_commands
from export.cli import add_export_commands
from export.pipeline.cli import add_pipeline_parser
from export.verify.cli import add_verify_parser
from mobile_app.command import add_app_parser
from mobile_app.package_app import add_package_parser
from mobile_app.runtime.errors import UserError

PROG = "tinybert-mobile"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Distil a BERT teacher into TinyBERT, export it to TFLite and Core ML "
                                     "with proven parity, and run it in a Kivy demo app.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    distill = commands.add_parser("distill", help="fine-tune the teacher and distil a student (run, teacher, general, task)")
    add_distill_commands(distill.add_subparsers(dest="distill_command", required=True, metavar="STAGE"))
    export = commands.add_parser("export", help="convert a student or a fine-tuned model to phone formats in a bundle (tflite, coreml)")
    add_export_commands(export.add_subparsers(dest="format", required=True, metavar="FORMAT"))
    add_verify_parser(commands)
    add_pipeline_parser(commands)
    add_app_parser(commands)
    add_package_parser(commands)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: check, route library output, run; bad input is one `error:` line and exit code 2."""
    from distill.console import library_note, route_library_output

    message = None
    try:
        check = getattr(args, "check", None)
        if check is not None:
            check(args)
        log_file = getattr(args, "log_file", None)
        if log_file is not None and log_file(args) is not None:
            route_library_output(log_file(args))
        code = args.func(args)
    except UserError as error:
        code, message = 2, f"error: {error}"
    note = library_note(save=code != 2)
    if note:
        print(f"library warnings: {note}")
    if message:
        print(message, file=sys.stderr)
    return code


def _subparser(parser: argparse.ArgumentParser, word: str) -> argparse.ArgumentParser | None:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices.get(word) if actions else None


def main(argv: list[str] | None = None, alias: tuple[int, str] | None = None) -> int:
    """Parse and run `argv`. `alias` (words, prog): an alias's argv starts with `words` command words that its user did
    not type (`python -m distill run` is `distill run`); the command they lead to is shown as `prog` in help and errors."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if alias is not None:
        target = parser
        for word in argv[:alias[0]]:
            target = _subparser(target, word) or target
        target.prog = alias[1]
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
