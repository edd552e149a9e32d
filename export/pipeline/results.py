"""Reading the stages' own result files into the rows of the run summary (see export/pipeline/report.py).

distill_report.json (distill.api) gives teacher and student metrics, parameters and weight sizes;
bundle.json gives the artifacts; parity.json (export.verify.check) their differences, agreement and metric;
the latency stage the on-device timings. Nothing is recomputed here.
"""
from __future__ import annotations

import json
from pathlib import Path

from distill.api import REPORT_FILE


def distill_rows(student_dir: str | Path, metric: str) -> tuple[dict, dict]:
    """(teacher, student) rows: {"metric", "params", "size_bytes", "examples"} from the student's distill_report.json."""
    path = Path(student_dir) / REPORT_FILE
    report = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    examples = (report.get("data") or {}).get("eval_examples")

    def row(part: dict) -> dict:
        return {"metric": (part.get("metrics") or {}).get(metric), "params": part.get("parameters"),
                "size_bytes": part.get("weights_bytes"), "examples": examples}

    return row(report.get("teacher") or {}), row(report.get("student") or {})


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


def artifact_rows(manifest: dict, parity: dict, latency: dict) -> tuple[list[dict], dict]:
    """One row per bundle artifact (manifest order) joined with its parity row and latency; plus the diffs."""
    by_name = {row.get("file", row.get("name")): row for row in parity.get("artifacts", [])}
    rows = []
    for entry in manifest.get("artifacts", []):
        check = by_name.get(entry["file"], {})
        timing = latency.get(entry["file"], {})
        rows.append({"name": entry["file"], "format": entry["format"], "precision": entry.get("precision"),
                     "size_bytes": entry.get("size_bytes"), "conversion_seconds": entry.get("conversion_seconds"),
                     "metric": _number(check.get("metric")), "max_abs_diff": _number(check.get("max_abs_diff")),
                     "mean_abs_diff": _number(check.get("mean_abs_diff")), "agreement": _number(check.get("agreement")),
                     "compared": check.get("compared"), "examples": check.get("examples"),
                     "passed": check.get("passed"), "failures": check.get("failures") or [],
                     "latency_ms": timing.get("latency_ms"), "latency_bucket": timing.get("latency_bucket")})
    diffs = {name: [v for v in map(_number, values) if v is not None]
             for name, values in (parity.get("diffs") or {}).items() if name in {r["name"] for r in rows}}
    return rows, diffs
