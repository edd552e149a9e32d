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

from export.__main__ import main as export_main
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
                        "--precisions", "int8-static", "--min-runtime", "litert", "--data-dir", str(tmp_path / "missing")])
    _one_error(code, capsys, "does not exist")
    assert not any(p.exists() for p in dead) and live.is_dir()


# ---- a verified bundle shows what the student was trained with -----------------------------------------------------
def _rehash(bundle) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"] = {name: sha256_path(bundle / name) for name in manifest["files"]}
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))


def test_verify_refuses_a_vocab_shifted_with_its_hash_updated(tiny_tflite_bundle, data_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    tokens = (bundle / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (bundle / "vocab.txt").write_text("\n".join(tokens[1:] + tokens[:1]) + "\n", encoding="utf-8")
    _rehash(bundle)
    code = export_main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "8"])
    _one_error(code, capsys, "is not the student's")


def test_verify_refuses_labels_reversed_in_the_manifest(tiny_tflite_bundle, data_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["labels"] = manifest["labels"][::-1]
    (bundle / "bundle.json").write_text(json.dumps(manifest, indent=2))
    (bundle / "labels.txt").write_text("\n".join(manifest["labels"]) + "\n")
    _rehash(bundle)
    code = export_main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "8"])
    _one_error(code, capsys, "are not the student's ['negative', 'positive']")


def test_verify_refuses_a_threshold_of_no_known_kind(tiny_tflite_bundle, data_dir, capsys):
    for flag in ("tflite/fp99.max_abs_diff=1", "tflite/int8.min_agreement=1"):
        code = export_main(["verify", str(tiny_tflite_bundle), "--data-dir", str(data_dir), "--threshold", flag])
        _one_error(code, capsys, "no artifact kind")


# ---- broken students and flags -------------------------------------------------------------------------------------
def test_export_refuses_a_broken_or_nan_student_naming_what_is_wrong(tiny_classifier_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file, save_file

    truncated = shutil.copytree(tiny_classifier_dir, tmp_path / "truncated")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    _one_error(export_main(["tflite", str(truncated), "--out", str(tmp_path / "b"), *TFLITE_FP32]), capsys, "truncated or corrupt")
    bad_config = shutil.copytree(tiny_classifier_dir, tmp_path / "bad_config")
    (bad_config / "config.json").write_text("{not json")
    _one_error(export_main(["tflite", str(bad_config), "--out", str(tmp_path / "b"), *TFLITE_FP32]), capsys, "config.json")
    nan = shutil.copytree(tiny_classifier_dir, tmp_path / "nan")
    tensors = load_file(str(nan / "model.safetensors"))
    name = next(k for k in tensors if k.endswith("classifier.weight"))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(nan / "model.safetensors"), metadata={"format": "pt"})
    _one_error(export_main(["tflite", str(nan), "--out", str(tmp_path / "b"), *TFLITE_FP32]), capsys, "tensor classifier.weight holds NaN")
    assert not (tmp_path / "b").exists()


def test_coreml_refuses_one_enumerated_bucket(tiny_classifier_dir, tmp_path, capsys):
    code = export_main(["coreml", str(tiny_classifier_dir), "--out", str(tmp_path / "b"), "--task", "sentiment", "--buckets", "16"])
    _one_error(code, capsys, "at least 2 buckets")


def test_data_files_that_are_not_utf8_are_one_line_and_a_bom_is_read(tiny_tflite_bundle, data_dir, tmp_path, capsys):
    text = (data_dir / "sst2" / "dev.tsv").read_bytes()
    for name, content, expected in (("binary", bytes(range(256)) * 8, "not UTF-8 text"), ("utf16", text.decode("utf-8").encode("utf-16"), "UTF-16")):
        (tmp_path / name / "sst2").mkdir(parents=True)
        (tmp_path / name / "sst2" / "dev.tsv").write_bytes(content)
        (tmp_path / name / "sst2" / "train.tsv").symlink_to(data_dir / "sst2" / "train.tsv")
        code = export_main(["verify", str(tiny_tflite_bundle), "--data-dir", str(tmp_path / name), "--max-examples", "4"])
        _one_error(code, capsys, expected)
    from distill.data import read_table

    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + text)
    assert read_table(tmp_path / "bom.tsv") == read_table(data_dir / "sst2" / "dev.tsv")


def test_runtime_classifies_bytes_as_their_utf8_text(tiny_tflite_bundle):
    from mobile_app.runtime import load_task

    runner = load_task(tiny_tflite_bundle)
    assert runner.classify(b"good film")[0] == runner.classify("good film")[0]


# ---- distill: every flag and --set value checked before any work ---------------------------------------------------
def _distill(argv, capsys, expected: str, data_dir, out) -> None:
    from distill.__main__ import main as distill_main

    base = ["run", "--task", "sentiment", "--data-dir", str(data_dir), "--out", str(out), "--student", "1x32x4x64", "--init", "random"]
    _one_error(distill_main(base + argv), capsys, expected)


