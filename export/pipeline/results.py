"""Reading the stages' own result files into the rows of the run summary (see export/pipeline/report.py).

distill_report.json (distill.stages) gives teacher and student metrics, parameters and weight sizes;
bundle.json gives the artifacts; parity.json (export.verify.verify) their differences, agreement and metric;
the latency stage the on-device timings. Nothing is recomputed here.
"""
from __future__ import annotations

import json
from pathlib import Path

from distill.stages import REPORT_FILE


def distill_rows(student_dir: str | Path, metric: str) -> tuple[dict, dict]:
    """(teacher, student) rows: {"metric", "params", "size_bytes", "examples"} from the student's distill_report.json."""
    path = Path(student_dir) / REPORT_FILE
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    examples = (report.get("data") or {}).get("eval_examples")

    def row(part: dict) -> dict:
        return {"metric": (part.get("metrics") or {}).get(metric), "params": part.get("parameters"),
                "size_bytes": part.get("weights_bytes"), "examples": examples}

    teacher = report.get("teacher") or {}
    # given: used as passed (it had the task's head); else its head was fine-tuned by this run (or its cache)
    return {**row(teacher), "source": teacher.get("source"), "given": bool(teacher.get("given"))}, row(report.get("student") or {})


def _number(value):
    """parity.json writes inf/nan as strings; the report shows them as such."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return value


def parity_reference(parity: dict) -> dict:
    """The PyTorch student on the parity examples: what each artifact's metric is compared with."""
    return {"metric": _number((parity.get("reference") or {}).get("metric")), "examples": parity.get("examples")}


def _measured_row(rows: list[dict]) -> dict:
    """The parity row an artifact's figures come from: its first runtime that ran it (the main environment's
    interpreter comes first), else its first row."""
    return next((row for row in rows if row.get("status", "checked") == "checked"), rows[0] if rows else {})


def _passed(rows: list[dict]):
    """False when any runtime failed the artifact, True when every runtime that ran it passed, None when none did."""
    results = [row.get("passed") for row in rows if row.get("passed") is not None]
    return None if not results else all(results)


def artifact_rows(manifest: dict, parity: dict, latency: dict) -> tuple[list[dict], dict]:
    """One row per bundle artifact (manifest order) joined with its parity rows (one per runtime) and latency; plus
    the diffs. The figures are those of `runtime` (see _measured_row); `passed` and `failures` cover every runtime."""
    from export.verify.verify import diff_key
    from export.verify.report import matrix_cell

    by_name: dict[str, list[dict]] = {}
    for row in parity.get("artifacts", []):
        by_name.setdefault(row.get("file", row.get("name")), []).append(row)
    rows, diffs = [], {}
    for entry in manifest.get("artifacts", []):
        checks = by_name.get(entry["file"], [])
        check = _measured_row(checks)
        timing = latency.get(entry["file"], {})
        values = (parity.get("diffs") or {}).get(diff_key(check) if check.get("runtime") else entry["file"]) or []
        diffs[entry["file"]] = [v for v in map(_number, values) if v is not None]
        rows.append({"name": entry["file"], "format": entry["format"], "precision": entry.get("precision"),
                     "runtime": check.get("runtime"),
                     "runtimes": {row["runtime"]: matrix_cell(row) for row in checks if row.get("runtime")},
                     "size_bytes": entry.get("size_bytes"), "conversion_seconds": entry.get("conversion_seconds"),
                     "metric": _number(check.get("metric")), "max_abs_diff": _number(check.get("max_abs_diff")),
                     "mean_abs_diff": _number(check.get("mean_abs_diff")), "agreement": _number(check.get("agreement")),
                     "compared": check.get("compared"), "examples": check.get("examples"),
                     "passed": _passed(checks), "failures": [f for row in checks for f in row.get("failures") or []],
                     "latency_ms": timing.get("latency_ms"), "latency_bucket": timing.get("latency_bucket")})
    return rows, {name: values for name, values in diffs.items() if values}
