"""Presets per task, overrides, and settings that are refused before any work starts."""
from __future__ import annotations

import pytest

from mobile_app.runtime.errors import UserError
from distill.settings import settings_for
from distill.tasks import get_task


def test_full_follows_the_paper_and_quick_is_smaller():
    for name in ("sentiment", "spam", "qa"):
        task = get_task(name)
        full, quick = settings_for(task, "full"), settings_for(task, "quick")
        assert (full.intermediate_epochs, full.intermediate_lr, full.prediction_epochs, full.prediction_lr) == (20, 5e-5, 3, 3e-5)
        assert full.max_train_examples is None and full.general_embedding_init == "random"
        assert quick.max_train_examples and quick.intermediate_epochs < full.intermediate_epochs
    assert settings_for(get_task("qa"), "full").max_seq_length == get_task("qa").max_seq_length


def test_overrides_apply_last_and_bad_values_are_refused():
    task = get_task("spam")
    assert settings_for(task, "quick", {"prediction_epochs": 7}).prediction_epochs == 7
    with pytest.raises(UserError, match="unknown setting"):
        settings_for(task, "quick", {"epochs": 3})
    with pytest.raises(UserError, match="unknown preset"):
        settings_for(task, "fast")
    with pytest.raises(UserError, match="general_embedding_init"):
        settings_for(task, "quick", {"general_embedding_init": "zeros"})
    with pytest.raises(UserError, match="doc_stride"):
        settings_for(get_task("qa"), "quick", {"max_seq_length": 64})


def test_quick_spam_trains_shorter_and_every_quick_task_starts_like_the_paper():
    for name in ("sentiment", "spam", "qa"):
        assert settings_for(get_task(name), "quick").general_embedding_init == "random"
    assert settings_for(get_task("qa"), "quick", {"general_embedding_init": "teacher-pca"}).general_embedding_init == "teacher-pca"
    spam, sentiment = settings_for(get_task("spam"), "quick"), settings_for(get_task("sentiment"), "quick")
    assert spam.intermediate_epochs < sentiment.intermediate_epochs and spam.max_seq_length == sentiment.max_seq_length


def test_medium_qa_trains_a_real_teacher_on_every_train_question_then_a_frozen_table_student():
    qa = get_task("qa")
    quick, medium = settings_for(qa, "quick"), settings_for(qa, "medium")
    assert medium.max_train_examples is None and medium.teacher_max_train_examples is None  # the whole train split
    assert medium.max_eval_examples is None  # every eval question: 150 are too few to tell students apart
    assert medium.teacher_epochs > quick.teacher_epochs and medium.max_seq_length == quick.max_seq_length
    assert medium.general_embedding_init == "teacher-pca" and medium.student_freeze_word_embeddings


def test_medium_keeps_quicks_teacher_and_spends_more_on_the_student():
    for name in ("sentiment", "spam"):
        task = get_task(name)
        quick, medium = settings_for(task, "quick"), settings_for(task, "medium")
        # the teacher sees what quick's teacher sees
        assert (medium.teacher_max_train_examples or medium.max_train_examples) == quick.max_train_examples
        assert (medium.teacher_epochs, medium.teacher_lr, medium.max_seq_length) == (quick.teacher_epochs, quick.teacher_lr, quick.max_seq_length)
        # the student gets a larger transfer set and general corpus, and the teacher's word table, frozen
        assert medium.max_train_examples > quick.max_train_examples and medium.general_max_texts > quick.general_max_texts
        assert medium.general_embedding_init == "teacher-pca" and medium.student_freeze_word_embeddings
        assert not quick.student_freeze_word_embeddings


def test_quick_with_a_ready_teacher_spends_its_budget_on_transfer_data():
    """The measured quick recipe for a student started from a ready teacher's layers (benchmarks/RESULTS.md)."""
    sentiment, spam, qa = (settings_for(get_task(name), "quick", ready_teacher_start=True) for name in ("sentiment", "spam", "qa"))
    plain = settings_for(get_task("sentiment"), "quick")
    assert all(s.student_word_bits == 4 for s in (sentiment, spam, qa)) and plain.student_word_bits is None
    assert all(s.train_precision == "auto" for s in (sentiment, spam, qa)) and plain.train_precision == "fp32"
    assert (sentiment.max_train_examples, sentiment.intermediate_epochs, sentiment.prediction_epochs) == (20000, 1, 1)
    assert spam.max_train_examples is None and (spam.intermediate_epochs, spam.prediction_epochs) == (1, 2)  # the whole train split
    assert (qa.max_train_examples, qa.intermediate_epochs, qa.prediction_epochs, qa.max_eval_examples) == (2800, 0, 2, None)
    assert qa.prediction_lr == 8e-4 > settings_for(get_task("qa"), "quick").prediction_lr
    # what the caller sets still wins
    assert settings_for(get_task("qa"), "quick", {"intermediate_epochs": 1}, ready_teacher_start=True).intermediate_epochs == 1
    assert settings_for(get_task("sentiment"), "medium", ready_teacher_start=True) == settings_for(get_task("sentiment"), "medium")


def test_train_precision_is_one_of_the_known_ones():
    assert settings_for(get_task("spam"), "quick", {"train_precision": "bf16"}).train_precision == "bf16"
    with pytest.raises(UserError, match="train_precision must be one of fp32, bf16, auto, got 'fp16'"):
        settings_for(get_task("spam"), "quick", {"train_precision": "fp16"})
