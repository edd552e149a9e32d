"""The app's command: `tinybert-mobile app` / `python -m mobile_app`, and the packaged app's start on the phone.

Standard library until the app starts (Kivy is imported then); the phone's main.py calls `start_app` directly.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from mobile_app.runtime.errors import UserError


def add_app_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--bundles", type=Path, default=Path("bundles"), help="folder of bundles, one tab each (default: bundles)")
    parser.add_argument("--task", metavar="NAME", help="the tab to open first: a bundle folder's name")
    parser.add_argument("--format", choices=("tflite", "coreml"), default="tflite",
                        help="artifacts to run: tflite (default) or coreml (macOS, needs coremltools)")
    parser.add_argument("--screenshot", type=Path, metavar="OUT_DIR",
                        help="render every screen offscreen (running its first example), save OUT_DIR/<task>.png, print one JSON line "
                             "per screen, then exit (status 1 if a screen showed no result)")
    return parser


def add_app_parser(subparsers) -> argparse.ArgumentParser:
    """Register `app` on the kit's command line."""
    parser = subparsers.add_parser("app", help="start the Kivy demo app on the bundles",
                                   description="TinyBERT demo app: one tab per bundle, running it through the on-device runtime.")
    add_app_arguments(parser)
    parser.set_defaults(func=start_app, check=check_app_args)
    return parser


def check_app_args(args: argparse.Namespace) -> None:
    """Refuse a --task that names no bundle and a --screenshot folder that cannot be written to."""
    from mobile_app.runtime.bundle import find_bundles

    names = [bundle.name for bundle in find_bundles(args.bundles)]
    if args.task is not None and names and args.task not in names:
        raise UserError(f"--task {args.task!r} is not a bundle in {args.bundles}; it holds: {', '.join(names)}")
    folder = args.screenshot
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create --screenshot folder {folder} ({error.strerror}); pass a writable folder") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"--screenshot folder {folder} is not writable; pass a writable folder")


def start_app(args: argparse.Namespace) -> int:
    """Start the app (Kivy is imported only now) and return its exit status."""
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
