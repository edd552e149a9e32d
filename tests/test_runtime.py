"""The on-device runtime on real .tflite bundles (tiny models, the real exporter, the real interpreter)."""
from __future__ import annotations

import math
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from export.tflite import export_tflite
from export.wrapper import ExportableBert, load_student
from mobile_app.runtime.backend_factory import open_backend, pick_artifact
from mobile_app.runtime.backends import BackendUnavailableError, TFLiteBackend
from mobile_app.runtime.bundle import BundleError, artifacts, load_manifest
from mobile_app.runtime.errors import NotTextError
from mobile_app.runtime.classify import Prediction, classify, encode_text, from_probabilities, softmax
from mobile_app.runtime.qa import NO_ANSWER, bundle_windows
from mobile_app.runtime import load_task
from tests.conftest import REPO_ROOT
from tests.tiny_models import flip_middle_byte

CLS_BUCKETS = (16, 32)
QA_BUCKETS = (64,)
ODD_TEXTS = ["", "   ", b"bytes \xff\xfe not UTF-8", "😀🔥 great!!! 👍🏽", "Crème brûlée 北京 مرحبا नमस्ते", "a" * 5000, "word " * 2000,
             "ctrl\x00\x01\u200b\ufeff", "\n\t\r"]


@pytest.fixture(scope="module")
def cls_bundle(tiny_classifier_dir, tmp_path_factory):
    """Sentiment bundle of the tiny classifier: fp32 + int8-dynamic, buckets 16/32 (no calibration data needed)."""
    out = tmp_path_factory.mktemp("runtime_cls") / "sentiment"
    export_tflite(tiny_classifier_dir, out, precisions=("fp32", "int8-dynamic"), task="sentiment", buckets=CLS_BUCKETS, progress=False)
    return out


