"""TFLite export of tiny random students: real conversion, real interpreter, real bundle files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from export.__main__ import main
from export.wrapper import ExportableBert, load_student
from mobile_app.runtime.bundle import BundleError, load_manifest, sha256_path
from tests.conftest import TINY_BUCKETS, TINY_QA_BUCKETS
from tests.tiny_models import flip_middle_byte

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static")


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


def _torch_outputs(model, ids, mask, types):
    with torch.no_grad():
        out = model(*(torch.from_numpy(a) for a in (ids, mask, types)))
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _inputs(bucket, length, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((1, bucket), np.int32)
    ids[0, :length] = rng.integers(1000, 5000, length)
    ids[0, 0], ids[0, length - 1] = 101, 102
    mask = np.zeros((1, bucket), np.int32)
    mask[0, :length] = 1
    return ids, mask, np.zeros((1, bucket), np.int32)


def test_one_file_per_precision_with_a_signature_per_bucket(tiny_tflite_bundle):
    manifest = load_manifest(tiny_tflite_bundle, task="sentiment")
    entries = {a["precision"]: a for a in manifest["artifacts"]}
    assert sorted(entries) == sorted(PRECISIONS)
    assert manifest["buckets"] == list(TINY_BUCKETS) and manifest["labels"] == ["negative", "positive"]
    assert (tiny_tflite_bundle / "labels.txt").read_text().split() == ["negative", "positive"]
    for entry in entries.values():
        path = tiny_tflite_bundle / entry["file"]
        assert entry["size_bytes"] == path.stat().st_size and entry["conversion_seconds"] > 0
        assert entry["signatures"] == {str(b): f"seq_{b}" for b in TINY_BUCKETS}
        interpreter = _interpreter(path)
        signatures = interpreter.get_signature_list()
        assert sorted(signatures) == [f"seq_{b}" for b in TINY_BUCKETS]
        for bucket in TINY_BUCKETS:
            assert sorted(signatures[f"seq_{bucket}"]["inputs"]) == ["attention_mask", "input_ids", "token_type_ids"]
            assert signatures[f"seq_{bucket}"]["outputs"] == ["logits"]
            runner = interpreter.get_signature_runner(f"seq_{bucket}")
            for detail in runner.get_input_details().values():
                assert detail["dtype"] == np.int32 and list(detail["shape"]) == [1, bucket]
            assert all(d["dtype"] == np.float32 for d in runner.get_output_details().values())
    # Signatures share weights: two buckets cost far less than two copies of the weights.
    weights = sum(p.numel() for p in load_student(manifest["student"]).parameters()) * 4
    assert entries["fp32"]["size_bytes"] < 1.2 * weights
    assert entries["int8-dynamic"]["size_bytes"] < 0.5 * entries["fp32"]["size_bytes"]
    assert entries["fp16"]["size_bytes"] < 0.6 * entries["fp32"]["size_bytes"]
    assert entries["int8-static"]["calibration_examples"] == 24


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-5), ("fp16", 1e-3), ("int8-dynamic", 2e-2), ("int8-static", 5e-2)])
def test_classifier_matches_pytorch_through_the_interpreter(tiny_tflite_bundle, tiny_classifier_dir, precision, tolerance):
    model = ExportableBert(load_student(tiny_classifier_dir))
    interpreter = _interpreter(tiny_tflite_bundle / f"sentiment_{precision}.tflite")
    for bucket in TINY_BUCKETS:
        ids, mask, types = _inputs(bucket, bucket - 5, seed=bucket)
        got = interpreter.get_signature_runner(f"seq_{bucket}")(input_ids=ids, attention_mask=mask, token_type_ids=types)
        np.testing.assert_allclose(got["logits"], _torch_outputs(model, ids, mask, types)[0], atol=tolerance)


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-5), ("int8-dynamic", 5e-2)])
def test_qa_model_matches_pytorch_through_the_interpreter(tiny_qa_tflite_bundle, tiny_qa_dir, precision, tolerance):
    manifest = load_manifest(tiny_qa_tflite_bundle, task="qa")
    assert manifest["outputs"] == ["start_logits", "end_logits"] and manifest["buckets"] == list(TINY_QA_BUCKETS)
    model = ExportableBert(load_student(tiny_qa_dir))
    interpreter = _interpreter(tiny_qa_tflite_bundle / f"qa_{precision}.tflite")
    bucket = TINY_QA_BUCKETS[0]
    ids, mask, types = _inputs(bucket, 50)
    types[0, 20:50] = 1
    got = interpreter.get_signature_runner(f"seq_{bucket}")(input_ids=ids, attention_mask=mask, token_type_ids=types)
    start, end = _torch_outputs(model, ids, mask, types)
    np.testing.assert_allclose(got["start_logits"][0, :50], start[0, :50], atol=tolerance)
    np.testing.assert_allclose(got["end_logits"][0, :50], end[0, :50], atol=tolerance)
    # QA bundles carry window settings that fit the largest bucket.
    assert manifest["tokenizer"]["max_seq_length"] == 128 and manifest["tokenizer"]["doc_stride"] <= 32


def test_manifest_hashes_every_file_and_a_tampered_file_is_refused(tiny_tflite_bundle, tmp_path, capsys):
    manifest = load_manifest(tiny_tflite_bundle)
    assert set(manifest["files"]) == {a["file"] for a in manifest["artifacts"]} | {"vocab.txt", "labels.txt"}
    for name, digest in manifest["files"].items():
        assert sha256_path(tiny_tflite_bundle / name) == digest
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "bundle")
    flip_middle_byte(bundle / "sentiment_int8-dynamic.tflite")
    with pytest.raises(BundleError, match="sentiment_int8-dynamic.tflite does not match its sha256"):
        load_manifest(bundle)
    assert main(["verify", str(bundle), "--max-examples", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "tampered" in err[-1]


def _exit_2(argv, capsys, expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # progress bars may come before the error line
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and err[-1] == errors[0] and expected in errors[0], err
    return errors[0]


def test_a_folder_that_is_not_a_bert_classifier_is_refused(tmp_path, capsys):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50)).save_pretrained(tmp_path / "gpt2")
    capsys.readouterr()
    _exit_2(["tflite", str(tmp_path / "gpt2"), "--out", str(tmp_path / "b"), "--task", "sentiment"], capsys, "not BERT-family")
    _exit_2(["tflite", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")], capsys, "not a model folder")
    assert not (tmp_path / "b").exists()


def test_bad_student_or_flags_exit_2_and_write_nothing(tiny_classifier_dir, tiny_qa_dir, tmp_path, capsys):
    out = tmp_path / "bundle"
    no_vocab = shutil.copytree(tiny_classifier_dir, tmp_path / "no_vocab")
    (no_vocab / "vocab.txt").unlink()
    (no_vocab / "tokenizer.json").unlink()
    _exit_2(["tflite", str(no_vocab), "--out", str(out), "--task", "sentiment", "--precisions", "fp32"], capsys, "no tokenizer")
    _exit_2(["tflite", str(tiny_classifier_dir), "--out", str(out), "--task", "sentiment", "--buckets", "32", "1024"], capsys,
            "longer than the model's 512 position embeddings")
    # without --task the bundle folder names the task: a name that cannot be one is refused
    _exit_2(["tflite", str(tiny_classifier_dir), "--out", str(tmp_path / "my bundle!")], capsys, "pass --task NAME")
    _exit_2(["tflite", str(tiny_qa_dir), "--out", str(out), "--task", "sentiment"], capsys, "needs a classification model")
    _exit_2(["tflite", str(tiny_classifier_dir), "--out", str(out), "--task", "sentiment", "--precisions", "int4"], capsys, "unknown TFLite precision")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _exit_2(["tflite", str(tiny_classifier_dir), "--out", str(blocker / "bundle"), "--task", "sentiment", "--precisions", "fp32",
             "--buckets", "16"], capsys, "choose a writable --out")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_a_failed_re_export_leaves_the_old_bundle_intact(tiny_tflite_bundle, tiny_classifier_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "sentiment")
    before = {p.name: sha256_path(p) for p in bundle.iterdir()}
    # Fails inside the staged bundle (after the vocab is written): int8-static cannot find its calibration data.
    _exit_2(["tflite", str(tiny_classifier_dir), "--out", str(bundle), "--task", "sentiment", "--buckets", "16",
             "--precisions", "fp32", "int8-static", "--min-runtime", "litert", "--data-dir", str(tmp_path / "missing")], capsys,
            "does not exist")
    assert {p.name: sha256_path(p) for p in bundle.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sentiment"]
    assert json.loads((bundle / "bundle.json").read_text())["buckets"] == list(TINY_BUCKETS)


def test_task_is_read_from_the_distill_report(tiny_classifier_dir, tmp_path):
    from export.student_folder import resolve_task

    student = shutil.copytree(tiny_classifier_dir, tmp_path / "student")
    (student / "distill_report.json").write_text(json.dumps({"task": "spam"}))
    assert resolve_task(student, None, "classification").name == "spam"
    assert resolve_task(student, "sentiment", "classification").name == "sentiment"


def test_vocab_is_rebuilt_from_tokenizer_json_when_vocab_txt_is_absent(tiny_classifier_dir, tmp_path):
    from export.student_folder import write_vocab

    student = shutil.copytree(tiny_classifier_dir, tmp_path / "student")
    (student / "vocab.txt").unlink()
    written = write_vocab(student, tmp_path / "vocab.txt")
    assert written.read_bytes() == Path(tiny_classifier_dir, "vocab.txt").read_bytes()
