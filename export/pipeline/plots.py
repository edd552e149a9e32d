"""The run report's figures, one PNG per task: metric vs size, latency per artifact, logit differences.

matplotlib's Agg backend only, so the report renders on a headless machine.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter  # noqa: E402

_TEACHER, _STUDENT, _FAIL = "#1565c0", "#6a1b9a", "#d50000"
# No reds: a red outline means "parity failed".
_PALETTE = ("#ef6c00", "#00897b", "#8d6e63", "#7cb342", "#5e35b1", "#546e7a", "#f9a825", "#26c6da", "#ec407a")


def _artifact_colours(task: dict) -> dict[str, str]:
    """One colour per artifact, the same in every panel; the shared legend under the panels names them."""
    return {a["name"]: _PALETTE[i % len(_PALETTE)] for i, a in enumerate(task.get("artifacts", []))}


def task_figure_png(task: dict) -> bytes:
    """Three panels for one task of the run summary, as PNG bytes."""
    colours = _artifact_colours(task)
    fig, (ax_metric, ax_latency, ax_diff) = plt.subplots(1, 3, figsize=(15, 5.2), dpi=90)
    _metric_vs_size(ax_metric, task, colours)
    _latency_bars(ax_latency, task, colours)
    _diff_histograms(ax_diff, task, colours)
    teacher_n, parity_n = task.get("teacher", {}).get("examples"), (task.get("reference") or {}).get("examples")
    handles = [Line2D([], [], marker="s", ls="", color=_TEACHER, markerfacecolor="none", markeredgewidth=2,
                      label=f"teacher (PyTorch, distillation eval{f', {teacher_n} ex.' if teacher_n else ''})"),
               Line2D([], [], marker="D", ls="", color=_STUDENT, markerfacecolor="none", markeredgewidth=2,
                      label="student (PyTorch, distillation eval)"),
               Line2D([], [], marker="D", ls="", color=_STUDENT,
                      label=f"student (PyTorch, parity examples{f', {parity_n} ex.' if parity_n else ''})")]
    handles += [Line2D([], [], marker="o", ls="", color=colours[a["name"]],
                       markeredgecolor=_FAIL if a.get("passed") is False else colours[a["name"]], markeredgewidth=2,
                       label=a["name"] + (" (parity FAIL)" if a.get("passed") is False else "")) for a in task.get("artifacts", [])]
    columns = min(len(handles), 4)
    fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=9, frameon=False)
    rows = -(-len(handles) // columns)
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _metric_vs_size(ax, task: dict, colours: dict) -> None:
    """Teacher and student on the distillation eval set (hollow), the student and artifacts on the parity examples (filled)."""
    student = task.get("student", {})
    reference = dict(task.get("reference") or {}, size_bytes=student.get("size_bytes"))
    points = [(task.get("teacher", {}), _TEACHER, "s", None, True), (student, _STUDENT, "D", None, True),
              (reference, _STUDENT, "D", None, False)]
    points += [(a, colours[a["name"]], "o", a.get("passed"), False) for a in task.get("artifacts", [])]
    for row, colour, marker, passed, hollow in points:
        size, metric = row.get("size_bytes"), row.get("metric")
        if size is None or metric is None:
            continue
        ax.scatter(size / 1e6, metric, marker=marker, s=70, zorder=3, linewidths=2,
                   facecolors="none" if hollow else colour, edgecolors=_FAIL if passed is False else colour)
    sizes = [row.get("size_bytes") for row, *_ in points if row.get("size_bytes")]
    log_scale = bool(sizes) and max(sizes) / min(sizes) > 4
    if log_scale:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel("size (MB, log scale)" if log_scale else "size (MB)")
    ax.set_ylabel(task.get("metric_name", "metric"))
    ax.set_title("metric vs size", fontsize=10)
    ax.grid(True, alpha=0.3)


def _latency_bars(ax, task: dict, colours: dict) -> None:
    rows = [a for a in task.get("artifacts", []) if a.get("latency_ms") is not None]
    if not rows:
        ax.text(0.5, 0.5, "no on-device latency measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    y = np.arange(len(rows))
    bars = ax.barh(y, [a["latency_ms"] for a in rows], color=[colours[a["name"]] for a in rows],
                   edgecolor=[_FAIL if a.get("passed") is False else "none" for a in rows], linewidth=2)
    ax.bar_label(bars, fmt="%.2f ms", fontsize=8, padding=3)
    ax.set_yticks(y, [a["name"] for a in rows], fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.2)
    bucket = rows[0].get("latency_bucket")
    ax.set_xlabel("median warm latency (ms)" + (f", sequence length {bucket}" if bucket else ""))
    ax.set_title("latency per artifact (on-device runtime)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def _diff_histograms(ax, task: dict, colours: dict) -> None:
    diffs = {name: np.asarray(values, dtype=np.float64) for name, values in (task.get("diffs") or {}).items() if len(values)}
    if not diffs:
        ax.text(0.5, 0.5, "no per-example differences in parity.json", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    floor = 1e-9
    everything = np.concatenate(list(diffs.values()))
    positive = everything[everything > 0]
    low = max(floor, float(positive.min()) if positive.size else floor)
    high = max(float(everything.max()), low * 10)
    bins = np.logspace(np.log10(low), np.log10(high) + 1e-9, 30)
    for name, values in diffs.items():
        ax.hist(np.clip(values, low, None), bins=bins, histtype="step", linewidth=1.6, color=colours.get(name, "#424242"))
    ax.set_xscale("log")
    ax.set_xlabel("max |artifact - PyTorch| per example")
    ax.set_ylabel("examples")
    ax.set_title("logit differences (parity)", fontsize=10)
    ax.grid(True, alpha=0.3)
