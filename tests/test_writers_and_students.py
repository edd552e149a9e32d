"""One writer per bundle, every artifact tied to the student it was made from, and flags that refuse nonsense.

Real exports (subprocesses where two processes matter), real .tflite files read by the runtime's own stamp reader.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export.__main__ import main as export_main
from mobile_app.runtime.bundle import BundleError, sha256_path
from tests.test_bad_inputs import _one_error

REPO_ROOT = Path(__file__).resolve().parents[1]
FP32 = ["--task", "sentiment", "--precisions", "fp32", "--buckets", "16"]


def _export(student, out, *extra):
    return subprocess.run([sys.executable, "-m", "export", "tflite", str(student), "--out", str(out), *FP32, *extra],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def _rehash(bundle: Path) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"] = {name: sha256_path(bundle / name) for name in manifest["files"]}
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))


# ---- one writer at a time ------------------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_free(tiny_classifier_dir, tmp_path):
    from export.writer_lock import bundle_writer, lock_path

    bundle = tmp_path / "sentiment"
    with bundle_writer(bundle, "testing"):
        held = _export(tiny_classifier_dir, bundle)
    assert held.returncode == 2, held.stderr
    assert held.stderr.strip().splitlines()[-1].startswith("error: ") and f"pid {os.getpid()}" in held.stderr
    assert not bundle.exists()
    # a lock file left by a killed writer (its text, no OS lock behind it) does not block the next one
    lock_path(bundle).write_text("pid 999999 (exporting, since 00:00:00)\n")
    done = _export(tiny_classifier_dir, bundle)
    assert done.returncode == 0, done.stderr
    assert (bundle / "sentiment_fp32.tflite").is_file()
    assert not lock_path(bundle).exists()  # the writer removes its lock file when done: nothing is left beside the bundle


def test_two_concurrent_exports_never_both_succeed_unless_both_files_are_in_the_bundle(tiny_classifier_dir, tmp_path):
    bundle = tmp_path / "sentiment"
    runs = {precision: subprocess.Popen([sys.executable, "-m", "export", "tflite", str(tiny_classifier_dir), "--out", str(bundle),
                                         "--task", "sentiment", "--buckets", "16", "--precisions", precision],
                                        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for precision in ("fp32", "fp16")}
    results = {precision: (run.wait(timeout=600), run.stderr.read()) for precision, run in runs.items()}
    manifest = json.loads((bundle / "bundle.json").read_text())
    files = {a["file"] for a in manifest["artifacts"]}
    for precision, (code, err) in results.items():
        assert code in (0, 2), err
        if code == 0:
            assert f"sentiment_{precision}.tflite" in files, (precision, files)
        else:
            assert "is being written by pid" in err.strip().splitlines()[-1]
    assert any(code == 0 for code, _ in results.values())


# ---- every artifact belongs to the bundle's student ----------------------------------------------------------------
def test_each_tflite_carries_its_students_sha256_and_a_swapped_file_is_refused(tiny_tflite_bundle, tmp_path):
    from mobile_app.runtime import load_task
    from mobile_app.runtime.artifact_student import read_student_stamp
    from tests.tiny_models import make_tiny_bert

    manifest = json.loads((tiny_tflite_bundle / "bundle.json").read_text())
    for entry in manifest["artifacts"]:
        assert entry["student_sha256"] == manifest["student_sha256"]
        assert read_student_stamp((tiny_tflite_bundle / entry["file"]).read_bytes()) == manifest["student_sha256"]
    other = make_tiny_bert(tmp_path / "other", seed=1)
    other_bundle = tmp_path / "other_bundle"
    assert _export(other, other_bundle, "--min-runtime", "litert").returncode == 0
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    shutil.copyfile(other_bundle / "sentiment_fp32.tflite", bundle / "sentiment_fp32.tflite")
    _rehash(bundle)  # the swap "updated" in bundle.json: only the file's own stamp tells
    with pytest.raises(BundleError, match="swapped in from another bundle"):
        load_task(bundle, precision="fp32")
    # an entry that records another student is refused too
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "recorded")
    manifest["artifacts"][0]["student_sha256"] = "0" * 64
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))
    with pytest.raises(BundleError, match="converted from another student"):
        load_task(bundle)


def test_verify_against_another_student_is_refused_unless_asked_and_then_said(tiny_tflite_bundle, data_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    other = shutil.copytree(Path(json.loads((tiny_tflite_bundle / "bundle.json").read_text())["student"]), tmp_path / "nudged")
    weights = load_file(other / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1e-6
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    before = sha256_path(bundle / "bundle.json")
    argv = ["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "8", "--student", str(other), "--runtimes", "ai-edge-litert-2.3"]
    _one_error(export_main(argv), capsys, "is not the student")
    assert sha256_path(bundle / "bundle.json") == before and not (bundle / "parity.json").exists()
    assert export_main([*argv, "--student-mismatch-ok"]) == 0
    assert "not the student the bundle was exported from" in capsys.readouterr().out
    assert "Proved against another student" in (bundle / "parity.md").read_text()
    assert json.loads((bundle / "parity.json").read_text())["student_mismatch"]["student_sha256"] != before


# ---- flags that accepted nonsense, damaged weights, non-text input ------------------------------------------------
@pytest.mark.parametrize("argv, expected", [
    (["tflite", "STUDENT", "--out", "OUT", "--min-runtime", "99.0"], "not a TFLite release"),
    (["tflite", "STUDENT", "--out", "OUT", "--min-runtime", "1.15"], "not a TFLite release"),
    (["verify", "BUNDLE", "--threshold", "min_agreement=150"], "percent from 0 to 100"),
    (["verify", "BUNDLE", "--threshold", "tflite/fp32.max_abs_diff=-1"], "0 or more"),
    (["verify", "BUNDLE", "--threshold", "max_metric_gap=nan"], "0 or more"),
])
def test_out_of_range_flags_are_one_line(argv, expected, tiny_classifier_dir, tiny_tflite_bundle, tmp_path, capsys):
    names = {"STUDENT": str(tiny_classifier_dir), "OUT": str(tmp_path / "b"), "BUNDLE": str(tiny_tflite_bundle)}
    _one_error(export_main([names.get(a, a) for a in argv]), capsys, expected)
    assert not (tmp_path / "b").exists()


def test_a_truncated_safetensors_file_is_one_line_naming_it(tiny_classifier_dir, tmp_path, capsys):
    student = shutil.copytree(tiny_classifier_dir, tmp_path / "student")
    weights = student / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _one_error(export_main(["tflite", str(student), "--out", str(tmp_path / "b"), *FP32]), capsys, str(weights))


def test_runtime_calls_with_non_text_are_refused(tiny_tflite_bundle, tiny_qa_tflite_bundle):
    from mobile_app.runtime import load_task
    from mobile_app.runtime.errors import NotTextError, UserError

    runner = load_task(tiny_tflite_bundle, precision="fp32")
    for bad in (None, 5, ["a film"]):
        with pytest.raises(NotTextError, match="must be a str or UTF-8 bytes") as raised:
            runner.classify(bad)
        assert isinstance(raised.value, TypeError) and isinstance(raised.value, UserError)
    qa = load_task(tiny_qa_tflite_bundle)
    with pytest.raises(NotTextError, match="question must be a str or UTF-8 bytes"):
        qa.answer(None, "Some context.")
