"""Distil the three tasks and print teacher vs student quality, size and training time.

    python benchmarks/bench_distill.py --data-dir ../shared/data [--preset quick|medium|full] [--tasks sentiment spam qa]
        [--teachers ../shared/models | --teacher TASK=PATH_OR_HUB_ID ...] [--student PRESET|LxHxAxI]
        [--init general|random|teacher-layers|PATH (default: the preset's)] [--set KEY=VALUE ...] [--out DIR]

Without a teacher the offline MiniLM base is fine-tuned per task; the "teacher" column says which it was.

Writes OUT/<preset>/<task>/ (teacher, general, student), and OUT/bench_distill_<preset>.{md,json,png}.
A task already distilled with the same settings is read back from its distill_report.json, not retrained.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from distill.stages import REPORT_FILE, run_task  # noqa: E402
from distill.cli_args import parse_student  # noqa: E402
from mobile_app.runtime.errors import UserError  # noqa: E402
from distill.settings import PRESET_NAMES, parse_settings  # noqa: E402
from distill.tasks import DATA_DIR_ENV, demo_task_names  # noqa: E402
from distill.teacher_spec import TEACHER_HELP, TEACHERS_HELP, teachers_for  # noqa: E402
from benchmarks.machine import machine_line  # noqa: E402

COLUMNS = ("task", "metric", "eval examples", "train examples", "teacher was", "student start", "precision", "teacher", "student",
           "retention %", "teacher params", "student params", "student MB", "teacher fine-tune s", "general s",
           "intermediate steps", "intermediate s/step", "prediction steps", "prediction s/step", "distil s", "total s", "total CPU s")


def _per_step(phase: dict | None) -> float | None:
    return round(phase["seconds"] / phase["steps"], 3) if phase and phase.get("steps") else None


def _precision(report: dict, phases: dict) -> str:
    """The setting and what it ran as (auto: bfloat16 only where torch's kernels compute it)."""
    ran = sorted({p["dtype"] for p in phases.values() if p and p.get("dtype") and p.get("steps")})
    return f"{report['settings']['train_precision']} ({'/'.join(ran) or '-'})"


def row(report: dict) -> dict:
    wall = report["wall_seconds"]
    phases = report.get("phases") or {}
    teacher, student = report["teacher"], report["student"]
    metric = report["metric"]
    per_phase = {}
    for name in ("intermediate", "prediction"):
        phase = phases.get(name) or {}
        per_phase[f"{name} steps"], per_phase[f"{name} s/step"] = phase.get("steps"), _per_step(phase)
    return {**per_phase, "task": report["task"], "metric": metric, "eval examples": report["data"]["eval_examples"],
            "train examples": report["data"]["train_examples"], "teacher was": "given" if teacher.get("given") else "fine-tuned",
            "student start": student["init"]["kind"], "precision": _precision(report, phases), "teacher": round(teacher["metrics"][metric], 2),
            "student": round(student["metrics"][metric], 2),
            "retention %": round(100 * report["retention"], 1) if report["retention"] is not None else None,
            "teacher params": teacher["parameters"], "student params": student["parameters"],
            "student MB": round(student["weights_bytes"] / 1e6, 1), "teacher fine-tune s": wall.get("teacher", 0.0),
            "general s": wall.get("general", 0.0), "distil s": round(wall.get("intermediate", 0) + wall.get("prediction", 0), 1),
            "total s": wall["total"], "total CPU s": wall.get("cpu_total")}


def markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["teacher"] for r in rows], width=0.4, label="teacher")
    ax.bar([i + 0.2 for i in x], [r["student"] for r in rows], width=0.4, label="student")
    ax.set_xticks(list(x), [f"{r['task']}\n({r['metric']})" for r in rows])
    ax.set_ylabel("eval metric (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV))
    parser.add_argument("--preset", default="quick", choices=PRESET_NAMES)
    parser.add_argument("--tasks", nargs="+", default=list(demo_task_names()))
    parser.add_argument("--teacher", action="append", default=None, metavar="[TASK=]PATH_OR_HUB_ID", help=TEACHER_HELP)
    parser.add_argument("--teachers", default=None, metavar="DIR", help=TEACHERS_HELP)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a distillation setting for every task (a lever to measure)")
    parser.add_argument("--student", default="tinybert-4l-312d")
    parser.add_argument("--init", default=None, help="student start, as `python -m distill run --init` (default: the preset's)")
    parser.add_argument("--out", default="runs/bench_distill")
    args = parser.parse_args(argv)
    out = Path(args.out)
    began, rows = time.time(), []
    try:
        overrides = parse_settings(args.overrides)
        teachers = teachers_for(args.tasks, args.teacher, args.teachers)
        for task in args.tasks:
            student_dir = run_task(task, args.data_dir, out / args.preset / task, preset=args.preset, teacher=teachers.get(task),
                                   student=parse_student(args.student), init=args.init, overrides=overrides)
            rows.append(row(json.loads((student_dir / REPORT_FILE).read_text())))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(rows)
    start = args.init or "the preset's"
    print(f"\nmachine: {machine_line()}")
    print(f"TinyBERT distillation, preset {args.preset}, student {args.student} (start: {start}) "
          f"(sum of the tasks' recorded wall times {sum(r['total s'] for r in rows):.0f}s; this invocation {time.time() - began:.0f}s)\n")
    print(table)
    (out / f"bench_distill_{args.preset}.md").write_text(f"machine: {machine_line()}\n\n{table}\n")
    (out / f"bench_distill_{args.preset}.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, out / f"bench_distill_{args.preset}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
