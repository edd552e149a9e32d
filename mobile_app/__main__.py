"""`python -m mobile_app --bundles DIR [--task TASK] [--screenshot OUT_DIR]`: start the Kivy demo app."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mobile_app.runtime.contract import TASK_NAMES


def add_app_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--bundles", type=Path, default=Path("bundles"), help="folder holding sentiment/, spam/ and qa/ bundles (default: bundles)")
    parser.add_argument("--task", choices=TASK_NAMES, help="tab to open first")
    parser.add_argument("--format", choices=("tflite", "coreml"), default="tflite",
                        help="artifacts to run: tflite (default) or coreml (macOS, needs coremltools)")
    parser.add_argument("--screenshot", type=Path, metavar="OUT_DIR",
                        help="render every screen offscreen (running its first example), save OUT_DIR/<task>.png, print one JSON line "
                             "per screen, then exit (status 1 if a screen showed no result)")
    return parser


def _screenshot_folder_problem(folder: Path | None) -> str | None:
    """Why --screenshot cannot be written to, or None."""
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create --screenshot folder {folder} ({error.strerror}); pass a writable folder"
    if not os.access(folder, os.W_OK):
        return f"--screenshot folder {folder} is not writable; pass a writable folder"
    return None


def run_app_command(args: argparse.Namespace) -> int:
    """Start the app (Kivy is imported only now); a bad --screenshot folder is one `error:` line, exit 2."""
    problem = _screenshot_folder_problem(args.screenshot)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # Kivy reads these when it is first imported: keep it from parsing our argv and from chattering on stderr.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    if args.screenshot is not None:
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    from kivy.config import Config

    Config.set("graphics", "width", "480")  # a phone-shaped window on desktops; phones use their screen
    Config.set("graphics", "height", "860")
    from mobile_app.app import run_app

    return run_app(args.bundles, args.task, args.screenshot, args.format)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobile_app",
                                     description="TinyBERT demo app: sentiment, SMS spam and question answering on exported bundles.")
    return run_app_command(add_app_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
