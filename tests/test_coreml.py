"""Core ML export and its numerical check on Linux: tiny students converted for real, run by the MIL evaluator.

The students are the conftest tiny models with their weights redrawn at a larger scale (std 0.2), so logits
are O(1) and a wrong mask or a swapped weight moves them far past the parity thresholds.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mobile_app.runtime.errors import UserError
from export.__main__ import main
from export.coreml import COMPRESS_MIN_ELEMENTS, convert_wrapper, export_coreml
from export.verify.coreml_eval import CoreMLEvaluatorBackend, MilProgramEvaluator
from export.wrapper import ExportableBert, load_student
from mobile_app.runtime.bundle import BundleError, load_manifest, sha256_path

BUCKETS = (16, 32)
QA_BUCKETS = (64, 128)


def _sharpened(src: Path, dst: Path, std: float = 0.2, seed: int = 1) -> Path:
    """A copy of a tiny student with every Linear/Embedding weight redrawn from N(0, std)."""
    shutil.copytree(src, dst)
    model = load_student(dst)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
            if isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * std)
    model.save_pretrained(dst, safe_serialization=True)
    return dst


def _encodings(count: int, length: int, vocab: int = 30522, seed: int = 0, segments: bool = False):
    """Random (input_ids, attention_mask, token_type_ids) of `length` tokens, each with its own amount of padding."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        real = max(2, length - 1 - (i * 7) % length)
        ids = np.zeros(length, np.int32)
        ids[:real] = rng.integers(1000, vocab, real)
        mask = (np.arange(length) < real).astype(np.int32)
        types = ((np.arange(length) >= real // 2) & (mask == 1)).astype(np.int32) if segments else np.zeros(length, np.int32)
        out.append((ids, mask, types))
    return out


def _torch_outputs(wrapper: ExportableBert, encodings) -> list[dict[str, np.ndarray]]:
    ids, mask, types = (torch.from_numpy(np.stack(column)) for column in zip(*encodings))
    with torch.no_grad():
        out = wrapper(ids, mask, types)
    if wrapper.head == "classification":
        return [{"probabilities": row} for row in torch.softmax(out, -1).numpy()]
    return [{"start_logits": s, "end_logits": e} for s, e in zip(out[0].numpy(), out[1].numpy())]


def _max_diff(reference: list[dict], got: list[dict]) -> float:
    return max(float(np.max(np.abs(np.asarray(r[k], np.float64) - np.asarray(g[k], np.float64)))) for r, g in zip(reference, got) for k in r if k != "label")


def _entry(manifest: dict, precision: str, flexible: str = "enumerated") -> dict:
    return next(a for a in manifest["artifacts"] if a["format"] == "coreml" and a["precision"] == precision and a["flexible"] == flexible)


def _backend(bundle: Path, entry: dict, **kwargs) -> CoreMLEvaluatorBackend:
    return CoreMLEvaluatorBackend(bundle / entry["file"], entry, **kwargs)


@pytest.fixture(scope="module")
def sharp_classifier(tiny_classifier_dir, tmp_path_factory) -> Path:
    return _sharpened(tiny_classifier_dir, tmp_path_factory.mktemp("sharp") / "classifier")


@pytest.fixture(scope="module")
def sharp_qa(tiny_qa_dir, tmp_path_factory) -> Path:
    return _sharpened(tiny_qa_dir, tmp_path_factory.mktemp("sharp") / "qa")


@pytest.fixture(scope="module")
def cls_bundle(sharp_classifier, tmp_path_factory):
    """Sentiment bundle: fp16, fp32, int8 and 4-bit palettized, buckets 16/32 (enumerated)."""
    out = tmp_path_factory.mktemp("coreml_cls") / "sentiment"
    manifest = export_coreml(sharp_classifier, out, variants=("fp16", "fp32", "int8", "palettize4"), task="sentiment", buckets=BUCKETS)
    return out, manifest


@pytest.fixture(scope="module")
def qa_bundle(sharp_qa, tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml_qa") / "qa"
    return out, export_coreml(sharp_qa, out, variants=("fp16",), task="qa", buckets=QA_BUCKETS)


def test_classifier_variants_agree_with_pytorch(cls_bundle, sharp_classifier):
    bundle, manifest = cls_bundle
    assert load_manifest(bundle, task="sentiment")["files"]  # every file present with its hash
    wrapper = ExportableBert(load_student(sharp_classifier))
    encodings = _encodings(12, 32) + _encodings(6, 16, seed=1) + _encodings(4, 11, seed=2)
    reference = _torch_outputs(wrapper, encodings[:12])
    diffs = {}
    for precision in ("fp32", "fp16", "int8", "palettize4"):
        entry = _entry(manifest, precision)
        backend = _backend(bundle, entry)
        got = [backend.run(*e) for e in encodings]
        assert all(g["probabilities"].shape == (2,) and np.isfinite(g["probabilities"]).all() for g in got)
        assert [g["label"] for g in got] == [("negative", "positive")[int(np.argmax(g["probabilities"]))] for g in got]
        diffs[precision] = _max_diff(reference, got[:12])
        # Shorter inputs are padded to bucket 16; they must match PyTorch on the same padded bucket.
        short = [backend.run(*e) for e in encodings[12:]]
        padded16 = [tuple(np.pad(a, (0, 16 - len(a))) for a in e) for e in encodings[12:]]
        diffs[precision] = max(diffs[precision], _max_diff(_torch_outputs(wrapper, padded16), short))
    assert diffs["fp32"] <= 1e-5
    assert 1e-5 < diffs["fp16"] <= 1e-2  # fp16 rounding is really applied, and stays small
    assert diffs["int8"] <= 0.1 and diffs["palettize4"] <= 0.5
    sizes = {a["precision"]: a["size_bytes"] for a in manifest["artifacts"]}
    assert sizes["palettize4"] < sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert all(a["conversion_seconds"] > 0 and a["buckets"] == list(BUCKETS) for a in manifest["artifacts"])


def test_qa_fp16_agrees_and_stays_finite_on_heavily_padded_inputs(qa_bundle, sharp_qa):
    bundle, manifest = qa_bundle
    entry = _entry(manifest, "fp16")
    backend = _backend(bundle, entry)
    wrapper = ExportableBert(load_student(sharp_qa))
    # 2..9 real tokens in a 64 bucket: most of each row is padding, masked with -1e4 in fp16.
    encodings = [tuple(np.pad(a, (0, 64 - len(a))) for a in e) for e in _encodings(8, 9, segments=True)]
    got = [backend.run(*e) for e in encodings]
    for g in got:
        assert g["start_logits"].shape == (64,) and np.isfinite(g["start_logits"]).all() and np.isfinite(g["end_logits"]).all()
    assert _max_diff(_torch_outputs(wrapper, encodings), got) <= 1e-2
    long = _encodings(3, 100, seed=3, segments=True)  # bucket 128, trimmed back to 100 per-token outputs
    got_long = [backend.run(*e) for e in long]
    assert got_long[0]["end_logits"].shape == (100,)
    padded = [tuple(np.pad(a, (0, 28)) for a in e) for e in long]
    assert _max_diff([{k: v[:100] for k, v in r.items()} for r in _torch_outputs(wrapper, padded)], got_long) <= 1e-2


def test_batched_run_equals_single_runs_and_kernels_match_coremltools_reference(cls_bundle, qa_bundle):
    bundle, manifest = cls_bundle
    encodings = _encodings(10, 32) + _encodings(5, 16, seed=4) + _encodings(3, 9, seed=5)
    for precision in ("fp32", "fp16"):
        entry = _entry(manifest, precision)
        fast = _backend(bundle, entry, batch_size=4)
        batched = fast.run_batch(encodings)
        single = [fast.run(*e) for e in encodings]
        assert _max_diff(single, batched) <= (1e-6 if precision == "fp32" else 1e-3)  # BLAS sums by batch shape
        # Every op through coremltools' own value_inference instead of the kernels here.
        reference = _backend(bundle, entry, reference=True).run_batch(encodings[:6])
        assert _max_diff(reference, batched[:6]) <= (1e-5 if precision == "fp32" else 2e-3)
    bundle, manifest = qa_bundle
    qa = _backend(bundle, _entry(manifest, "fp16"))
    encodings = _encodings(4, 70, segments=True) + _encodings(9, 30, segments=True, seed=6)
    # fp16 logits of O(1): a different GEMM summation order may move a value by a few fp16 steps (1e-3 each).
    # By default a batch holds BATCH_TOKENS (512) tokens: the 4 windows of the 128 bucket in one, the 9 of the 64 one in 8 + 1.
    assert _max_diff([qa.run(*e) for e in encodings], qa.run_batch(encodings)) <= 1e-2


def test_fp16_rounding_keeps_numpys_float16_grid_bit_for_bit():
    from export.verify.coreml_eval import round_to_fp16

    values = np.random.default_rng(0).normal(scale=300.0, size=(3, 5, 4097)).astype(np.float32)
    values.flat[:12] = [65504.0, 65519.0, 65520.0, -7e4, 6.1e-5, 5.9e-8, 2.9e-8, 1e-9, -0.0, np.inf, -np.inf, np.nan]
    strided = values.transpose(2, 0, 1)  # the evaluator also rounds transposed views
    with np.errstate(over="ignore"):
        for array in (values, strided, values.astype(np.float64)):
            expected = array.astype(np.float16).astype(np.float32)
            got = round_to_fp16(array)
            assert got.dtype == np.float32 and got.shape == array.shape
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))  # NaN and signed zero included


def test_spec_carries_labels_metadata_and_flexible_lengths(cls_bundle, qa_bundle):
    import coremltools as ct

    bundle, manifest = cls_bundle
    entry = _entry(manifest, "fp16")
    assert entry["outputs"] == ["label", "label_probs"] and entry["labels"] == ["negative", "positive"]
    assert entry["deployment_target"] == "iOS18" and entry["compute_precision"] == "fp16"
    spec = ct.models.MLModel(str(bundle / entry["file"]), skip_model_load=True).get_spec()
    description = spec.description
    assert description.predictedFeatureName == "label" and description.predictedProbabilitiesName == "label_probs"
    assert [i.name for i in description.input] == ["input_ids", "attention_mask", "token_type_ids"]
    shapes = sorted(tuple(s.shape) for s in description.input[0].type.multiArrayType.enumeratedShapes.shapes)
    assert shapes == [(1, 16), (1, 32)]
    meta = description.metadata
    assert meta.author == "tinybert-mobile" and meta.license == "Apache-2.0" and "sentiment" in meta.shortDescription
    user = dict(meta.userDefined)
    assert {k: user[k] for k in ("task", "vocab", "do_lower_case", "buckets", "labels", "max_seq_length")} == {
        "task": "sentiment", "vocab": "vocab.txt", "do_lower_case": "true", "buckets": "16,32", "labels": "negative,positive", "max_seq_length": "32"}
    program = MilProgramEvaluator(bundle / entry["file"])
    classify = next(op for op in program.ops if op.op_type == "classify")
    assert list(classify.classes.val) == ["negative", "positive"]
    assert program.sequence_lengths() == {"enumerated": [16, 32]}
    compressed = {op.op_type for op in MilProgramEvaluator(bundle / _entry(manifest, "int8")["file"]).ops}
    assert "constexpr_blockwise_shift_scale" in compressed
    assert "constexpr_lut_to_dense" in {op.op_type for op in MilProgramEvaluator(bundle / _entry(manifest, "palettize4")["file"]).ops}
    qa_dir, qa_manifest = qa_bundle
    qa_entry = _entry(qa_manifest, "fp16")
    qa_spec = ct.models.MLModel(str(qa_dir / qa_entry["file"]), skip_model_load=True).get_spec()
    assert [o.name for o in qa_spec.description.output] == ["start_logits", "end_logits"] == qa_entry["outputs"]
    assert {"task", "doc_stride", "max_query_length", "max_answer_length"} <= set(qa_spec.description.metadata.userDefined)


def test_cli_adds_a_range_variant_and_keeps_the_others(cls_bundle, sharp_classifier, tmp_path, capsys):
    import coremltools as ct

    bundle = shutil.copytree(cls_bundle[0], tmp_path / "sentiment")
    code = main(["coreml", str(sharp_classifier), "--out", str(bundle), "--variants", "fp16", "int8", "--task", "sentiment",
                 "--buckets", *map(str, BUCKETS), "--range"])
    assert code == 0 and "model_fp16_range.mlpackage" in capsys.readouterr().out
    manifest = load_manifest(bundle)
    assert {a["file"] for a in manifest["artifacts"]} >= {"model_fp16.mlpackage", "model_int8.mlpackage", "model_fp16_range.mlpackage"}
    entry = _entry(manifest, "fp16", "range")
    assert entry["deployment_target"] == "iOS16"
    spec = ct.models.MLModel(str(bundle / entry["file"]), skip_model_load=True).get_spec()
    assert spec.specificationVersion == 7  # iOS 16
    backend = _backend(bundle, entry)
    assert backend.program.sequence_lengths() == {"range": (1, 32)}
    encodings = _encodings(6, 32)
    reference = _backend(bundle, _entry(manifest, "fp16")).run_batch(encodings)
    assert _max_diff(reference, backend.run_batch(encodings)) <= 1e-3
    int8 = _backend(bundle, _entry(manifest, "int8", "range"))  # iOS 16 compression: constexpr_affine_dequantize
    assert "constexpr_affine_dequantize" in {op.op_type for op in int8.program.ops}
    assert _max_diff(reference, int8.run_batch(encodings)) <= 0.1


def test_wrong_mask_value_is_caught_on_padded_inputs_only(sharp_classifier, tmp_path):
    model = load_student(sharp_classifier)
    broken = convert_wrapper(ExportableBert(model, mask_value=0.0), ("negative", "positive"), list(BUCKETS), "enumerated", "fp32")
    broken.save(str(tmp_path / "broken.mlpackage"))
    backend = CoreMLEvaluatorBackend(tmp_path / "broken.mlpackage", {"buckets": list(BUCKETS)})
    correct = ExportableBert(model)
    rng = np.random.default_rng(3)
    full = [(rng.integers(1000, 30000, 16).astype(np.int32), np.ones(16, np.int32), np.zeros(16, np.int32)) for _ in range(4)]
    assert _max_diff(_torch_outputs(correct, full), [backend.run(*e) for e in full]) <= 1e-5  # nothing to mask: agrees
    padded = _encodings(6, 32, seed=7)[1:]
    assert _max_diff(_torch_outputs(correct, padded), [backend.run(*e) for e in padded]) > 1e-2  # padding attended: caught


def _swap_in_weight_file(package: Path, original: np.ndarray, replacement: np.ndarray) -> None:
    """Overwrite one weight blob inside an .mlpackage with another tensor's bytes (same shape and dtype)."""
    weights = next(package.rglob("weight.bin"))
    data = bytearray(weights.read_bytes())
    at = data.find(original.tobytes())
    assert at >= 0, "weight blob not found in weight.bin"
    data[at:at + original.nbytes] = replacement.tobytes()
    weights.write_bytes(bytes(data))


def test_swapped_weight_fails_verify_and_the_rest_pass(cls_bundle, sharp_classifier, data_dir, tmp_path, capsys):
    bundle = shutil.copytree(cls_bundle[0], tmp_path / "sentiment")
    model = load_student(sharp_classifier)
    attention = model.bert.encoder.layer[0].attention.self
    query, key = (w.detach().numpy().astype(np.float32) for w in (attention.query.weight, attention.key.weight))
    _swap_in_weight_file(bundle / "model_fp32.mlpackage", query, key)
    with pytest.raises(BundleError, match="tampered or corrupted"):
        load_manifest(bundle)
    # An exporter bug rather than tampering: the manifest hash matches the broken file, so only numbers can tell.
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"]["model_fp32.mlpackage"] = sha256_path(bundle / "model_fp32.mlpackage")
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    # 4-bit palettes of random N(0, 0.2) weights really do flip some near-tied predictions: not checked here.
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "30", "--threshold", "coreml/int8.min_agreement=none",
                 "--threshold", "coreml/palettize4.min_agreement=none", "--threshold", "coreml/palettize4.max_metric_gap=none"])
    err = capsys.readouterr().err
    assert code == 1
    assert "parity FAILED: model_fp32.mlpackage: max abs diff of probabilities" in err
    report = json.loads((bundle / "parity.json").read_text())
    rows = {row["precision"]: row for row in report["artifacts"]}
    assert [row["precision"] for row in report["artifacts"] if not row["passed"]] == ["fp32"]
    assert rows["fp32"]["max_abs_diff"] > 1e-2
    assert rows["fp16"]["passed"] and rows["fp16"]["max_abs_diff"] <= 1e-2 and rows["fp16"]["compared"] == "probabilities"


