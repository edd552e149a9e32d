"""Bad or odd input from a user never destroys their files, never ships a wrong bundle, and ends in one `error:` line.

Real CLIs in process (their exit code and stderr) on real files: tiny random students, their TFLite bundle,
copies of the real data files made bad. benchmarks/sweep_bad_inputs.py runs the same inputs as subprocesses.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from export.cli import main as export_main
from mobile_app.runtime.bundle import sha256_path
from tests.conftest import TINY_BUCKETS

TFLITE_FP32 = ["--task", "sentiment", "--precisions", "fp32", "--buckets", "16"]


def _one_error(code: int, capsys, expected: str) -> str:
    """The command exited 2 with exactly one `error:` line, the last one, containing `expected`."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0] and expected in errors[0], (code, err)
    return errors[0]


def _tree(folder) -> dict:
    return {p.relative_to(folder).as_posix(): sha256_path(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- --out never destroys what the user did not ask to replace ----------------------------------------------------
def test_export_refuses_an_out_folder_that_is_not_a_bundle(tiny_classifier_dir, tmp_path, capsys):
    documents = tmp_path / "documents"
    documents.mkdir()
    (documents / "thesis.txt").write_text("years of work\n")
    _one_error(export_main(["tflite", str(tiny_classifier_dir), "--out", str(documents), *TFLITE_FP32]), capsys, "not a bundle")
    assert _tree(documents) == {"thesis.txt": sha256_path(documents / "thesis.txt")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents"]


def test_export_refuses_the_distill_run_or_the_student_as_out(tiny_classifier_dir, tmp_path, capsys):
    run = tmp_path / "run"
    student = shutil.copytree(tiny_classifier_dir, run / "student")
    before = _tree(run)
    _one_error(export_main(["tflite", str(student), "--out", str(run), *TFLITE_FP32]), capsys, "holds the student")
    _one_error(export_main(["tflite", str(student), "--out", str(student), *TFLITE_FP32]), capsys, "holds the student")
    assert _tree(run) == before


def test_export_refuses_an_out_that_is_a_file(tiny_classifier_dir, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    _one_error(export_main(["tflite", str(tiny_classifier_dir), "--out", str(notes), *TFLITE_FP32]), capsys, "is an existing file")
    assert notes.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_coreml_refuses_an_out_folder_that_is_not_a_bundle(tiny_classifier_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    code = export_main(["coreml", str(tiny_classifier_dir), "--out", str(photos), "--task", "sentiment", "--buckets", *map(str, TINY_BUCKETS)])
    _one_error(code, capsys, "not a bundle")
    assert (photos / "cat.jpg").read_bytes() == b"\xff\xd8 a cat"


def test_a_bundle_with_files_the_kit_did_not_write_is_refused(tiny_tflite_bundle, tiny_classifier_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    (bundle / "my_notes.md").write_text("mine\n")
    before = _tree(bundle)
    _one_error(export_main(["tflite", str(tiny_classifier_dir), "--out", str(bundle), *TFLITE_FP32]), capsys, "my_notes.md")
    assert _tree(bundle) == before


def test_re_exporting_another_student_replaces_the_bundle_whole(tiny_tflite_bundle, tmp_path, capsys):
    from tests.tiny_models import make_tiny_bert

    other = make_tiny_bert(tmp_path / "other", seed=1)
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    old = json.loads((bundle / "bundle.json").read_text())
    assert len(old["artifacts"]) == 4
    assert export_main(["tflite", str(other), "--out", str(bundle), *TFLITE_FP32]) == 0
    assert "held artifacts of another student" in capsys.readouterr().out
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert [a["file"] for a in manifest["artifacts"]] == ["sentiment_fp32.tflite"]
    assert sorted(p.name for p in bundle.iterdir()) == sorted(["bundle.json", "labels.txt", "vocab.txt", "sentiment_fp32.tflite"])
    assert manifest["student"] == str(other.resolve()) and manifest["student_sha256"] != old["student_sha256"]


def test_leftovers_of_killed_exports_are_removed_and_live_ones_kept(tiny_tflite_bundle, tiny_classifier_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    dead = [tmp_path / f".sentiment.staging-{gone}-abc", tmp_path / f".sentiment.old-{gone}-def"]
    live = tmp_path / f".sentiment.staging-{os.getpid()}-ghi"
    for folder in (*dead, live):
        folder.mkdir()
        (folder / "sentiment_fp32.tflite").write_bytes(b"half a model")
    # the export fails inside its own staging folder (no calibration data), after clearing the dead leftovers
    code = export_main(["tflite", str(tiny_classifier_dir), "--out", str(bundle), "--task", "sentiment", "--buckets", "16",
                        "--precisions", "int8-static", "--data-dir", str(tmp_path / "missing")])
    _one_error(code, capsys, "does not exist")
    assert not any(p.exists() for p in dead) and live.is_dir()