@pytest.fixture(scope="module")
def qa_bundle(tiny_qa_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runtime_qa") / "qa"
    export_tflite(tiny_qa_dir, out, precisions=("fp32",), task="qa", buckets=QA_BUCKETS, progress=False)
    return out


def _torch_outputs(model: ExportableBert, ids, bucket: int) -> dict[str, np.ndarray]:
    """The PyTorch student on the same right-padded bucket the backend feeds the interpreter."""
    n = len(ids)
    pad = lambda values: torch.tensor([list(values) + [0] * (bucket - n)], dtype=torch.int32)  # noqa: E731
    with torch.no_grad():
        out = model(pad(ids), pad([1] * n), pad([0] * n))
    out = out if isinstance(out, tuple) else (out,)
    return {name: value.numpy()[0] for name, value in zip(model.output_names, out)}


def test_importing_the_runtime_pulls_in_no_torch_or_transformers():
    code = ("import sys, mobile_app.runtime, mobile_app.runtime.backends, mobile_app.runtime.tokenizer, mobile_app.runtime.qa, mobile_app.runtime.classify\n"
            "heavy = sorted(m for m in ('torch', 'transformers', 'tokenizers', 'coremltools', 'tensorflow') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_tflite_backend_pads_to_buckets_and_matches_torch(cls_bundle, tiny_classifier_dir):
    manifest = load_manifest(cls_bundle)
    entry = pick_artifact(manifest, "tflite", "fp32")
    backend = TFLiteBackend(cls_bundle / entry["file"], entry)
    model = ExportableBert(load_student(tiny_classifier_dir))
    assert (backend.name, backend.precision, backend.buckets) == ("tflite", "fp32", [16, 32])
    assert [backend.bucket_for(n) for n in (1, 16, 17, 32)] == [16, 16, 32, 32]
    rng = np.random.default_rng(0)
    for n in (2, 9, 16, 17, 32):
        ids = [101, *rng.integers(1000, 20000, n - 2).tolist(), 102]
        got = backend.run(ids, [1] * n, [0] * n)
        assert got["logits"].shape == (2,)
        np.testing.assert_allclose(got["logits"], _torch_outputs(model, ids, backend.bucket_for(n))["logits"], atol=1e-4)
        # The same example already padded (to its bucket, or past the largest) gives the same logits.
        padded = ids + [0] * (40 - n)
        np.testing.assert_allclose(backend.run(padded, [1] * n + [0] * (40 - n), [0] * 40)["logits"], got["logits"], atol=1e-6)
    with pytest.raises(ValueError, match="largest bucket 32"):
        backend.bucket_for(33)
    with pytest.raises(ValueError, match="one length"):
        backend.run([101, 102], [1], [0, 0])


def test_qa_backend_trims_per_token_outputs(qa_bundle, tiny_qa_dir):
    manifest = load_manifest(qa_bundle)
    backend = open_backend(qa_bundle, manifest)  # only fp32 exists: it is the default
    model = ExportableBert(load_student(tiny_qa_dir))
    ids = [101, 2054, 2003, 102, 1996, 3899, 102]
    got = backend.run(ids, [1] * 7, [0, 0, 0, 0, 1, 1, 1])
    assert got["start_logits"].shape == got["end_logits"].shape == (7,)
    n = len(ids)
    with torch.no_grad():
        ref = model(*(torch.tensor([v + [0] * (64 - n)], dtype=torch.int32) for v in (ids, [1] * n, [0, 0, 0, 0, 1, 1, 1])))
    np.testing.assert_allclose(got["start_logits"], ref[0].numpy()[0, :n], atol=1e-4)
    np.testing.assert_allclose(got["end_logits"], ref[1].numpy()[0, :n], atol=1e-4)


def test_classify_odd_texts_never_crash(cls_bundle, tiny_classifier_dir):
    runner = load_task(cls_bundle, task="sentiment")
    assert runner.precision == "int8-dynamic" and runner.artifact_name == "sentiment_int8-dynamic_rt2.22.tflite"  # LiteRT's file
    for text in ODD_TEXTS:
        prediction, latency_ms = runner.classify(text)
        assert isinstance(prediction, Prediction) and prediction.label in ("negative", "positive")
        assert math.isclose(sum(prediction.probabilities.values()), 1.0, rel_tol=1e-6) and latency_ms > 0
    # Anything that is not text is refused, not answered.
    for not_text in (None, 5, ["a list"]):
        with pytest.raises(NotTextError, match="must be a str or UTF-8 bytes"):
            runner.classify(not_text)
    # Long text is truncated to the largest bucket, and the fp32 artifact answers like PyTorch on it.
    runner.set_precision("fp32")
    model = ExportableBert(load_student(tiny_classifier_dir))
    long_text = "a surprisingly touching film " * 50
    encoding = encode_text(runner.tokenizer, long_text, 32)
    assert len(encoding) == 32 and encoding.input_ids[-1] == runner.tokenizer.sep_id
    expected = classify(_torch_outputs(model, encoding.input_ids, 32)["logits"], ["negative", "positive"])
    got, _ = runner.classify(long_text)
    assert got.label == expected.label and math.isclose(got.confidence, expected.confidence, abs_tol=1e-4)
    empty = encode_text(runner.tokenizer, "", 32)
    assert empty.input_ids == [runner.tokenizer.cls_id, runner.tokenizer.sep_id]


def test_answer_odd_inputs_and_long_context(qa_bundle):
    runner = load_task(qa_bundle)
    context = "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy. " * 12
    answer, latency_ms = runner.answer("Who gave their name to Normandy?", context)
    assert answer.found and answer.text == context[answer.start_char:answer.end_char] and latency_ms > 0
    assert len(bundle_windows(runner.tokenizer, "Who gave their name to Normandy?", context, runner.settings, 64)) > 5
    assert runner.answer("", "")[0] == NO_ANSWER
    assert runner.answer("Why?", "")[0] == NO_ANSWER
    for question, passage in [("", "Some context here."), ("😀 " * 300, "Короткий текст 北京.")]:
        got, _ = runner.answer(question, passage)
        assert got.text == passage[got.start_char:got.end_char]
    with pytest.raises(NotTextError):
        runner.answer(None, None)
    with pytest.raises(BundleError, match="call answer"):
        runner.classify("text")


def test_precisions_are_listed_and_switched(cls_bundle):
    runner = load_task(cls_bundle, precision="fp32")
    assert runner.available_precisions() == ["fp32", "int8-dynamic"]
    assert runner.artifact_name == "sentiment_fp32.tflite"
    runner.set_precision("int8-dynamic")
    assert runner.artifact_name == "sentiment_int8-dynamic_rt2.22.tflite" and runner.backend.precision == "int8-dynamic"
    with pytest.raises(BundleError, match="no tflite artifact at precision 'fp16'; it has: fp32, int8-dynamic"):
        runner.set_precision("fp16")
    assert runner.artifact_name == "sentiment_int8-dynamic_rt2.22.tflite"  # a refused switch keeps the current model
    with pytest.raises(BundleError, match="call classify"):
        runner.answer("q", "c")


def test_tampered_or_mismatched_bundle_is_refused(cls_bundle, tmp_path):
    with pytest.raises(BundleError, match="not 'qa'"):
        load_task(cls_bundle, task="qa")
    copy = tmp_path / "sentiment"
    shutil.copytree(cls_bundle, copy)
    flip_middle_byte(copy / "sentiment_fp32.tflite")
    with pytest.raises(BundleError, match="tampered"):
        load_task(copy)
    with pytest.raises(BundleError, match="not a bundle"):
        load_task(tmp_path)
    with pytest.raises(BundleError, match="no coreml artifact"):
        load_task(cls_bundle, fmt="coreml")
    with pytest.raises(BundleError, match="unknown model format"):
        load_task(cls_bundle, fmt="onnx")


@pytest.mark.skipif(platform.system() == "Darwin", reason="Core ML predicts natively on macOS")
def test_coreml_off_macos_points_to_verify(cls_bundle):
    manifest = dict(load_manifest(cls_bundle))
    manifest["artifacts"] = artifacts(manifest) + [{"file": "sentiment_fp16.mlpackage", "format": "coreml", "precision": "fp16", "buckets": [16, 32]}]
    with pytest.raises(BackendUnavailableError, match="python -m export verify"):
        open_backend(cls_bundle, manifest, fmt="coreml")


def test_softmax_and_classify():
    probs = softmax([1000.0, 1001.0])
    assert np.all(np.isfinite(probs)) and math.isclose(probs.sum(), 1.0) and probs[1] > probs[0]
    prediction = classify(np.array([[0.0, 2.0]]), ["ham", "spam"])
    assert (prediction.label, prediction.index) == ("spam", 1)
    assert math.isclose(prediction.confidence, 1 / (1 + math.exp(-2)))
    assert from_probabilities([0.7, 0.3], ["ham", "spam"]).label == "ham"
    with pytest.raises(BundleError, match="3 scores but the bundle lists 2 labels"):
        classify([1.0, 2.0, 3.0], ["ham", "spam"])
