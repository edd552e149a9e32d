"""The run report: RUN_DIR/report.md and a self-contained RUN_DIR/report.html (inline CSS, base64 PNGs).

Both are rendered from the run summary the pipeline writes (RUN_DIR/summary.json), so a report can be
re-rendered without re-running anything. Summary layout: {"run_dir", "created_at", "settings", "tasks", "failed",
"exit_code", "seconds" (the whole run)}, per task:
  {"task", "metric_name", "bundle_dir", "teacher": {"metric", "params", "size_bytes", "examples"}, "student": {...},
   "retention", "reference": {"metric", "examples"} (the PyTorch student on the parity examples),
   "artifacts": [{"name", "format", "precision", "size_bytes", "metric", "examples", "max_abs_diff", "mean_abs_diff",
                  "agreement", "passed", "failures", "latency_ms", "latency_bucket"}],
   "diffs": {artifact name: [per-example max abs diff, ...]}, "stages": {stage: {"ran", "seconds"}}}
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from mobile_app.runtime.files import write_atomic

REPORT_MD, REPORT_HTML, FIGURES_DIR = "report.md", "report.html", "report_files"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1240px;color:#212121;padding:0 16px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:19px;margin-top:32px;border-bottom:2px solid #e0e0e0;padding-bottom:4px}
.meta{color:#616161;font-size:13px}
table{border-collapse:collapse;margin:10px 0;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:4px 9px;text-align:right;white-space:nowrap}
th{background:#eceff1} td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
.pass{color:#2e7d32;font-weight:bold} .fail{color:#c62828;font-weight:bold} .na{color:#757575}
.failures{color:#c62828;font-size:13px} img{max-width:100%;border:1px solid #e0e0e0}
.banner{padding:8px 12px;border-radius:4px;font-weight:bold;display:inline-block;margin:8px 0}
.banner.pass{background:#e8f5e9} .banner.fail{background:#ffebee}
"""


def fmt_size(size_bytes) -> str:
    if size_bytes is None:
        return "-"
    return f"{size_bytes / 1e6:.2f} MB" if size_bytes >= 1e5 else f"{size_bytes / 1e3:.1f} kB"