def _mil_package(path: Path, build, precision: str = "fp32") -> Path:
    """Save a one-input ML Program written with coremltools' MIL builder."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    program = mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.iOS18)(build)
    model = ct.convert(program, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18,
                       compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    model.save(str(path))
    return path


def test_unknown_op_is_refused_by_name(tmp_path):
    from coremltools.converters.mil import Builder as mb

    package = _mil_package(tmp_path / "silu.mlpackage", lambda x: mb.silu(x=x, name="act"))
    with pytest.raises(BundleError, match=r"op 'silu' \(act\) has no evaluator implementation"):
        MilProgramEvaluator(package)


def test_nan_or_inf_output_names_the_op_that_first_produced_it(tmp_path):
    from coremltools.converters.mil import Builder as mb

    def build(x):
        scaled = mb.mul(x=x, y=np.float32(1000.0), name="scale")
        return mb.add(x=mb.exp(x=scaled, name="blow_up"), y=np.float32(1.0), name="shift")

    evaluator = MilProgramEvaluator(_mil_package(tmp_path / "overflow.mlpackage", build, "fp16"))
    ok = evaluator({"x": np.full((1, 4), -0.01, np.float32)})
    assert np.isfinite(next(iter(ok.values()))).all()
    with pytest.raises(BundleError, match=r"op 'exp' \(blow_up.*\) produced NaN/inf"):
        evaluator({"x": np.full((1, 4), 0.02, np.float32)})  # exp(20) = 4.9e8 > fp16 max


def test_bad_input_is_one_clear_line(sharp_classifier, tmp_path, capsys):
    with pytest.raises(UserError, match="unknown Core ML variant int3"):
        export_coreml(sharp_classifier, tmp_path / "b", variants=("int3",), task="sentiment")
    with pytest.raises(UserError, match="choose 'enumerated' or 'range'"):
        export_coreml(sharp_classifier, tmp_path / "b", task="sentiment", flexible="ragged")
    with pytest.raises(UserError, match="longer than the model's 512 position embeddings"):
        export_coreml(sharp_classifier, tmp_path / "b", task="sentiment", buckets=(16, 1024))
    with pytest.raises(UserError, match="needs a qa model"):
        export_coreml(sharp_classifier, tmp_path / "b", task="qa")
    assert not (tmp_path / "b").exists()
    assert main(["coreml", str(tmp_path / "missing"), "--out", str(tmp_path / "b"), "--task", "sentiment"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: ")
    (tmp_path / "not.mlpackage").mkdir()
    with pytest.raises(BundleError, match="is not an .mlpackage"):
        MilProgramEvaluator(tmp_path / "not.mlpackage")
    assert COMPRESS_MIN_ELEMENTS <= 32 * 32  # the tiny models' matrices are compressed too
