"""End-to-end distillation runs with tiny random teachers on small slices of the real data."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from distill.stages import REPORT_FILE, run_general, run_task
from mobile_app.runtime.errors import UserError
from distill.trainer import Interrupted, autocast_dtype, cpu_kernels_use_bf16, make_accelerator, training_device
from export.wrapper import load_student
from tests.conftest import REPO_ROOT
from tests.tiny_models import make_tiny_bert

TINY_STUDENT = {"layers": 1, "hidden": 32, "heads": 4, "intermediate": 64}
FAST = dict(max_seq_length=32, batch_size=16, intermediate_epochs=2, prediction_epochs=1, intermediate_lr=1e-3, prediction_lr=1e-3)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight the other processes for the cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spam(teacher, data_dir, out, **kwargs):
    args = dict(teacher=str(teacher), student=TINY_STUDENT, max_train_examples=96, max_eval_examples=48, init="random",
                overrides=dict(FAST))
    args.update(kwargs)
    return run_task("spam", data_dir, out, **args)


def test_tiny_run_lowers_loss_and_writes_a_loadable_folder(tiny_spam_dir, data_dir, tmp_path):
    student_dir = _spam(tiny_spam_dir, data_dir, tmp_path / "out")
    assert student_dir == tmp_path / "out" / "student"
    report = json.loads((student_dir / REPORT_FILE).read_text())
    phase = report["phases"]["intermediate"]
    assert phase["last_loss"] < phase["first_loss"]
    assert report["layer_mapping"] == [0, 2]
    assert report["teacher"]["fine_tuned"] is False and report["teacher"]["metrics"]["accuracy"] > 0
    assert report["student"]["parameters"] < report["teacher"]["parameters"]
    assert report["data"] == {"train_examples": 96, "train_features": 96, "eval_examples": 48}
    model = load_student(student_dir)
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.id2label == {0: "ham", 1: "spam"} and model.config.num_hidden_layers == 1
    assert (student_dir / "vocab.txt").read_text().splitlines()[101] == "[CLS]"
    assert not (tmp_path / "out" / "checkpoints").exists()
    # a second identical call is skipped (same run key) and leaves the folder untouched
    stamp = (student_dir / "model.safetensors").stat().st_mtime_ns
    assert _spam(tiny_spam_dir, data_dir, tmp_path / "out") == student_dir
    assert (student_dir / "model.safetensors").stat().st_mtime_ns == stamp


def test_resume_after_interruption_gives_the_same_weights(tiny_spam_dir, data_dir, tmp_path):
    straight = load_file(str(_spam(tiny_spam_dir, data_dir, tmp_path / "a") / "model.safetensors"))
    with pytest.raises(Interrupted):
        _spam(tiny_spam_dir, data_dir, tmp_path / "b", stop_after_epochs=1)
    assert not (tmp_path / "b" / "student").exists()
    assert (tmp_path / "b" / "checkpoints" / "intermediate" / "epoch-1" / "model.safetensors").is_file()
    resumed = load_file(str(_spam(tiny_spam_dir, data_dir, tmp_path / "b", resume=True) / "model.safetensors"))
    # interrupted between the phases: the finished intermediate phase is loaded from its last checkpoint
    with pytest.raises(Interrupted):
        _spam(tiny_spam_dir, data_dir, tmp_path / "c", stop_after_epochs=2)
    between = load_file(str(_spam(tiny_spam_dir, data_dir, tmp_path / "c", resume=True) / "model.safetensors"))
    assert straight.keys() == resumed.keys() == between.keys()
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name
        assert torch.equal(tensor, between[name]), name


def test_resume_inside_the_prediction_phase_gives_the_same_weights(tiny_spam_dir, data_dir, tmp_path):
    """The teacher's logits are cached in memory for the prediction phase: a resume recomputes the same cache."""
    two_epochs = dict(FAST, prediction_epochs=2)
    straight = load_file(str(_spam(tiny_spam_dir, data_dir, tmp_path / "a", overrides=two_epochs) / "model.safetensors"))
    with pytest.raises(Interrupted):
        _spam(tiny_spam_dir, data_dir, tmp_path / "b", overrides=two_epochs, stop_after_epochs=3)
    assert (tmp_path / "b" / "checkpoints" / "prediction" / "epoch-1" / "model.safetensors").is_file()
    resumed = load_file(str(_spam(tiny_spam_dir, data_dir, tmp_path / "b", overrides=two_epochs, resume=True) / "model.safetensors"))
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name


