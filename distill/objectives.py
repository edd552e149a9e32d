"""What each training phase minimises, as modules whose forward(**batch) returns the loss.

Wrapping the trained weights (student + W_h) and the loss in one module lets Accelerate/DDP prepare,
synchronise and checkpoint exactly what is trained. The frozen teacher is held outside the module's
parameters so it is neither checkpointed nor synchronised.
"""
from __future__ import annotations

import torch
from torch import nn

from distill.attention_scores import encoder_of, forward_inputs, forward_with_internals
from distill.losses import attention_loss, hidden_loss, layer_mapping, prediction_loss

TARGET_KEYS = ("labels", "start_positions", "end_positions")
# the teacher's logits when cached in the features (distill/soft_targets.py)
CLASSIFICATION_SOFT_TARGETS = ("teacher_logits",)
QA_SOFT_TARGETS = ("teacher_start_logits", "teacher_end_logits")
SOFT_TARGETS = CLASSIFICATION_SOFT_TARGETS + QA_SOFT_TARGETS


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in TARGET_KEYS + SOFT_TARGETS}


def task_logits(outputs) -> tuple[torch.Tensor, ...]:
    """(logits,) for a classifier, (start_logits, end_logits) for QA."""
    if getattr(outputs, "start_logits", None) is not None:
        return outputs.start_logits, outputs.end_logits
    return (outputs.logits,)


class _WithFrozenTeacher(nn.Module):
    def __init__(self, teacher: nn.Module):
        super().__init__()
        teacher.eval().requires_grad_(False)
        object.__setattr__(self, "teacher", teacher)  # not a submodule: never trained, saved or synchronised


class SupervisedObjective(nn.Module):
    """Fine-tuning a teacher head: the model's own loss on gold labels / answer positions."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, **batch):
        return self.model(**forward_inputs(self.model, batch)).loss


class IntermediateObjective(_WithFrozenTeacher):
    """TinyBERT intermediate-layer loss: attention-score MSE + hidden-state MSE through W_h."""

    def __init__(self, student: nn.Module, teacher: nn.Module, hidden_dims: list[int] | None = None):
        super().__init__(teacher)
        self.student = student
        s_config, t_config = encoder_of(student).config, encoder_of(teacher).config
        self.mapping = layer_mapping(s_config.num_hidden_layers, t_config.num_hidden_layers)
        self.projection = nn.Linear(s_config.hidden_size, t_config.hidden_size)  # W_h, shared by all layers
        if hidden_dims is not None:  # a student cut from the teacher's layers: dimension i is teacher dimension hidden_dims[i]
            with torch.no_grad():
                self.projection.weight.zero_()
                self.projection.weight[hidden_dims, torch.arange(len(hidden_dims))] = 1.0
                self.projection.bias.zero_()

    def forward(self, **batch):
        inputs = model_inputs(batch)
        with torch.no_grad():
            _, teacher_hidden, teacher_scores = forward_with_internals(self.teacher, inputs, score_layers=self.mapping[1:])
        _, student_hidden, student_scores = forward_with_internals(self.student, inputs)
        return (attention_loss(student_scores, teacher_scores, self.mapping)
                + hidden_loss(student_hidden, teacher_hidden, self.mapping, self.projection))


class PredictionObjective(_WithFrozenTeacher):
    """TinyBERT prediction-layer loss: soft cross-entropy against the teacher's logits at a temperature.

    The teacher's logits come from the batch when cached there (distill/soft_targets.py), else from the teacher."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 1.0):
        super().__init__(teacher)
        self.student = student
        self.temperature = temperature

    def forward(self, **batch):
        inputs = model_inputs(batch)
        teacher_logits = tuple(batch[k] for k in SOFT_TARGETS if k in batch)
        if not teacher_logits:
            with torch.no_grad():
                teacher_logits = task_logits(self.teacher(**forward_inputs(self.teacher, inputs)))
        return prediction_loss(task_logits(self.student(**inputs)), teacher_logits, self.temperature)
