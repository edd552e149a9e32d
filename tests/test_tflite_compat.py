"""What a .tflite file needs from its interpreter, recorded at export and checked by the backend before loading.

Real files of the tiny models, real interpreters: ai-edge-litert in this venv, and the older ones (tflite-runtime
2.14 / 2.13, TFLite 2.8 of tensorflow-cpu 2.8.4) from their side environments (`make setup`,
export/verify/runtimes.py), run as subprocesses; a missing one skips (fails under CI=true, tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from export.tflite_compat import inspect_tflite
from mobile_app.runtime.backends import BackendUnavailableError, TFLiteBackend, check_runtime
from mobile_app.runtime.bundle import load_manifest
from mobile_app.runtime.contract import TFLITE_NEEDS_FIELD, TFLITE_PROFILE_FIELD
from mobile_app.runtime.runtime_versions import missing_runtime
from tests.conftest import REPO_ROOT, TINY_BUCKETS, side_runtime

OLD_ENVS = ("tflite-runtime-2.14", "tflite-runtime-2.13", "tflite-2.8")
SENTENCES = ["it 's a charming and often affecting journey .", "unflinchingly bleak and desperate",
             "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales ."]


def _side_python(name: str) -> Path:
    return side_runtime(name).python_path()


# Runs inside an old interpreter's environment: the app's own runtime (numpy + stdlib) classifies SENTENCES with
# every TFLite artifact of the bundle and prints {precision: [logits...] or "refused: <message>"}.
_CLASSIFY = r"""
import json, sys
from mobile_app.runtime import load_task
from mobile_app.runtime.bundle import BundleError
bundle, sentences = sys.argv[1], json.loads(sys.argv[2])
out = {}
for entry in json.load(open(bundle + "/bundle.json"))["artifacts"]:
    try:
        runner = load_task(bundle, precision=entry["precision"])
    except BundleError as error:
        out[entry["precision"]] = "refused: " + str(error)
        continue
    out[entry["precision"]] = [runner.run_example({"text": text}).outputs[0]["logits"].tolist() for text in sentences]
print(json.dumps(out))
"""


def _classify_in(python: Path, bundle: Path) -> dict:
    done = subprocess.run([str(python), "-c", _CLASSIFY, str(bundle), json.dumps(SENTENCES)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _torch_logits(student_dir: Path, bundle: Path) -> np.ndarray:
    """PyTorch logits of SENTENCES, tokenized by the bundle's own tokenizer and padded as the backend pads."""
    from export.verify.torch_reference import TorchRunner
    from export.wrapper import ExportableBert, load_student
    from mobile_app.runtime import TaskRunner, load_task

    runner = load_task(bundle, precision="fp32")
    reference = TaskRunner(bundle, runner.manifest, runner.tokenizer,
                           TorchRunner(ExportableBert(load_student(student_dir)), runner.backend.buckets, runner.tokenizer.pad_id))
    return np.stack([np.asarray(reference.run_example({"text": text}).outputs[0]["logits"]).reshape(-1) for text in SENTENCES])


@pytest.fixture(scope="module")
def tflite28_bundle(tiny_classifier_dir, data_dir, tmp_path_factory) -> Path:
    """The tiny classifier exported for TFLite 2.8 alone (python-for-android's tflite-runtime), every precision asked."""
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("tflite28") / "sentiment"
    export_tflite(tiny_classifier_dir, out, precisions=("fp32", "fp16", "int8-dynamic", "int8-static"), task="sentiment",
                  data_dir=data_dir, buckets=TINY_BUCKETS, calibration_examples=24, progress=False, min_runtime="2.8")
    return out


def test_bundle_records_ops_versions_and_oldest_runtime_of_each_file(tiny_tflite_bundle):
    manifest = load_manifest(tiny_tflite_bundle)
    needs = {a["precision"]: a[TFLITE_NEEDS_FIELD] for a in manifest["artifacts"]}
    assert manifest[TFLITE_PROFILE_FIELD] == {"min_runtime": "2.22.0", "profiles": ["2.22.0"], "unavailable": {}}  # LiteRT 2.3.0's TFLite
    for precision, need in needs.items():
        assert need["buffers"]["external"] == 0, precision  # every export keeps its weights inside the flatbuffer
        assert need == {k: v for k, v in inspect_tflite((tiny_tflite_bundle / f"sentiment_{precision}.tflite").read_bytes()).items()
                        if k != "source"}
    assert needs["fp32"]["min_runtime"] == "2.8.0" and needs["fp16"]["min_runtime"] == "2.8.0"
    assert needs["fp16"]["ops"]["DEQUANTIZE"] == {"version": 3, "runtime": "1.15.0"}  # float16 weights
    # Per-channel hybrid int8: the versions TFLite's op_version.cc gives, not the 5 / 1 ai-edge-quantizer leaves.
    assert needs["int8-dynamic"]["ops"]["FULLY_CONNECTED"] == {"version": 12, "runtime": "2.17.0"}
    assert needs["int8-dynamic"]["ops"]["EMBEDDING_LOOKUP"] == {"version": 4, "runtime": "2.18.0"}
    assert needs["int8-static"]["ops"]["RSQRT"] == {"version": 3, "runtime": "2.15.0"}  # int16 activations
    # The derived versions are stamped into the file, so an old interpreter refuses it by name instead of
    # running its older kernel on per-channel scales.
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs((tiny_tflite_bundle / "sentiment_int8-dynamic.tflite").read_bytes(), 0)
    stamped = {max(model.OperatorCodes(i).BuiltinCode(), model.OperatorCodes(i).DeprecatedBuiltinCode()): model.OperatorCodes(i).Version()
               for i in range(model.OperatorCodesLength())}
    assert stamped[schema.BuiltinOperator.FULLY_CONNECTED] == 12 and stamped[schema.BuiltinOperator.EMBEDDING_LOOKUP] == 4