@pytest.mark.parametrize("argv, expected", [
    (["--set", "batch_size=abc"], "batch_size must be a whole number, got 'abc'"),
    (["--set", "intermediate_lr=fast"], "intermediate_lr must be a number"),
    (["--set", "batch_size=1.5"], "batch_size must be a whole number, got '1.5'"),
    (["--set", "intermediate_epochs=-1"], "intermediate_epochs must not be negative"),
    (["--set", "teacher_freeze_embeddings=yes"], "must be true or false"),
    (["--set", "temperature=0"], "temperature must be above 0"),
    (["--set", "warmup_ratio=nan"], "finite number"),
    (["--set", "no_such_setting=1"], "unknown setting 'no_such_setting'"),
    (["--set", "batch_size"], "expects KEY=VALUE"),
    (["--max-train-examples", "-5"], "--max-train-examples must be at least 1, got -5"),
    (["--max-train-examples", "0"], "--max-train-examples must be at least 1, got 0"),
])
def test_distill_refuses_bad_flags_before_any_work(argv, expected, tiny_classifier_dir, data_dir, tmp_path, capsys):
    _distill(["--teacher", str(tiny_classifier_dir), *argv], capsys, expected, data_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_distill_refuses_an_unwritable_out_resume_from_nothing_and_a_too_long_max_seq_length(tiny_classifier_dir, data_dir, tmp_path, capsys):
    from tests.tiny_models import make_tiny_bert

    teacher = ["--teacher", str(tiny_classifier_dir), "--max-train-examples", "8"]
    _distill(teacher, capsys, "cannot be written", data_dir, "/proc/tinybert-out")
    _distill([*teacher, "--resume"], capsys, "--resume", data_dir, tmp_path / "empty")
    short = make_tiny_bert(tmp_path / "short_teacher", max_positions=64)
    _distill(["--teacher", str(short), "--set", "max_seq_length=128"], capsys, "longer than the teacher's 64 position embeddings",
             data_dir, tmp_path / "out")


def test_squad_answers_without_an_integer_answer_start_are_one_line(tiny_qa_dir, data_dir, tmp_path, capsys):
    from distill.__main__ import main as distill_main

    document = json.loads((data_dir / "squad_v1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    document["data"] = document["data"][:2]
    for name, change in (("missing", lambda a: a.pop("answer_start")), ("string", lambda a: a.update(answer_start=str(a["answer_start"])))):
        bad = json.loads(json.dumps(document))
        change(bad["data"][0]["paragraphs"][0]["qas"][0]["answers"][0])
        (tmp_path / name / "squad_v1").mkdir(parents=True)
        (tmp_path / name / "squad_v1" / "dev-v1.1.json").write_text(json.dumps(bad), encoding="utf-8")
        code = distill_main(["run", "--task", "qa", "--data-dir", str(tmp_path / name), "--out", str(tmp_path / f"out_{name}"),
                             "--teacher", str(tiny_qa_dir), "--student", "1x32x4x64", "--init", "random", "--set", "max_seq_length=128",
                             "--set", "doc_stride=32"])
        _one_error(code, capsys, "integer \"answer_start\"")


def test_a_diverging_run_stops_at_the_step_naming_the_loss_or_tensor(tiny_classifier_dir, data_dir, tmp_path, capsys):
    import torch

    from distill.__main__ import main as distill_main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = distill_main(["run", "--task", "sentiment", "--data-dir", str(data_dir), "--out", str(tmp_path / "out"), "--teacher",
                             str(tiny_classifier_dir), "--student", "1x32x4x64", "--init", "random", "--max-train-examples", "32",
                             "--max-eval-examples", "16", "--set", "max_seq_length=32", "--set", "batch_size=16",
                             "--set", "intermediate_lr=1e30", "--set", "warmup_ratio=0"])
    finally:
        torch.set_num_threads(threads)
    line = _one_error(code, capsys, "intermediate epoch 1 step ")
    assert "nothing was saved" in line and ("the loss is" in line or "tensor " in line), line
    assert not (tmp_path / "out" / "student").exists()


# ---- the console a user reads --------------------------------------------------------------------------------------
def _cli(*argv, timeout=300):
    from tests.conftest import REPO_ROOT

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_refused_command_prints_its_error_line_only_and_writes_nothing(tiny_classifier_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    done = _cli("-m", "export", "tflite", str(tiny_classifier_dir), "--out", str(notes), *TFLITE_FP32)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"error: --out {notes} is an existing file; pass a folder path for the bundle (nothing was written)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    done = _cli("-m", "distill", "run", "--task", "spam", "--out", str(tmp_path / "run"), "--set", "batch_size=abc", timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", "error: setting batch_size must be a whole number, got 'abc'\n")
    assert not (tmp_path / "run").exists()


def test_the_quantizers_progress_bars_go_to_the_log_not_the_console(tiny_classifier_dir, tmp_path):
    out = tmp_path / "b"
    done = _cli("-m", "export", "tflite", str(tiny_classifier_dir), "--out", str(out), "--task", "sentiment",
                "--buckets", "16", "--precisions", "int8-dynamic")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Quantization Parameters" not in done.stderr + done.stdout
    assert "Applying Transformations" not in done.stderr + done.stdout
    log = out.parent / (out.name + ".log")
    assert "Generating Quantization Parameters" in log.read_text()
