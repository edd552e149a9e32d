"""parity.md, the artifact x runtime matrix and the per-row logit-difference plot, rendered from a verify report
(see export/verify/verify.py)."""
from __future__ import annotations

import io
import math
from dataclasses import asdict

from export.verify.parity import Threshold

RESULT = {"does not load": "does not load", "fails": "fails", "not installed": "not installed"}


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _limit(value, spec: str, prefix: str) -> str:
    return "" if value is None else f" ({prefix} {format(value, spec)})"


def _latency(row: dict) -> str:
    latency = row.get("latency_ms")
    return "-" if not latency else f"{latency['median']:.2f} ms"


def result_word(row: dict) -> str:
    """PASS / FAIL for a checked row, else its status ("does not load", "fails", "not installed")."""
    if row.get("status", "checked") != "checked":
        return RESULT.get(row["status"], row["status"])
    return "PASS" if row["passed"] else "FAIL"


def matrix_cell(row: dict) -> str:
    """One cell of the matrix: the result, and the median latency per example where the runtime ran the artifact."""
    return result_word(row) + ("" if not row.get("latency_ms") else f" {_latency(row)}")


def runtime_names(report: dict) -> list[str]:
    """The matrix's columns: every runtime a row ran on (or was meant to), in first-seen order."""
    return list(dict.fromkeys(row["runtime"] for row in report["artifacts"]))


def matrix_rows(report: dict) -> list[list[str]]:
    """Header plus one row per artifact: per runtime its result and median latency per example."""
    columns = runtime_names(report)
    by_cell = {(row["name"], row["runtime"]): row for row in report["artifacts"]}
    rows = [["artifact", *columns]]
    for name in dict.fromkeys(row["name"] for row in report["artifacts"]):
        cells = []
        for runtime in columns:
            row = by_cell.get((name, runtime))
            cells.append("" if row is None else matrix_cell(row))
        rows.append([name, *cells])
    return rows


def parity_rows(report: dict) -> list[list[str]]:
    """Header plus one row per artifact and runtime, thresholds beside each measured value."""
    rows = [["artifact", "runtime", "kind", "size", "examples", "compared", "max abs diff", "scaled", "mean abs diff", "agreement %",
             report["metric_name"], "gap", "latency", "result"]]
    for row in report["artifacts"]:
        t = {**asdict(Threshold()), **(row.get("threshold") or {})}
        size = row.get("size_bytes")
        rows.append([row["name"], row["runtime"], row["kind"], "-" if size is None else f"{size / 1e6:.2f} MB", str(row.get("examples") or "-"),
                     row.get("compared") or "-",
                     _fmt(row.get("max_abs_diff"), ".2e") + _limit(t["max_abs_diff"], "g", "<="),
                     _fmt(row.get("max_scaled_diff"), ".3f") + _limit(t["max_scaled_diff"], "g", "<="),
                     _fmt(row.get("mean_abs_diff"), ".2e"),
                     _fmt(row.get("agreement"), ".2f") + _limit(t["min_agreement"], "g", ">="),
                     _fmt(row.get("metric"), ".2f"), _fmt(row.get("metric_gap"), ".2f") + _limit(t["max_metric_gap"], "g", "<="),
                     _latency(row), result_word(row)])
    return rows


def _table(rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])] + ["| " + " | ".join(r) + " |" for r in rows[1:]]


def runtime_lines(report: dict) -> list[str]:
    """Which interpreter, numpy and Python each runtime column really was, or why it did not run."""
    lines = []
    for name in runtime_names(report):
        rows = [row for row in report["artifacts"] if row["runtime"] == name]
        found = next((row["interpreter"] for row in rows if row.get("interpreter")), None)
        if found:
            lines.append(f"- {name}: {found}")
        else:
            lines.append(f"- {name}: {rows[0].get('reason') or rows[0]['status']}")
    return lines


def _emulation_notes(report: dict) -> list[str]:
    """What the ARM64 rows are and are not, and any row that needed a second emulator."""
    emulated = [row for row in report["artifacts"] if row.get("emulator")]
    if not emulated:
        return []
    lines = ["", "ARM64 rows: the aarch64 build of the interpreter under QEMU user mode on this x86-64 machine, as the CPU model "
             "named, so its ARM kernels (NEON; dot-product where the model has it) compute the answers. Each ran only the file "
             "the app opens on that interpreter, on the example count in its row. Their latency is the emulator's, not a phone's."]
    lines += [f"- {row['name']} on {row['runtime']}: {row['reason']}" for row in emulated if row.get("reason")]
    return lines


def _threads_note(report: dict) -> str:
    threads = sorted({row["latency_ms"]["threads"] for row in report["artifacts"] if (row.get("latency_ms") or {}).get("threads")})
    if not threads:
        return ""
    return (f", on {'/'.join(map(str, threads))} interpreter thread(s) with other checks running beside it "
            "(the pipeline's latency stage times each file alone)")


def render_markdown(report: dict, plot_file: str | None = None) -> str:
    lines = [f"# Parity: {report['task']} ({report['examples']} eval examples)", "",
             f"PyTorch student {report['metric_name']}: {report['reference']['metric']:.2f}. Result: "
             f"**{'PASS' if report['passed'] else 'FAIL'}**.", ""]
    if report.get("student_mismatch"):
        lines += [f"**Proved against another student** ({report['student']}, sha256 {report['student_mismatch']['student_sha256'][:12]}) "
                  f"than the one this bundle was exported from ({report['student_mismatch']['bundle_student_sha256'][:12]}).", ""]
    lines += ["## Artifact x runtime", "",
             "Each cell: the result against the same thresholds on every runtime, and the median latency of one example "
             f"(tokenize + model + post-processing) on this machine{_threads_note(report)}.", ""]
    lines += _table(matrix_rows(report)) + ["", "Runtimes:", ""] + runtime_lines(report) + _emulation_notes(report)
    lines += ["", "## Every artifact on every runtime", ""] + _table(parity_rows(report))
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {f}" for f in report["failures"]]
    if plot_file:
        lines += ["", f"![per-example max abs difference]({plot_file})"]
    return "\n".join(lines) + "\n"


def diff_plot_png(report: dict) -> bytes:
    """Box plot (log scale) of each artifact's per-example max abs difference to PyTorch, per runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["diffs"]) or ["(no artifact ran)"]
    data = [[max(d, 1e-12) for d in report["diffs"].get(n, []) if math.isfinite(d)] or [1e-12] for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 * len(names) + 2), 4.5))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("max |artifact - PyTorch| per example")
    ax.set_title(f"{report['task']}: output differences over {report['examples']} eval examples")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
