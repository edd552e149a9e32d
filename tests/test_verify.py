"""Parity verification on real eval data: tiny bundles through the real interpreter against PyTorch."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from mobile_app.runtime.errors import UserError
from export.__main__ import main
from export.verify.parity import (QA_SPAN_AGREEMENT_FLOOR, SCALED_DIFF, THRESHOLDS, ArtifactParity, Threshold, compared_outputs, parse_threshold_flag,
                                  thresholds_with)

MAIN_RUNTIME = "ai-edge-litert-2.3"  # the main environment's interpreter; the matrix is tests/test_runtime_matrix.py


@pytest.fixture(scope="module")
def verified_bundle(tiny_tflite_bundle, data_dir, tmp_path_factory):
    """A copy of the tiny sentiment bundle after one `python -m export verify` run on 80 SST-2 dev examples."""
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path_factory.mktemp("verify") / "sentiment")
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "80", "--runtimes", MAIN_RUNTIME])
    return bundle, code


def test_verify_passes_on_a_good_bundle_and_writes_its_report(verified_bundle, capsys):
    bundle, code = verified_bundle
    assert code == 0
    report = json.loads((bundle / "parity.json").read_text())
    assert report["passed"] and report["examples"] == 80 and report["task"] == "sentiment"
    rows = {row["precision"]: row for row in report["artifacts"]}
    assert sorted(rows) == ["fp16", "fp32", "int8-dynamic", "int8-static"]
    assert rows["fp32"]["max_abs_diff"] <= 1e-4 and rows["fp32"]["agreement"] == 100.0
    assert rows["fp32"]["metric"] == pytest.approx(report["reference"]["metric"])
    for row in rows.values():
        assert row["compared"] == "logits" and row["examples"] == 80 and len(report["diffs"][f"{row['name']} @ {MAIN_RUNTIME}"]) == 80
        assert row["runtime"] == MAIN_RUNTIME and row["interpreter"].startswith("ai_edge_litert 2.3.0")
        assert 0 <= row["mean_abs_diff"] <= row["max_abs_diff"]
    markdown = (bundle / "parity.md").read_text()
    assert "sentiment_int8-static.tflite" in markdown and "PASS" in markdown
    assert (bundle / "parity_diffs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["report"] == "parity.json"
    for entry in manifest["artifacts"]:
        assert [(v["runtime"], v["passed"], v["status"]) for v in entry["verified_on"]] == [(MAIN_RUNTIME, True, "checked")]


def test_a_failing_threshold_exits_1_and_names_artifact_and_example(verified_bundle, data_dir, capsys):
    bundle, _ = verified_bundle
    capsys.readouterr()
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "40",
                 "--threshold", "tflite/int8-dynamic.max_abs_diff=1e-9", "--runtimes", MAIN_RUNTIME])
    assert code == 1
    failed_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("parity FAILED")]
    assert len(failed_lines) == 1
    assert failed_lines[0].startswith(f"parity FAILED: sentiment_int8-dynamic.tflite on {MAIN_RUNTIME}: max abs diff of logits")
    assert "at example #" in failed_lines[0] and "(id " in failed_lines[0]
    report = json.loads((bundle / "parity.json").read_text())
    assert not report["passed"]
    failed = [row["name"] for row in report["artifacts"] if not row["passed"]]
    assert failed == ["sentiment_int8-dynamic.tflite"]


def test_verify_refuses_a_tampered_bundle_and_a_wrong_student(tiny_tflite_bundle, tiny_qa_dir, data_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "bundle")
    assert main(["verify", str(bundle), "--data-dir", str(data_dir), "--student", str(tiny_qa_dir), "--max-examples", "3"]) == 2
    assert "is a qa model but" in capsys.readouterr().err
    (bundle / "vocab.txt").write_text("[PAD]\n")
    assert main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "3"]) == 2
    assert "vocab.txt does not match its sha256" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "none"), "--data-dir", str(data_dir)]) == 2
    assert "is not a bundle" in capsys.readouterr().err


def test_threshold_table_overrides_and_flags():
    table = thresholds_with({"*": {"min_agreement": 95.0}, "tflite/fp16": {"max_abs_diff": 0.5}})
    assert table["tflite/fp16"] == Threshold(max_abs_diff=0.5, min_agreement=95.0)
    assert table["tflite/fp32"].max_abs_diff == THRESHOLDS["tflite/fp32"].max_abs_diff
    assert THRESHOLDS["coreml/fp16"] == Threshold(max_abs_diff=1e-2, min_agreement=99.5)
    # QA spans: quantized kinds get the agreement floor and keep the F1 gap; exact kinds and overrides are unchanged
    qa = thresholds_with(None, head="qa")
    assert qa["tflite/int8-dynamic"] == Threshold(min_agreement=QA_SPAN_AGREEMENT_FLOOR, max_metric_gap=1.0, max_scaled_diff=SCALED_DIFF["int8"])
    assert qa["tflite/fp32"] == THRESHOLDS["tflite/fp32"] and qa["tflite/fp16"] == THRESHOLDS["tflite/fp16"]
    # Core ML fp16 computes in float16: on QA it is judged by the F1 gap, with a logit bound that still catches a broken export
    assert qa["coreml/fp16"] == Threshold(max_abs_diff=0.1, min_agreement=QA_SPAN_AGREEMENT_FLOOR, max_metric_gap=1.0)
    assert thresholds_with({"coreml/fp16": {"max_abs_diff": 1e-2}}, head="qa")["coreml/fp16"].max_abs_diff == 1e-2
    assert thresholds_with(None)["tflite/int8-dynamic"].min_agreement == 99.0
    # every lossy kind (judged by a metric gap) is also bounded on its outputs
    assert all(t.max_scaled_diff is not None for t in THRESHOLDS.values() if t.max_metric_gap is not None)
    assert thresholds_with({"tflite/int8-dynamic": {"min_agreement": 99.0}}, head="qa")["tflite/int8-dynamic"].min_agreement == 99.0
    assert parse_threshold_flag("tflite/fp32.max_abs_diff=1e-3") == ("tflite/fp32", "max_abs_diff", 1e-3)
    assert parse_threshold_flag("max_metric_gap=none") == ("*", "max_metric_gap", None)
    for bad in ("tflite/fp32.max_abs_diff", "speed=3", "min_agreement=high"):
        with pytest.raises(UserError):
            parse_threshold_flag(bad)


def test_probabilities_are_compared_with_the_students_softmax():
    logits = np.array([[2.0, -1.0]])
    probs = np.exp(logits) / np.exp(logits).sum()
    pairs = compared_outputs("classification", {"logits": logits}, {"probabilities": probs[0]}, 5)
    reference, artifact = pairs["probabilities"]
    np.testing.assert_allclose(reference, artifact)
    qa = compared_outputs("qa", {"start_logits": np.arange(8.0)[None], "end_logits": np.zeros((1, 8))},
                          {"start_logits": np.arange(8.0)[None] + 1, "end_logits": np.ones((1, 8))}, 5)
    assert [len(a) for a, _ in qa.values()] == [5, 5]


def test_qa_bundle_verifies_answer_spans_on_squad(tiny_qa_tflite_bundle, data_dir, tmp_path):
    from export.verify.verify import verify_bundle

    bundle = shutil.copytree(tiny_qa_tflite_bundle, tmp_path / "qa")
    report = verify_bundle(bundle, data_dir=data_dir, max_examples=12, progress=False, runtimes=[MAIN_RUNTIME])
    rows = {row["precision"]: row for row in report["artifacts"]}
    assert rows["fp32"]["compared"] == "start_logits/end_logits"
    assert rows["fp32"]["max_abs_diff"] <= 1e-4 and rows["fp32"]["agreement"] == 100.0
    assert rows["fp32"]["passed"] and report["metric_name"] == "f1"
    assert rows["fp32"]["metric"] == pytest.approx(report["reference"]["metric"])
    # the QA span floor reaches the quantized artifact's check; fp32 keeps exact agreement
    assert rows["int8-dynamic"]["threshold"]["min_agreement"] == QA_SPAN_AGREEMENT_FLOOR
    assert rows["fp32"]["threshold"]["min_agreement"] == 100.0


def test_checks_run_one_per_lane_at_most_slowest_first_and_rows_keep_the_job_order():
    import threading
    import time

    from export.verify.verify import _run_jobs, _slowest_first

    from collections import namedtuple

    runtime = namedtuple("runtime", "name emulated")
    litert, old, older, arm = (runtime(n, n == "arm") for n in ("litert", "old", "older", "arm"))
    selected = [litert, old, older, arm]
    jobs = [("fp32", litert), ("words4", litert), ("words4", old), ("words4", older), ("coreml", None), ("words4", arm)]
    order = _slowest_first(jobs, selected)
    assert [jobs[i] for i in order] == [("words4", arm), ("words4", older), ("words4", old), ("coreml", None), ("fp32", litert),
                                        ("words4", litert)]  # emulated ARM64 rows are the slowest
    started, running, peak, lock = [], 0, 0, threading.Lock()

    def check(job):
        nonlocal running, peak
        with lock:
            started.append(job)
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return job
    assert _run_jobs(check, jobs, order, 2, progress=False) == jobs
    assert peak == 2 and set(started[:2]) == {jobs[i] for i in order[:2]}


def test_one_check_per_core_each_with_the_cores_left(monkeypatch):
    from export.verify import verify

    monkeypatch.setattr(verify, "_cores", lambda: 2)
    assert verify._lanes(8) == (2, 1) and verify._lanes(1) == (1, 2)
    monkeypatch.setattr(verify, "_cores", lambda: 16)
    assert verify._lanes(3) == (3, 5) and verify._lanes(40) == (verify.MAX_LANES, 16 // verify.MAX_LANES)
    monkeypatch.undo()
    assert 1 <= verify._cores() <= (os.cpu_count() or 1)


def test_scaled_logit_bound_fails_another_students_file_where_the_labels_agree():
    """Quantization moves logits a few percent of their scale; another student's file moves them by their scale, even
    where it still answers every example the same (docs/reliability.md)."""
    threshold = Threshold(min_agreement=99.0, max_scaled_diff=0.1)
    reference = [np.array([4.0, -3.5]), np.array([-2.0, 2.5])]
    own, other = (ArtifactParity("own.tflite", "tflite/int8-dynamic", threshold), ArtifactParity("other.tflite", "tflite/int8-dynamic", threshold))
    for i, ref in enumerate(reference):
        example = {"index": i, "id": str(i), "text": f"text {i}"}
        label = int(ref.argmax())
        own.add(example, {"logits": (ref, ref + 0.05)}, label, label)
        other.add(example, {"logits": (ref, ref * 0.4)}, label, label)
    own_row, other_row = own.summary(90.0, "accuracy"), other.summary(90.0, "accuracy")
    assert own_row["passed"] and own_row["reference_max_abs"] == 4.0 and own_row["max_scaled_diff"] == pytest.approx(0.05 / 4)
    assert other_row["agreement"] == 100.0 and not other_row["passed"]
    assert "of PyTorch's largest |value| 4" in other_row["failures"][0] and "example #0" in other_row["failures"][0]
    assert parse_threshold_flag("max_scaled_diff=0.2") == ("*", "max_scaled_diff", 0.2)
    with pytest.raises(UserError, match="0 or more"):
        parse_threshold_flag("max_scaled_diff=-0.1")