def test_a_file_that_needs_a_newer_runtime_is_refused_in_one_line(tiny_tflite_bundle):
    manifest = load_manifest(tiny_tflite_bundle)
    entry = next(a for a in manifest["artifacts"] if a["precision"] == "int8-dynamic")
    with pytest.raises(BackendUnavailableError) as refused:
        check_runtime(tiny_tflite_bundle / entry["file"], entry, "tflite-runtime 2.14.0", "2.14.0")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("sentiment_int8-dynamic.tflite: ")
    assert "EMBEDDING_LOOKUP v4 (2.18.0), FULLY_CONNECTED v12 (2.17.0) need TFLite >= 2.18.0" in message
    assert "--min-runtime 2.14" in message
    assert missing_runtime(entry, "2.18.0") is None  # and the runtime it names is enough
    TFLiteBackend(tiny_tflite_bundle / entry["file"], entry)  # ai-edge-litert 2.3.0 (TFLite 2.22) opens it


def test_the_real_old_interpreter_gets_the_one_line_refusal(tiny_tflite_bundle):
    got = _classify_in(_side_python("tflite-runtime-2.14"), tiny_tflite_bundle)
    assert got["int8-dynamic"].startswith("refused: sentiment_int8-dynamic.tflite: ")
    assert "tflite-runtime 2.14.0" in got["int8-dynamic"] and "TFLite >= 2.18.0" in got["int8-dynamic"]
    assert got["int8-static"].startswith("refused: sentiment_int8-static.tflite: ") and "RSQRT v3 (2.15.0)" in got["int8-static"]


def test_external_weight_buffers_are_caught_by_the_inspection_before_any_interpreter(tiny_tflite_bundle, tmp_path):
    from ai_edge_quantizer import Quantizer

    from export.quantize import _recipe

    # ai-edge-quantizer's own output: weights of a file over 256 KiB go after the flatbuffer (Buffer.offset).
    raw = bytes(Quantizer((tiny_tflite_bundle / "sentiment_fp32.tflite").read_bytes(), _recipe("fp16"))
                .quantize(None, enable_progress_report=False).quantized_model)
    needs = inspect_tflite(raw)
    assert needs["buffers"]["external"] > 0 and needs["buffers"]["runtime"] == "2.14.0"
    assert needs["min_runtime"] == "2.14.0" and needs["min_runtime_for"].endswith("weight buffers outside the flatbuffer")
    path = tmp_path / "raw_fp16.tflite"
    path.write_bytes(raw)
    entry = {"file": path.name, "precision": "fp16", TFLITE_NEEDS_FIELD: needs}
    with pytest.raises(BackendUnavailableError, match=r"^raw_fp16\.tflite: \d+ weight buffers outside the flatbuffer \(2\.14\.0\) need TFLite >= 2\.14\.0"):
        check_runtime(path, entry, "tflite-runtime 2.13.0", "2.13.0")
    assert missing_runtime(entry, "2.14.0") is None


def test_inlining_writes_the_same_bytes_as_the_flatbuffer_librarys_own_packing(tiny_tflite_bundle):
    """inline_and_stamp hands the schema's Pack numpy vectors instead of bytearray slices (one copy instead of a Python
    call per byte); the file must be the one the library writes from the slices."""
    from ai_edge_litert.tools import flatbuffer_utils
    from ai_edge_quantizer import Quantizer

    from export.quantize import _recipe
    from export.tflite_compat import inline_and_stamp

    raw = bytes(Quantizer((tiny_tflite_bundle / "sentiment_fp32.tflite").read_bytes(), _recipe("fp16"))
                .quantize(None, enable_progress_report=False).quantized_model)
    assert inspect_tflite(raw)["buffers"]["external"] > 0
    fast = inline_and_stamp(raw)
    assert inspect_tflite(fast)["buffers"]["external"] == 0
    stamped = flatbuffer_utils.read_model_from_bytearray(bytearray(fast))
    library = flatbuffer_utils.read_model_from_bytearray(bytearray(raw))  # external data as bytearray slices
    assert any(isinstance(b.data, bytearray) for b in library.buffers)
    library.operatorCodes = stamped.operatorCodes  # the stamped op versions, the rest as ai-edge-quantizer wrote it
    assert bytes(flatbuffer_utils.convert_object_to_bytearray(library)) == fast