def test_bf16_training_autocasts_the_forward_passes_and_keeps_float32_weights(tiny_spam_dir, data_dir, tmp_path):
    fp32 = load_file(str(_spam(tiny_spam_dir, data_dir, tmp_path / "fp32") / "model.safetensors"))
    student_dir = _spam(tiny_spam_dir, data_dir, tmp_path / "bf16", overrides=dict(FAST, train_precision="bf16"))
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert {phase["dtype"] for phase in report["phases"].values()} == {"bfloat16"}
    assert report["phases"]["intermediate"]["last_loss"] < report["phases"]["intermediate"]["first_loss"]
    bf16 = load_file(str(student_dir / "model.safetensors"))
    assert all(t.dtype == torch.float32 and bool(torch.isfinite(t).all()) for t in bf16.values())
    # the same run in float32 lands elsewhere: the bf16 forward passes really ran
    assert any(not torch.equal(t, fp32[name]) for name, t in bf16.items())


def test_auto_precision_is_bf16_only_where_the_device_computes_it(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert autocast_dtype("auto", cpu) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    # The same chip with torch's kernels held to AVX2 (ATEN_CPU_CAPABILITY=avx2) runs bf16 slower than float32.
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert autocast_dtype("auto", cpu) is None
    assert cpu_kernels_use_bf16("AMX", True) and not cpu_kernels_use_bf16("AVX512", False) and not cpu_kernels_use_bf16("DEFAULT", True)


def test_training_runs_on_the_gpu_torch_sees_without_a_flag():
    assert training_device(cuda=True, mps=True) == "cuda"
    assert training_device(cuda=False, mps=True) == "mps"
    assert training_device(cuda=False, mps=False) == "cpu"
    assert training_device(cuda=True, mps=False, force_cpu=True) == "cpu"
    if not torch.cuda.is_available():
        assert make_accelerator().device.type in ("cpu", "mps")


def test_qa_teacher_is_fine_tuned_once_then_cached_and_general_init_works(tiny_base_dir, data_dir, tmp_path):
    """A teacher without a QA head gets one fine-tuned (cached in OUT/teacher/); general distillation feeds the student."""
    settings = dict(max_seq_length=96, doc_stride=32, max_query_length=24, batch_size=16, teacher_epochs=1,
                    general_epochs=1, general_max_texts=40, intermediate_epochs=1, prediction_epochs=1)
    common = dict(teacher=str(tiny_base_dir), student=TINY_STUDENT, max_train_examples=40, max_eval_examples=16,
                  overrides=settings)
    out = tmp_path / "qa"
    general_dir = run_general("qa", data_dir, out, **common)
    assert (general_dir / "general_key.json").is_file() and (general_dir / "model.safetensors").is_file()
    student_dir = run_task("qa", data_dir, out, init="general", **common)
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert report["teacher"]["fine_tuned"] is True and report["teacher"]["cached"] is False
    assert report["general"]["cached"] is True and report["student"]["init"]["kind"] == "general"
    assert set(report["student"]["metrics"]) == {"exact_match", "f1"}
    assert type(load_student(student_dir)).__name__ == "BertForQuestionAnswering"
    teacher_stamp = (out / "teacher" / "model.safetensors").stat().st_mtime_ns
    # a different run whose teacher limit picks the same 40 examples: the teacher is reused
    again = run_task("qa", data_dir, out, init="random", **{**common, "overrides": {**settings, "teacher_max_train_examples": 40}})
    report = json.loads((again / REPORT_FILE).read_text())
    assert report["teacher"]["cached"] is True
    assert (out / "teacher" / "model.safetensors").stat().st_mtime_ns == teacher_stamp


def test_two_process_accelerate_launch(tiny_spam_dir, data_dir, tmp_path):
    out = tmp_path / "ddp"
    # accelerate 1.x runs `--cpu --num_processes 2` as ONE process unless MPI is set up; `--multi_gpu` starts two
    # torchrun workers, and make_accelerator() puts them on CPU/gloo when there is no GPU.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "distill", "task", "--task", "spam",
               "--data-dir", str(data_dir), "--out", str(out), "--teacher", str(tiny_spam_dir), "--init", "random",
               "--student", "1x32x4x64", "--max-train-examples", "64", "--max-eval-examples", "40",
               "--set", "max_seq_length=32", "--set", "batch_size=8", "--set", "intermediate_epochs=1", "--set", "prediction_epochs=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "student" / REPORT_FILE).read_text())
    assert report["processes"] == 2
    # 64 examples, 2 processes x batch 8 -> 4 steps per process per epoch
    assert report["phases"]["intermediate"]["steps"] == 4
    assert report["data"]["eval_examples"] == 40
    assert load_student(out / "student") is not None


def test_epoch_sampler_groups_lengths_and_depends_only_on_seed_and_epoch():
    from distill.trainer import EpochSampler

    lengths = [(i * 37) % 50 + 1 for i in range(203)]
    sampler = EpochSampler(lengths, batch_size=8, seed=3, chunk_batches=5)
    order = list(sampler)
    assert sorted(order) == list(range(203))
    batches = [order[i:i + 8] for i in range(0, len(order), 8)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10                                  # random batches of these lengths spread about 40
    sampler.set_epoch(1)
    other = list(sampler)
    assert other != order
    assert list(EpochSampler(lengths, 8, seed=3, chunk_batches=5).__iter__()) == order


def test_frozen_teacher_pca_word_table_survives_every_phase(tiny_spam_dir, data_dir, tmp_path):
    """With teacher-pca and a frozen word table, the student ships the teacher's table projected, untouched by training."""
    from transformers import BertModel

    from distill.embedding_init import principal_basis

    overrides = dict(FAST, general_epochs=1, general_max_texts=64, general_embedding_init="teacher-pca",
                     student_freeze_word_embeddings=True)
    student_dir = _spam(tiny_spam_dir, data_dir, tmp_path / "out", init="general", overrides=overrides)
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert report["phases"]["intermediate"]["last_loss"] < report["phases"]["intermediate"]["first_loss"]
    teacher_table = BertModel.from_pretrained(tiny_spam_dir).embeddings.word_embeddings.weight.detach()
    expected = teacher_table @ principal_basis(teacher_table, TINY_STUDENT["hidden"])
    trained = load_file(str(student_dir / "model.safetensors"))
    assert torch.allclose(trained["bert.embeddings.word_embeddings.weight"], expected, atol=1e-6)
    # the rest of the encoder did train
    general = load_file(str(tmp_path / "out" / "general" / "model.safetensors"))
    assert not torch.equal(trained["bert.encoder.layer.0.attention.self.query.weight"], general["encoder.layer.0.attention.self.query.weight"])


def test_teacher_layers_start_is_the_teacher_until_it_trains(tiny_spam_dir, data_dir, tmp_path):
    # a student as deep and wide as the tiny teacher, started from its layers, with learning rates 0, scores exactly
    # as the teacher; its intermediate loss (W_h starts as the identity) is only the student's dropout noise
    same, frozen = {"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64}, dict(FAST, intermediate_lr=0.0, prediction_lr=0.0)
    report = json.loads((_spam(tiny_spam_dir, data_dir, tmp_path / "copy", student=same, init="teacher-layers",
                               overrides=frozen) / REPORT_FILE).read_text())
    assert report["student"]["init"]["kind"] == "teacher-layers" and report["student"]["init"]["teacher_layers"] == [1, 2]
    assert report["student"]["metrics"] == report["teacher"]["metrics"]
    random_start = json.loads((_spam(tiny_spam_dir, data_dir, tmp_path / "random", student=same, overrides=frozen)
                               / REPORT_FILE).read_text())
    assert report["phases"]["intermediate"]["first_loss"] < random_start["phases"]["intermediate"]["first_loss"] / 4
    # a shallower student takes the mapped layer and the teacher's activation, then trains away from the copy
    relu_teacher = make_tiny_bert(tmp_path / "relu_teacher", labels=("ham", "spam"), hidden_act="relu")
    one = _spam(relu_teacher, data_dir, tmp_path / "one", init="teacher-layers")
    assert json.loads((one / REPORT_FILE).read_text())["student"]["init"]["teacher_layers"] == [2]
    assert load_student(one).config.hidden_act == "relu"
    teacher, trained = load_file(str(relu_teacher / "model.safetensors")), load_file(str(one / "model.safetensors"))
    name = "bert.encoder.layer.{}.attention.self.query.weight"
    assert trained[name.format(0)].shape == teacher[name.format(1)].shape
    assert 0 < (trained[name.format(0)] - teacher[name.format(1)]).abs().max() < 0.1
    # a narrower student is cut from the teacher's layers; its W_h starts by putting each kept dimension back in place
    narrow_shape = {"layers": 1, "hidden": 16, "heads": 4, "intermediate": 48}
    narrow = json.loads((_spam(tiny_spam_dir, data_dir, tmp_path / "narrow", student=narrow_shape, init="teacher-layers",
                               overrides=frozen) / REPORT_FILE).read_text())
    assert narrow["student"]["init"]["narrowed_from"] == {"hidden": 32, "intermediate": 64}
    assert narrow["student"]["init"]["probe_batches"] >= 1
    narrow_random = json.loads((_spam(tiny_spam_dir, data_dir, tmp_path / "narrow_random", student=narrow_shape,
                                      overrides=frozen) / REPORT_FILE).read_text())
    assert narrow["phases"]["intermediate"]["first_loss"] < narrow_random["phases"]["intermediate"]["first_loss"] / 2
    for student, match in (({"layers": 1, "hidden": 64, "heads": 4, "intermediate": 64}, "at most as wide as the teacher"),
                           ({"layers": 3, "hidden": 32, "heads": 4, "intermediate": 64}, "at most as many layers")):
        with pytest.raises(UserError, match=match):
            _spam(tiny_spam_dir, data_dir, tmp_path / "bad", student=student, init="teacher-layers")
        assert not (tmp_path / "bad").exists()


def test_medium_qa_starts_from_the_teacher_layers_unless_the_student_cannot_take_them(tiny_qa_dir, data_dir, tmp_path, capsys):
    """With no --init, medium QA cuts the student from the teacher (general distillation kept only 22% of its F1);
    a student wider than the teacher falls back to general distillation and says so."""
    small = dict(max_seq_length=96, doc_stride=32, max_query_length=24, batch_size=16, general_max_texts=40,
                 intermediate_epochs=1, prediction_epochs=1)
    common = dict(teacher=str(tiny_qa_dir), preset="medium", max_train_examples=40, max_eval_examples=16)
    report = json.loads((run_task("qa", data_dir, tmp_path / "cut", student=TINY_STUDENT, overrides=small, **common)
                         / REPORT_FILE).read_text())
    assert report["student"]["init"]["kind"] == "teacher-layers" and report["general"] is None
    assert report["settings"]["intermediate_lr"] == 2e-4 and report["settings"]["prediction_lr"] == 1e-4
    wide = {"layers": 1, "hidden": 64, "heads": 4, "intermediate": 64}
    fallback = dict(small, general_embedding_init="random", student_freeze_word_embeddings=False)
    report = json.loads((run_task("qa", data_dir, tmp_path / "wide", student=wide, overrides=fallback, **common)
                         / REPORT_FILE).read_text())
    assert report["student"]["init"]["kind"] == "general" and report["general"] is not None
    assert "starting it from general distillation instead" in capsys.readouterr().out


def test_ready_teacher_is_used_as_given_and_quick_starts_from_its_layers(tiny_spam_dir, tiny_base_dir, data_dir, tmp_path, capsys):
    """A teacher with the task's head and labels is not fine-tuned: the report says it was given and carries its
    measured metric, and quick (no --init) starts the student from its layers. A base encoder is fine-tuned first."""
    student_dir = _spam(tiny_spam_dir, data_dir, tmp_path / "ready", init=None)
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert report["teacher"]["given"] is True and report["teacher"]["fine_tuned"] is False
    assert report["teacher"]["source"] == str(tiny_spam_dir) and report["teacher"]["architecture"] == "BertForSequenceClassification"
    assert 0 < report["teacher"]["metrics"]["accuracy"] <= 100
    assert report["student"]["init"]["kind"] == "teacher-layers" and report["general"] is None
    # quick's recipe for that start: the word table on the 4-bit grid, so int8-words4 can ship it exactly
    assert report["settings"]["student_word_bits"] == 4 and report["student"]["init"]["word_table"] == "4-bit grid, fixed"
    from distill.word_grid import on_grid

    assert on_grid(load_file(str(student_dir / "model.safetensors"))["bert.embeddings.word_embeddings.weight"])
    assert not (tmp_path / "ready" / "teacher").exists()  # nothing was fine-tuned or cached
    assert "used as given, not fine-tuned" in capsys.readouterr().out
    base = json.loads((_spam(tiny_base_dir, data_dir, tmp_path / "base", init="random",
                             overrides=dict(FAST, teacher_epochs=1)) / REPORT_FILE).read_text())
    assert base["teacher"].get("given") is None and base["teacher"]["fine_tuned"] is True
    assert (tmp_path / "base" / "teacher" / "teacher_key.json").is_file()


def test_a_distilbert_teacher_with_the_task_head_distils_a_bert_student(data_dir, tmp_path):
    """DistilBERT (no token type embeddings, q_lin/k_lin attention) as a given teacher: its attention scores and hidden
    states drive the intermediate loss, its logits the prediction layer; the student is a BERT that exports as usual."""
    from tests.tiny_models import make_tiny_distilbert

    teacher = make_tiny_distilbert(tmp_path / "distilbert_spam", labels=("ham", "spam"), heads=4, seed=5)
    student_dir = _spam(teacher, data_dir, tmp_path / "out")
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert report["teacher"]["fine_tuned"] is False and report["teacher"]["architecture"] == "DistilBertForSequenceClassification"
    phase = report["phases"]["intermediate"]
    assert phase["last_loss"] < phase["first_loss"] and report["layer_mapping"] == [0, 2]
    model = load_student(student_dir)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.id2label == {0: "ham", 1: "spam"}


def test_a_distilbert_encoder_gets_its_head_fine_tuned_and_teaches_general_distillation(data_dir, tmp_path):
    from tests.tiny_models import make_tiny_distilbert

    teacher = make_tiny_distilbert(tmp_path / "distilbert_base", head="base", heads=4, seed=6)
    student_dir = _spam(teacher, data_dir, tmp_path / "out", init="general",
                        overrides=dict(FAST, general_epochs=1, general_embedding_init="teacher-pca", teacher_epochs=1))
    report = json.loads((student_dir / REPORT_FILE).read_text())
    assert report["teacher"]["fine_tuned"] is True and report["student"]["init"]["kind"] == "general"
    assert (tmp_path / "out" / "teacher" / "config.json").is_file()
    assert json.loads((tmp_path / "out" / "teacher" / "config.json").read_text())["architectures"] == ["DistilBertForSequenceClassification"]


def test_a_distilbert_teacher_cannot_seed_the_student_from_its_layers(data_dir, tmp_path):
    from tests.tiny_models import make_tiny_distilbert

    teacher = make_tiny_distilbert(tmp_path / "distilbert_spam", labels=("ham", "spam"), heads=4, seed=5)
    with pytest.raises(UserError, match=r"^--init teacher-layers copies BERT layers into the BERT student, and the teacher is a "
                                        r"'distilbert' model; start the student with --init general$"):
        _spam(teacher, data_dir, tmp_path / "bad", init="teacher-layers")
    assert not (tmp_path / "bad").exists()
