"""Which teacher each task distils from: `--teacher [TASK=]PATH_OR_HUB_ID` (repeatable) and `--teachers DIR`.

Both CLIs (`python -m distill`, `python -m export pipeline`) call `teachers_for`, so the flags mean the same in each.
`TASK=SOURCE` names one task's teacher; a bare SOURCE is the teacher of every task the run does not name; `--teachers
DIR` gives each remaining task DIR/<task>/. A task left without one starts from the offline base and is fine-tuned.
Standard library only: it runs before the heavy imports, so bad flags fail fast with one line.
"""
from __future__ import annotations

import json
from pathlib import Path

from mobile_app.runtime.errors import UserError


# the flags' help, shared by both CLIs
TEACHER_HELP = ("the teacher: a BERT model folder or hub id, for one task as TASK=PATH_OR_HUB_ID (repeatable) or for every "
                "task as a bare PATH_OR_HUB_ID; one with the task's head is used as it is (checked: BERT, the task's head "
                "and labels), a base encoder gets its head fine-tuned (default: the offline MiniLM-L6-H384 base)")
TEACHERS_HELP = "a folder of ready teachers, DIR/<task>/ for each task (e.g. ../shared/models); --teacher TASK=... wins over it"


def parse_teacher_spec(text: str) -> tuple[str | None, str]:
    """'sentiment=PATH' -> ('sentiment', 'PATH'); 'PATH' or 'owner/name' -> (None, it). Bad forms are refused."""
    if "=" not in text:
        if not text.strip():
            raise UserError("--teacher got an empty value; pass --teacher TASK=PATH_OR_HUB_ID or --teacher PATH_OR_HUB_ID")
        return None, text
    task, source = text.split("=", 1)
    if not source.strip():
        raise UserError(f"--teacher {text!r} names no teacher; write {task}=PATH_OR_HUB_ID")
    return task, source


def teachers_for(tasks, specs: list[str] | None = None, teachers_dir: str | Path | None = None) -> dict[str, str]:
    """{task: teacher source} for the tasks that get one; the others are absent (their teacher is fine-tuned)."""
    tasks = tuple(tasks)
    named: dict[str, str] = {}
    shared = None
    for text in specs or ():
        task, source = parse_teacher_spec(text)
        if task is None:
            if shared is not None:
                raise UserError(f"--teacher given twice without a task ({shared!r}, {source!r}); name each: --teacher TASK=PATH")
            shared = source
            continue
        if task in named:
            raise UserError(f"--teacher names {task} twice ({named[task]!r}, {source!r}); pass one teacher per task")
        if task not in tasks:
            raise UserError(f"--teacher {text!r}: {task!r} is not a task of this run (tasks: {' '.join(tasks)}); "
                            "write TASK=PATH_OR_HUB_ID with one of them, or add the task")
        named[task] = source
    if shared is not None and teachers_dir is not None:
        raise UserError("pass either --teacher PATH (one teacher for every task) or --teachers DIR, not both; "
                        "or name the task: --teacher TASK=PATH")
    result = {}
    for task in tasks:
        if task in named:
            result[task] = named[task]
        elif shared is not None:
            result[task] = shared
        elif teachers_dir is not None:
            result[task] = str(_task_folder(Path(teachers_dir), task))
    return result


def _task_folder(root: Path, task: str) -> Path:
    if not root.is_dir():
        raise UserError(f"--teachers {root} is not a folder; pass a folder holding <task>/ teacher folders (e.g. {root}/{task}/)")
    folder = root / task
    if not (folder / "config.json").is_file():
        raise UserError(f"--teachers {root} has no {task}/ teacher (no {folder / 'config.json'}); add it, "
                        f"pass --teacher {task}=PATH_OR_HUB_ID, or leave {task} out of --tasks")
    return folder


def local_head_labels(source: str | None) -> list[str] | None:
    """The class names of a local teacher folder with a classification head, read from its config.json without
    transformers (None for a hub id, a base encoder or a QA head): labels are checked before the heavy imports."""
    if source is None or not (Path(source) / "config.json").is_file():
        return None
    try:
        config = json.loads((Path(source) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # the teacher check names the problem later
    if not any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        return None
    id2label = config.get("id2label") or {}
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(len(id2label))] or None
