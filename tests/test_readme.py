"""The README is a user guide people copy from: every command in it parses as written, and it stays short."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"


def _readme_commands() -> list[list[str]]:
    """The `python -m ...` lines of the README's bash blocks, continuation lines joined, comments dropped."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:2] == ["python", "-m"]:
                    commands.append(words[2:])
    return commands


def _kit_argv(words: list[str]) -> list[str] | None:
    """The kit's argv for an alias (`python -m export tflite` is `export tflite`), or None for a module of its own."""
    module, rest = words[0], words[1:]
    if module == "distill":
        return ["distill", *rest]
    if module == "export":
        return ["export", *rest] if rest[0] in ("tflite", "coreml") else rest
    if module == "mobile_app":
        return ["app", *rest]
    if module == "mobile_app.package_app":
        return ["package", *rest]
    return None


def test_the_readme_is_short():
    assert len(README.read_text(encoding="utf-8")) <= 12_000


def test_every_readme_command_parses_as_written():
    from export.commands import build_parser
    from export.verify.runtimes import main as runtimes_main

    commands = _readme_commands()
    modules = {words[0] for words in commands}
    assert {"distill", "export", "mobile_app", "mobile_app.package_app", "export.verify.runtimes"} <= modules
    for words in commands:
        argv = _kit_argv(words)
        if argv is None:
            assert words[0] == "export.verify.runtimes" and words[1:] == ["install"], words
            assert runtimes_main(["list"]) == 0  # the module runs; `install` is what `make setup` runs
            continue
        args = build_parser().parse_args(argv)  # argparse exits (SystemExit) on a misspelt command or flag
        assert callable(args.func), words
