"""The run report: Markdown and self-contained HTML from a run summary, rendered in headless Chromium."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

from export.pipeline.report import console_summary, render_markdown, write_report, write_report_from_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def sample_summary(tmp_path) -> dict:
    """A summary shaped like the pipeline's, with one failing artifact and one without latency."""
    rng = np.random.default_rng(0)

    def artifact(name, fmt, precision, size, metric, max_diff, agreement, passed, latency):
        return {"name": name, "format": fmt, "precision": precision, "size_bytes": size, "metric": metric,
                "max_abs_diff": max_diff, "mean_abs_diff": max_diff / 8, "examples": 500, "agreement": agreement, "passed": passed,
                "failures": [] if passed is not False else [f"{name}: agreement 97.10% < 99% (example #12: 'free entry in 2 a wkly comp')"],
                "latency_ms": latency, "latency_bucket": 128 if latency else None}

    def on_runtimes(row, first, second):  # the parity matrix of a TFLite artifact, its figures from the first runtime
        return dict(row, runtime="ai-edge-litert-2.3", runtimes={"ai-edge-litert-2.3": first, "tflite-2.8": second})

    spam = {"task": "spam", "metric_name": "accuracy", "bundle_dir": str(tmp_path / "bundles" / "spam"),
            "teacher": {"metric": 99.1, "size_bytes": 90_000_000, "params": 22_700_000, "given": True},
            "student": {"metric": 98.7, "size_bytes": 57_000_000, "params": 14_300_000, "examples": 556}, "retention": 99.6,
            "reference": {"metric": 98.7, "examples": 500},
            "artifacts": [on_runtimes(artifact("model_fp32.tflite", "tflite", "fp32", 57_200_000, 98.7, 3e-6, 100.0, True, 9.5),
                                      "PASS 9.10 ms", "PASS 12.40 ms"),
                          on_runtimes(artifact("model_int8-dynamic.tflite", "tflite", "int8-dynamic", 14_500_000, 98.5, 0.08, 99.6, False, 4.1),
                                      "PASS 4.00 ms", "does not load"),
                          artifact("model_int8-static.tflite", "tflite", "int8-static", 14_600_000, 96.9, 0.6, 97.1, False, 3.2),
                          artifact("model_fp16.mlpackage", "coreml", "fp16", 28_700_000, 98.7, 4e-3, 100.0, True, None)],
            "diffs": {"model_fp32.tflite": list(rng.exponential(1e-6, 300)),
                      "model_int8-dynamic.tflite": list(rng.exponential(0.02, 300)),
                      "model_int8-static.tflite": list(rng.exponential(0.15, 300)),
                      "model_fp16.mlpackage": list(rng.exponential(1e-3, 300))},
            "stages": {"distill": {"ran": True, "seconds": 120.0}}}
    qa = {"task": "qa", "metric_name": "f1", "bundle_dir": str(tmp_path / "bundles" / "qa"),
          "teacher": {"metric": 80.2, "size_bytes": 90_000_000}, "student": {"metric": 70.4, "size_bytes": 57_000_000},
          "retention": 87.8, "artifacts": [], "diffs": {}, "stages": {}}
    return {"run_dir": str(tmp_path), "created_at": "2026-01-01T00:00:00Z", "settings": {"preset": "quick"},
            "tasks": [spam, qa], "exit_code": 1, "seconds": 1265.0}


def test_markdown_has_a_row_per_model_and_names_the_failure(tmp_path):
    summary = sample_summary(tmp_path)
    text = render_markdown(summary, {"spam": "report_files/spam.png"})
    assert "| teacher (PyTorch, given, 22.7M params) | 99.10 | - |" in text
    assert "| teacher (PyTorch, fine-tuned here) | 80.20 |" in text
    assert "Stages: distill 120 s" in text
    assert "| student (PyTorch), parity examples | 98.70 | 500 |" in text
    assert "| model_int8-static.tflite | 96.90 | 500 | -1.80 | 6.00e-01 |" in text
    assert "| model_fp32.tflite on ai-edge-litert-2.3 | 98.70 | 500 |" in text
    assert "| artifact | ai-edge-litert-2.3 | tflite-2.8 |" in text
    assert "| model_int8-dynamic.tflite | PASS 4.00 ms | does not load |" in text and "| model_int8-static.tflite |  |  |" in text
    assert "FAIL: model_int8-dynamic.tflite, model_int8-static.tflite" in text
    assert "parity failure: model_int8-static.tflite: agreement 97.10% < 99%" in text
    assert "![spam](report_files/spam.png)" in text
    assert "| qa | f1 | - | 80.20 | 70.40 | 87.8% |" in text
    assert "| spam | accuracy | 556 | 99.10 | 98.70 | 99.6% |" in text and text.count("| 2 min 00 s |") == 1
    assert "| all tasks |" in text and "| 21 min 05 s |" in text


def test_console_summary_lists_each_artifact(tmp_path):
    text = console_summary(sample_summary(tmp_path))
    for name in ("model_fp32.tflite", "model_int8-dynamic.tflite", "model_fp16.mlpackage"):
        assert name in text
    assert "14.50 MB" in text and "4.10 ms" in text


def test_html_is_self_contained_and_renders_in_chromium(tmp_path):
    md_path, html_path = write_report(sample_summary(tmp_path), tmp_path)
    page = html_path.read_text(encoding="utf-8")
    # Self-contained: no external stylesheet, script or image; the plots are inline PNGs that decode.
    assert not re.search(r"""(src|href)=['"](?!data:)""", page)
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert (tmp_path / "report_files" / "spam.png").is_file() and md_path.is_file()
    assert "<h3>artifact x runtime</h3>" in page and "<td class='fail'>does not load</td>" in page and "<td class='pass'>PASS 12.40 ms</td>" in page
    if CHROMIUM is None:
        pytest.skip("chromium not installed; the HTML screenshot needs `apt-get install chromium`")
    shot = screenshot(html_path, tmp_path)
    assert shot.stat().st_size > 20_000


def test_report_re_renders_from_a_run_summary(tmp_path):
    import json

    (tmp_path / "summary.json").write_text(json.dumps(sample_summary(tmp_path)))
    md_path, html_path = write_report_from_run(tmp_path)
    assert "model_int8-dynamic.tflite" in md_path.read_text() and html_path.read_text().startswith("<!DOCTYPE html>")


def screenshot(html_path, tmp_path, name="report.png"):
    """Render the page in headless Chromium and save a screenshot (also used by the pipeline test)."""
    shot = tmp_path / name
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    html_path.resolve().as_uri()], check=True, capture_output=True, timeout=90)
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG")
    return shot
