"""parity.md and the per-artifact logit-difference plot, rendered from a verify report (see export/verify/check.py)."""
from __future__ import annotations

import io
import math


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _limit(value, spec: str, prefix: str) -> str:
    return "" if value is None else f" ({prefix} {format(value, spec)})"


def parity_rows(report: dict) -> list[list[str]]:
    """Header plus one row per artifact, thresholds beside each measured value."""
    rows = [["artifact", "kind", "size", "compared", "max abs diff", "mean abs diff", "agreement %", report["metric_name"], "gap", "result"]]
    for row in report["artifacts"]:
        t = row["threshold"]
        size = row.get("size_bytes")
        rows.append([row["name"], row["kind"], "-" if size is None else f"{size / 1e6:.2f} MB", row["compared"],
                     _fmt(row["max_abs_diff"], ".2e") + _limit(t["max_abs_diff"], "g", "<="),
                     _fmt(row["mean_abs_diff"], ".2e"),
                     _fmt(row["agreement"], ".2f") + _limit(t["min_agreement"], "g", ">="),
                     _fmt(row["metric"], ".2f"), _fmt(row["metric_gap"], ".2f") + _limit(t["max_metric_gap"], "g", "<="),
                     "PASS" if row["passed"] else "FAIL"])
    return rows


def render_markdown(report: dict, plot_file: str | None = None) -> str:
    rows = parity_rows(report)
    lines = [f"# Parity: {report['task']} ({report['examples']} eval examples)", "",
             f"PyTorch student {report['metric_name']}: {report['reference']['metric']:.2f}. Result: "
             f"**{'PASS' if report['passed'] else 'FAIL'}**.", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    if plot_file:
        lines += ["", f"![per-example max abs difference]({plot_file})"]
    return "\n".join(lines) + "\n"


def diff_plot_png(report: dict) -> bytes:
    """Box plot (log scale) of each artifact's per-example max abs difference to PyTorch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["diffs"])
    data = [[max(d, 1e-12) for d in report["diffs"][n] if math.isfinite(d)] or [1e-12] for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(names) + 2), 4))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("max |artifact - PyTorch| per example")
    ax.set_title(f"{report['task']}: output differences over {report['examples']} eval examples")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