def _fmt(value, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _status(passed) -> str:
    return "n/a" if passed is None else ("pass" if passed else "FAIL")


def task_rows(task: dict) -> list[list[str]]:
    """Teacher and student (distillation eval set), the student on the parity examples, then each artifact.

    An artifact's metric is measured on the parity examples, so "vs PyTorch" compares it with the
    PyTorch student on exactly those examples.
    """
    reference = task.get("reference") or {}
    header = ["model", "metric", "examples", "vs PyTorch", "max abs diff", "mean abs diff", "agreement", "size", "latency", "parity"]
    rows = [header]
    teacher = task.get("teacher", {})
    teacher_label = "teacher (PyTorch, given)" if teacher.get("given") else "teacher (PyTorch, fine-tuned here)"
    for label, row in ((teacher_label, teacher), ("student (PyTorch)", task.get("student", {}))):
        if row.get("params"):
            label = label[:-1] + f", {row['params'] / 1e6:.1f}M params)"
        rows.append([label, _fmt(row.get("metric")), _fmt(row.get("examples"), "d"), "-", "-", "-", "-",
                     fmt_size(row.get("size_bytes")), "-", "-"])
    if reference.get("metric") is not None:
        rows.append(["student (PyTorch), parity examples", _fmt(reference["metric"]), _fmt(reference.get("examples"), "d"),
                     "-", "-", "-", "-", fmt_size(task.get("student", {}).get("size_bytes")), "-", "-"])
    for art in task.get("artifacts", []):
        delta = None if art.get("metric") is None or reference.get("metric") is None else art["metric"] - reference["metric"]
        label = art["name"] + (f" on {art['runtime']}" if art.get("runtime") else "")
        rows.append([label, _fmt(art.get("metric")), _fmt(art.get("examples"), "d"), _fmt(delta, "+.2f"),
                     _fmt(art.get("max_abs_diff"), ".2e"), _fmt(art.get("mean_abs_diff"), ".2e"), _fmt(art.get("agreement"), ".2f", "%"),
                     fmt_size(art.get("size_bytes")), _fmt(art.get("latency_ms"), ".2f", " ms"), _status(art.get("passed"))])
    return rows


def runtime_matrix_rows(task: dict) -> list[list[str]] | None:
    """Artifact x runtime: each runtime's parity result and median latency per example (None without runtimes)."""
    columns = list(dict.fromkeys(name for art in task.get("artifacts", []) for name in art.get("runtimes") or {}))
    if not columns:
        return None
    return [["artifact", *columns]] + [[art["name"], *((art.get("runtimes") or {}).get(name, "") for name in columns)]
                                       for art in task.get("artifacts", [])]


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def overview_rows(summary: dict) -> list[list[str]]:
    """One row per task: teacher and student metric on the eval examples, retention, artifacts, parity, and the time
    its stages took in this run (cached stages count 0); a last row with the whole run's time."""
    rows = [["task", "metric", "eval examples", "teacher", "student", "retention", "student size", "artifacts", "parity", "time"]]
    for task in summary.get("tasks", []):
        arts = task.get("artifacts", [])
        failed = [a["name"] for a in arts if a.get("passed") is False]
        parity = "n/a" if all(a.get("passed") is None for a in arts) else ("FAIL: " + ", ".join(failed) if failed else "pass")
        seconds = sum(info.get("seconds", 0.0) for info in (task.get("stages") or {}).values() if info.get("ran"))
        rows.append([task["task"], task.get("metric_name", "-"), _fmt(task.get("student", {}).get("examples"), "d"),
                     _fmt(task.get("teacher", {}).get("metric")), _fmt(task.get("student", {}).get("metric")),
                     _fmt(task.get("retention"), ".1f", "%"), fmt_size(task.get("student", {}).get("size_bytes")), str(len(arts)),
                     parity, _minutes(seconds)])
    if summary.get("seconds") is not None:
        rows.append(["all tasks"] + [""] * 8 + [_minutes(summary["seconds"])])
    return rows


def text_table(rows: list[list[str]]) -> str:
    """A fixed-width table for the terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def console_summary(summary: dict) -> str:
    """What the pipeline prints at the end: the overview, then each task's artifacts."""
    parts = [text_table(overview_rows(summary))]
    for task in summary.get("tasks", []):
        parts.append(f"\n{task['task']} ({task.get('metric_name', 'metric')})\n" + text_table(task_rows(task)))
        matrix = runtime_matrix_rows(task)
        if matrix:
            parts.append("\nartifact x runtime\n" + text_table(matrix))
    return "\n".join(parts)


def _md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cell.replace("|", "\\|") for cell in rows[0]) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _html_table(rows: list[list[str]]) -> str:
    def cell(tag, text):
        word = text.split(":")[0].split(" ")[0]  # also the matrix's cells: "PASS 1.2 ms", "does not load", "not installed"
        cls = {"pass": "pass", "PASS": "pass", "FAIL": "fail", "does": "fail", "fails": "fail", "n/a": "na", "not": "na"}.get(word)
        return f"<{tag}{f' class={cls!r}' if cls else ''}>{html.escape(text)}</{tag}>"

    head = "<tr>" + "".join(cell("th", c) for c in rows[0]) + "</tr>"
    body = "".join("<tr>" + "".join(cell("td", c) for c in row) + "</tr>" for row in rows[1:])
    return f"<table>{head}{body}</table>"


def _failures(task: dict) -> list[str]:
    """The verifier's failure lines (each already names its artifact and example)."""
    return [failure for a in task.get("artifacts", []) for failure in a.get("failures") or []]


def _task_note(task: dict) -> str:
    return (f"Metric: {task.get('metric_name', '-')} on the task's evaluation split. Teacher and student rows come from "
            "distillation; artifact rows from parity verification (raw text through the on-device tokenizer), compared "
            "with the PyTorch student on the same examples, on the runtime each row names (the artifact x runtime table "
            "gives every runtime's result, same thresholds, and its median latency per eval example). Latency: median "
            "warm run at the largest bucket in the main environment.")


