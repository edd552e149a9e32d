"""The floors the folders show: every import goes down a floor, and the kit's one command reaches every stage.

runtime (numpy + stdlib) <- distill <- export's converters <- export.verify <- export.pipeline; the Kivy app
imports only the runtime. Checked on the source (every import statement, also inside functions).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def _floor(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).parts
    if parts[:2] == ("mobile_app", "runtime"):
        return "runtime"
    if parts[0] == "mobile_app":
        return "app"
    if parts[0] == "distill":
        return "distill"
    if parts[:2] == ("export", "verify"):
        return "verify"
    if parts[:2] == ("export", "pipeline"):
        return "pipeline"
    return "converters"


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


# The interpreters a backend opens on the device (imported only when a backend is opened).
INTERPRETERS = ("ai_edge_litert", "tflite_runtime", "tensorflow", "coremltools", "jnius", "android")
# What each floor may not import (the kit's own packages above it, and what the phone has not got).
FORBIDDEN = {
    "runtime": lambda n: not (n.split(".")[0] in STDLIB or _within(n, "numpy", "mobile_app.runtime", *INTERPRETERS)),
    "app": lambda n: _within(n, "distill", "export", "torch", "transformers", "tokenizers"),
    "distill": lambda n: _within(n, "export", "kivy") or (_within(n, "mobile_app") and not _within(n, "mobile_app.runtime")),
    "converters": lambda n: _within(n, "export.verify", "export.pipeline", "kivy")
    or (_within(n, "mobile_app") and not _within(n, "mobile_app.runtime")),
    "verify": lambda n: _within(n, "export.pipeline", "kivy") or (_within(n, "mobile_app") and not _within(n, "mobile_app.runtime")),
    "pipeline": lambda n: _within(n, "kivy"),
}
# Entry points sit on top of their package and assemble the commands of the floors above it.
ENTRY_POINTS = {"export/commands.py", "export/__main__.py", "distill/__main__.py", "mobile_app/__main__.py", "mobile_app/package_app.py"}


def _sources():
    for package in ("distill", "export", "mobile_app"):
        yield from sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", list(_sources()), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_import_goes_down_a_floor(path):
    if path.relative_to(REPO_ROOT).as_posix() in ENTRY_POINTS:
        return
    floor = _floor(path)
    wrong = sorted(name for name in _imports(path) if FORBIDDEN[floor](name))
    assert not wrong, f"{path.relative_to(REPO_ROOT)} ({floor} floor) imports {wrong}"


def test_the_one_command_reaches_every_stage_and_answers_bad_input_in_one_line(tmp_path):
    command = [sys.executable, "-m", "export.commands"]
    helped = subprocess.run(command + ["--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for stage in ("distill", "export", "verify", "pipeline", "app", "package"):
        assert f"    {stage} " in helped.stdout
    for argv in (["verify", str(tmp_path / "none")], ["export", "tflite", str(tmp_path / "none"), "--out", str(tmp_path / "b")],
                 ["package", "--bundles", str(tmp_path / "none"), "--out", str(tmp_path / "b")]):
        done = subprocess.run(command + argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "b").exists()


def test_under_ci_a_missing_data_folder_fails_instead_of_skipping(tmp_path):
    env = dict(__import__("os").environ, CI="true", TINYBERT_DATA_DIR=str(tmp_path / "no-data"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_data.py::test_sst2_counts_and_labels"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "1 error" in done.stdout and "CI=true runs every test on the real data" in done.stdout