def test_the_old_interpreter_really_cannot_read_external_buffers(tiny_tflite_bundle, tmp_path):
    """The claim the inspection encodes, checked on tflite-runtime 2.13 itself (without the backend's check)."""
    from ai_edge_quantizer import Quantizer

    from export.quantize import _recipe

    python = _side_python("tflite-runtime-2.13")
    path = tmp_path / "raw_fp16.tflite"
    path.write_bytes(bytes(Quantizer((tiny_tflite_bundle / "sentiment_fp32.tflite").read_bytes(), _recipe("fp16"))
                           .quantize(None, enable_progress_report=False).quantized_model))
    run_once = ("import sys, numpy as np; from tflite_runtime.interpreter import Interpreter; z = np.zeros((1, 16), np.int32); "
                "Interpreter(model_path=sys.argv[1]).get_signature_runner('seq_16')(input_ids=z, attention_mask=z, token_type_ids=z)")
    done = subprocess.run([str(python), "-c", run_once, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "lacks data" in done.stderr


def test_a_profile_that_cannot_have_a_precision_records_it_and_says_so(tflite28_bundle, capsys):
    manifest = load_manifest(tflite28_bundle)
    assert manifest[TFLITE_PROFILE_FIELD] == {"min_runtime": "2.8.0", "profiles": ["2.8.0"], "unavailable": {
        "int8-static": "its int16 activations need RSQRT v3 (TFLite >= 2.15.0)"}}
    assert sorted(a["precision"] for a in manifest["artifacts"]) == ["fp16", "fp32", "int8-dynamic"]
    for entry in manifest["artifacts"]:
        assert entry[TFLITE_NEEDS_FIELD]["min_runtime"] == "2.8.0", entry["precision"]
    dynamic = next(a for a in manifest["artifacts"] if a["precision"] == "int8-dynamic")
    assert dynamic[TFLITE_NEEDS_FIELD]["ops"]["DEQUANTIZE"] == {"version": 5, "runtime": "2.7.0"}  # per-channel int8 weights
    assert "FULLY_CONNECTED" in dynamic[TFLITE_NEEDS_FIELD]["ops"] and dynamic[TFLITE_NEEDS_FIELD]["ops"]["FULLY_CONNECTED"]["version"] == 5


def test_the_cli_says_in_one_line_what_a_profile_leaves_out(tiny_classifier_dir, data_dir, tmp_path, capsys):
    from export.__main__ import main

    assert main(["tflite", str(tiny_classifier_dir), "--out", str(tmp_path / "b"), "--task", "sentiment", "--buckets", "16",
                 "--precisions", "int8-static", "--min-runtime", "2.14", "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr()
    lines = [line for line in (err.out + err.err).splitlines() if "int8-static" in line]
    assert any(line.startswith("tflite: int8-static not exported for --min-runtime 2.14.0: its int16 activations need RSQRT v3") for line in lines)
    assert not (tmp_path / "b").exists()  # nothing else was asked for, so nothing is written
    assert main(["tflite", str(tiny_classifier_dir), "--out", str(tmp_path / "c"), "--min-runtime", "two"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --min-runtime 'two' is not a TFLite version")


@pytest.mark.parametrize("env", OLD_ENVS)
def test_the_2_8_profile_loads_and_matches_pytorch_in_the_old_interpreter(tflite28_bundle, tiny_classifier_dir, env):
    got = _classify_in(_side_python(env), tflite28_bundle)
    reference = _torch_logits(tiny_classifier_dir, tflite28_bundle)
    assert sorted(got) == ["fp16", "fp32", "int8-dynamic"]
    for precision, tolerance in (("fp32", 1e-5), ("fp16", 1e-3), ("int8-dynamic", 2e-2)):
        assert not isinstance(got[precision], str), got[precision]
        np.testing.assert_allclose(np.array(got[precision]).reshape(reference.shape), reference, atol=tolerance, err_msg=f"{env} {precision}")


@pytest.mark.parametrize("env", OLD_ENVS)
def test_the_litert_profile_float_files_load_and_match_pytorch_in_the_old_interpreter(tiny_tflite_bundle, tiny_classifier_dir, env):
    """The LiteRT profile's fp32 and fp16 files need only TFLite 2.8; its int8 files are refused in one line."""
    got = _classify_in(_side_python(env), tiny_tflite_bundle)
    reference = _torch_logits(tiny_classifier_dir, tiny_tflite_bundle)
    for precision, tolerance in (("fp32", 1e-5), ("fp16", 1e-3)):
        np.testing.assert_allclose(np.array(got[precision]).reshape(reference.shape), reference, atol=tolerance, err_msg=f"{env} {precision}")
    assert got["int8-dynamic"].startswith("refused: sentiment_int8-dynamic.tflite: ")