def _stages_line(task: dict) -> str:
    stages = task.get("stages") or {}
    return "Stages: " + ", ".join(f"{name} {info['seconds']:.0f} s" if info.get("ran") else f"{name} cached"
                                  for name, info in stages.items()) if stages else ""


def _settings_line(summary: dict) -> str:
    settings = summary.get("settings", {})
    return ", ".join(f"{k}={v}" for k, v in settings.items() if v not in (None, [], {}))


def render_markdown(summary: dict, figure_files: dict[str, str]) -> str:
    lines = ["# tinybert-mobile pipeline report", "", f"Run `{summary.get('run_dir', '')}`, {summary.get('created_at', '')}. "
             f"Settings: {_settings_line(summary)}.", "", _md_table(overview_rows(summary))]
    for task in summary.get("tasks", []):
        lines += ["", f"## {task['task']}", "", _task_note(task) + f" Bundle `{task.get('bundle_dir', '-')}`. {_stages_line(task)}",
                  "", _md_table(task_rows(task))]
        matrix = runtime_matrix_rows(task)
        if matrix:
            lines += ["", "Artifact x runtime:", "", _md_table(matrix)]
        lines += [f"- parity failure: {f}" for f in _failures(task)]
        if task["task"] in figure_files:
            lines += ["", f"![{task['task']}]({figure_files[task['task']]})"]
    return "\n".join(lines) + "\n"


def render_html(summary: dict, figures: dict[str, bytes]) -> str:
    failed = [f"{t['task']}/{a['name']}" for t in summary.get("tasks", []) for a in t.get("artifacts", []) if a.get("passed") is False]
    banner = (f'<div class="banner fail">parity FAILED: {html.escape(", ".join(failed))}</div>' if failed
              else '<div class="banner pass">all parity checks passed</div>')
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>tinybert-mobile pipeline report</title>",
             f"<style>{_CSS}</style></head><body><h1>tinybert-mobile pipeline report</h1>",
             f"<p class='meta'>Run {html.escape(str(summary.get('run_dir', '')))}, {html.escape(str(summary.get('created_at', '')))}"
             f"<br>Settings: {html.escape(_settings_line(summary))}</p>", banner, _html_table(overview_rows(summary))]
    for task in summary.get("tasks", []):
        parts += [f"<h2>{html.escape(task['task'])}</h2>",
                  f"<p class='meta'>{html.escape(_task_note(task))}<br>Bundle {html.escape(str(task.get('bundle_dir', '-')))}. "
                  f"{html.escape(_stages_line(task))}</p>",
                  _html_table(task_rows(task))]
        matrix = runtime_matrix_rows(task)
        if matrix:
            parts += ["<h3>artifact x runtime</h3>", _html_table(matrix)]
        parts += [f"<p class='failures'>parity failure: {html.escape(f)}</p>" for f in _failures(task)]
        if task["task"] in figures:
            encoded = base64.b64encode(figures[task["task"]]).decode("ascii")
            parts.append(f"<p><img alt='{html.escape(task['task'])} plots' src='data:image/png;base64,{encoded}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(summary: dict, run_dir: str | Path) -> tuple[Path, Path]:
    """Render both reports (and the Markdown's PNGs under report_files/) into run_dir; returns (md, html)."""
    from export.pipeline.plots import task_figure_png

    run_dir = Path(run_dir)
    figures = {task["task"]: task_figure_png(task) for task in summary.get("tasks", [])}
    figure_files = {}
    for name, png in figures.items():
        write_atomic(run_dir / FIGURES_DIR / f"{name}.png", png)
        figure_files[name] = f"{FIGURES_DIR}/{name}.png"
    md_path = write_atomic(run_dir / REPORT_MD, render_markdown(summary, figure_files))
    html_path = write_atomic(run_dir / REPORT_HTML, render_html(summary, figures))
    return md_path, html_path


def write_report_from_run(run_dir: str | Path) -> tuple[Path, Path]:
    """Re-render the reports of a finished run from its summary.json."""
    return write_report(json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8")), run_dir)
