"""The int8-words4 precision: a student distilled with its word table on the 4-bit grid, exported with that table
packed two codes per byte, through the real interpreters of the verify matrix (TFLite 2.8 included)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mobile_app.runtime.errors import UserError
from distill.word_grid import from_codes, grid_codes, grid_error, on_grid, pack, snap, unpack
from mobile_app.runtime.backend_factory import pick_artifact
from mobile_app.runtime.bundle import load_manifest
from mobile_app.runtime.contract import TFLITE_NEEDS_FIELD
from tests.conftest import TINY_BUCKETS
from tests.test_tflite_compat import OLD_ENVS, _classify_in, _side_python, _torch_logits
from tests.tiny_models import make_tiny_bert


def test_the_grid_snaps_packs_and_unpacks_exactly():
    table = torch.randn(50, 12) * torch.rand(50, 1)
    table[3] = 0.0                                             # a zero row: scale 0, stays zero
    assert not on_grid(table) and grid_error(table) > 0.1
    grid = snap(table)
    assert on_grid(grid) and torch.equal(grid[3], torch.zeros(12))
    codes, scales = grid_codes(grid)
    assert int(codes.min()) >= 0 and int(codes.max()) <= 15 and len(torch.unique(codes[0])) > 4
    assert torch.allclose(from_codes(codes, scales), grid, atol=1e-6)
    assert (grid - table).abs().max() <= scales.max() / 2 + 1e-6  # nearest level: at most half a step
    packed = pack(codes)
    assert packed.dtype == torch.int8 and packed.shape == (50, 6)
    assert torch.equal(unpack(packed), codes)
    with pytest.raises(ValueError, match="even width"):
        pack(codes[:, :5])


@pytest.fixture(scope="module")
def grid_student(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("grid_cls"), word_bits=4)


@pytest.fixture(scope="module")
def words4_bundle(grid_student, tmp_path_factory):
    """The grid student exported with the default profile (TFLite 2.8): fp32, int8-dynamic and int8-words4."""
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("words4") / "sentiment"
    export_tflite(grid_student, out, precisions=("fp32", "int8-dynamic", "int8-words4"), task="sentiment",
                  buckets=TINY_BUCKETS, progress=False)
    return out


def test_words4_is_smaller_needs_only_tflite_2_8_and_is_what_the_app_opens(words4_bundle):
    manifest = load_manifest(words4_bundle)
    sizes = {a["precision"]: a["size_bytes"] for a in manifest["artifacts"]}
    # the tiny model is mostly its 30,522-row word table: half a byte per weight instead of one
    assert sizes["int8-words4"] < 0.75 * sizes["int8-dynamic"]
    words4 = next(a for a in manifest["artifacts"] if a["precision"] == "int8-words4")
    needs = words4[TFLITE_NEEDS_FIELD]
    assert needs["min_runtime"] == "2.8.0"
    assert {"FLOOR", "CONCATENATION", "CAST", "EMBEDDING_LOOKUP"} <= set(needs["ops"])
    assert "4-bit grid" in words4["notes"]
    assert pick_artifact(manifest)["precision"] == "int8-words4"
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["precision"] != "int8-words4"]
    assert pick_artifact(manifest)["precision"] == "int8-dynamic"


@pytest.mark.parametrize("env", ("ai-edge-litert-2.3",) + OLD_ENVS)
def test_words4_answers_as_int8_dynamic_in_every_interpreter(words4_bundle, grid_student, env):
    """The packed table is the student's own: int8-words4 differs from PyTorch only by its int8 encoder, like
    int8-dynamic; fp32 of the same student matches to float rounding."""
    import sys
    from pathlib import Path

    python = Path(sys.executable) if env == "ai-edge-litert-2.3" else _side_python(env)
    got = _classify_in(python, words4_bundle)
    reference = _torch_logits(grid_student, words4_bundle)
    assert sorted(got) == ["fp32", "int8-dynamic", "int8-words4"], got
    np.testing.assert_allclose(np.array(got["fp32"]).reshape(reference.shape), reference, atol=1e-5)
    words4 = np.array(got["int8-words4"]).reshape(reference.shape)
    dynamic = np.array(got["int8-dynamic"]).reshape(reference.shape)
    np.testing.assert_allclose(words4, reference, atol=2e-2, err_msg=env)
    np.testing.assert_allclose(words4, dynamic, atol=1e-3, err_msg=env)  # same int8 weights; only the table's storage differs


def test_a_student_off_the_grid_gets_no_words4_and_is_told_why(tiny_classifier_dir, tmp_path, capsys):
    from export.__main__ import main

    out = tmp_path / "b"
    assert main(["tflite", str(tiny_classifier_dir), "--out", str(out), "--task", "sentiment", "--buckets", "16",
                 "--precisions", "fp32", "int8-words4"]) == 0
    text = capsys.readouterr()
    lines = [line for line in (text.out + text.err).splitlines() if "int8-words4" in line]
    assert any(line.startswith("tflite: int8-words4 not exported: the student's word table is not on the 4-bit grid "
                               "(distil it with --set student_word_bits=4)") for line in lines), lines
    assert [a["precision"] for a in load_manifest(out)["artifacts"]] == ["fp32"]
    # asked for alone, it is a one-line error and nothing is written
    assert main(["tflite", str(tiny_classifier_dir), "--out", str(tmp_path / "c"), "--task", "sentiment", "--buckets", "16",
                 "--precisions", "int8-words4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: int8-words4 cannot be made from") and len(err.splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_a_run_with_student_word_bits_distils_around_a_fixed_grid_table(tiny_spam_dir, data_dir, tmp_path):
    from distill.stages import REPORT_FILE, run_task
    from tests.test_distill_run import FAST, TINY_STUDENT

    torch.set_num_threads(1)
    student_dir = run_task("spam", data_dir, tmp_path / "out", teacher=str(tiny_spam_dir), student=TINY_STUDENT,
                           max_train_examples=96, max_eval_examples=48, init="teacher-layers",
                           overrides=dict(FAST, student_word_bits=4))
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert report["settings"]["student_word_bits"] == 4
    assert report["student"]["init"]["word_table"] == "4-bit grid, fixed"
    trained, teacher = load_file(str(student_dir / "model.safetensors")), load_file(str(tiny_spam_dir / "model.safetensors"))
    # the table is the teacher's (as wide as the student) moved to the grid, and training left it there
    table = trained["bert.embeddings.word_embeddings.weight"]
    assert on_grid(table) and torch.equal(table, snap(teacher["bert.embeddings.word_embeddings.weight"]))
    # while the layer copied from the teacher's last one trained around it
    query = "bert.encoder.layer.{}.attention.self.query.weight"
    assert not torch.equal(trained[query.format(0)], teacher[query.format(1)])
    # a random table fixed on the grid would be noise the student cannot learn past: refused before any work
    with pytest.raises(UserError, match="student_word_bits would keep a random word table"):
        run_task("spam", data_dir, tmp_path / "bad", teacher=str(tiny_spam_dir), student=TINY_STUDENT, init="random",
                 overrides=dict(FAST, student_word_bits=4))
    with pytest.raises(UserError, match="student_word_bits must be 4 or none"):
        run_task("spam", data_dir, tmp_path / "bad", teacher=str(tiny_spam_dir), student=TINY_STUDENT,
                 overrides=dict(FAST, student_word_bits=3))
    assert not (tmp_path / "bad").exists()


def test_the_shipped_matrix_runs_words4_on_every_runtime_and_the_rest_on_litert(words4_bundle, data_dir, tmp_path):
    import shutil

    from export.__main__ import main
    from tests.conftest import side_runtime
    from tests.test_runtime_matrix import THREE

    for name in THREE:
        side_runtime(name)
    bundle = shutil.copytree(words4_bundle, tmp_path / "sentiment")
    assert main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "24", "--runtimes", *THREE,
                 "--matrix", "shipped"]) == 0
    report = json.loads((bundle / "parity.json").read_text())
    ran = sorted((row["name"], row["runtime"]) for row in report["artifacts"])
    # each runtime runs the words4 file it opens (LiteRT the LiteRT profile's, the old ones the 2.8 one); the rest LiteRT alone
    old, fast = "sentiment_int8-words4.tflite", "sentiment_int8-words4_rt2.22.tflite"
    assert ran == sorted([(f"sentiment_{p}.tflite", THREE[0]) for p in ("fp32", "int8-dynamic", "int8-dynamic_rt2.22")]
                         + [(old, THREE[0]), (fast, THREE[0])] + [(old, name) for name in THREE[1:]])
    assert all(row["passed"] and row["examples"] == 24 for row in report["artifacts"])
    with pytest.raises(SystemExit) as bad:  # argparse's one-line usage error
        main(["verify", str(bundle), "--matrix", "some"])
    assert bad.value.code == 2


def test_coreml_words4_stores_the_grid_table_per_row_and_answers_as_int8(tmp_path):
    """Core ML: the grid table as a 16-entry palette per row, every other weight int8, run by the MIL evaluator."""
    from export.coreml import export_coreml
    from export.wrapper import ExportableBert, load_student
    from tests.test_coreml import BUCKETS, _backend, _encodings, _entry, _max_diff, _sharpened, _torch_outputs

    # 128 wide: a row's 16-entry fp16 palette (32 bytes) pays off only on rows wider than the tiny models' 32
    sharp = _sharpened(make_tiny_bert(tmp_path / "tiny", hidden=128, intermediate=128), tmp_path / "sharp")
    model = load_student(sharp)
    table = model.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        table.copy_(snap(table))
    model.save_pretrained(sharp, safe_serialization=True)
    manifest = export_coreml(sharp, tmp_path / "b", variants=("int8", "int8-words4"), task="sentiment", buckets=BUCKETS)
    sizes = {a["precision"]: a["size_bytes"] for a in manifest["artifacts"]}
    assert sizes["int8-words4"] < 0.85 * sizes["int8"]
    encodings = _encodings(8, 32)
    reference = _torch_outputs(ExportableBert(load_student(sharp)), encodings)
    got = {p: [_backend(tmp_path / "b", _entry(manifest, p)).run(*e) for e in encodings] for p in ("int8", "int8-words4")}
    assert _max_diff(reference, got["int8-words4"]) <= 0.1
    assert _max_diff(got["int8"], got["int8-words4"]) <= 0.05


def test_coreml_words4_of_a_student_off_the_grid_is_refused_in_one_line(tiny_classifier_dir, tmp_path):
    from export.coreml import export_coreml

    with pytest.raises(UserError, match="int8-words4 cannot be made from .*not on the 4-bit grid"):
        export_coreml(tiny_classifier_dir, tmp_path / "b", variants=("int8-words4",), task="sentiment", buckets=TINY_BUCKETS)
    assert not (tmp_path / "b").exists()
