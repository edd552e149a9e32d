"""The teacher's logits cached for prediction-layer distillation: the same targets as running the teacher."""
from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification, BertTokenizerFast

from distill.data import read_squad
from distill.features import PAD_LOGIT, classification_features, collate, qa_train_features
from distill.objectives import PredictionObjective, task_logits
from distill.soft_targets import with_teacher_logits
from tests.tiny_models import make_tiny_bert

TEXTS = ["a gripping , funny film .", "dull", "", "🙂 the plot of this movie never quite comes together , sadly , despite its cast ."]


def _model(cls, folder):
    return cls.from_pretrained(folder, use_safetensors=True).eval()


def test_cached_classifier_logits_give_the_same_loss_as_the_live_teacher(tiny_classifier_dir, tmp_path):
    teacher = _model(AutoModelForSequenceClassification, tiny_classifier_dir)
    student = _model(AutoModelForSequenceClassification, make_tiny_bert(tmp_path / "student", layers=1, seed=3))
    tokenizer = BertTokenizerFast.from_pretrained(tiny_classifier_dir)
    features = classification_features(tokenizer, [{"text": t, "label": i % 2} for i, t in enumerate(TEXTS)], 32)
    cached = with_teacher_logits(teacher, features, batch_size=3, pad_id=0, device="cpu", show=False)

    assert [len(f["input_ids"]) for f in cached] == [len(f["input_ids"]) for f in features]  # inputs untouched
    objective = PredictionObjective(student, teacher, temperature=2.0)
    live, from_cache = objective(**collate(features)), objective(**collate(cached))
    assert torch.allclose(live, from_cache, atol=1e-6)
    # a wrong target would move the loss: the cache is what the loss reads
    shifted = [{**f, "teacher_logits": f["teacher_logits"] + np.float32([4, -4])} for f in cached]
    assert not torch.allclose(objective(**collate(shifted)), from_cache, atol=1e-4)


def test_cached_qa_logits_are_per_token_rows_of_each_windows_own_length(tiny_qa_dir, data_dir):
    teacher = _model(AutoModelForQuestionAnswering, tiny_qa_dir)
    tokenizer = BertTokenizerFast.from_pretrained(tiny_qa_dir)
    examples = read_squad(data_dir / "squad_v1" / "dev-v1.1.json")[:6]
    features = qa_train_features(tokenizer, examples, max_length=96, doc_stride=32, max_query_length=24)
    assert len({len(f["input_ids"]) for f in features}) > 1, "the test needs windows of different lengths"
    cached = with_teacher_logits(teacher, features, batch_size=4, pad_id=tokenizer.pad_token_id, device="cpu", show=False)

    for feature in cached[:5]:
        with torch.no_grad():
            alone = task_logits(teacher(**{k: torch.tensor([feature[k]]) for k in ("input_ids", "token_type_ids", "attention_mask")}))
        for key, logits in zip(("teacher_start_logits", "teacher_end_logits"), alone):
            assert feature[key].dtype == np.float32 and len(feature[key]) == len(feature["input_ids"])
            np.testing.assert_allclose(feature[key], logits[0].numpy(), atol=1e-5)
    batch = collate(cached[:4], pad_id=tokenizer.pad_token_id)
    shortest = min(range(4), key=lambda i: len(cached[i]["input_ids"]))
    length = len(cached[shortest]["input_ids"])
    assert batch["teacher_start_logits"].shape == batch["input_ids"].shape
    assert torch.all(batch["teacher_start_logits"][shortest, length:] == PAD_LOGIT)
    # a padded position gets no probability, so the student is not taught to put answers in padding
    assert torch.softmax(batch["teacher_end_logits"][shortest], -1)[length:].sum() < 1e-30
