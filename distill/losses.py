"""TinyBERT distillation losses (Jiao et al. 2020, and the official TinyBERT code).

Intermediate layers: MSE between attention scores (pre-softmax, masked positions zeroed) and MSE between
hidden states through a learned projection W_h. Prediction layer: soft cross-entropy with a temperature.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mobile_app.runtime.errors import UserError

# The official code zeroes every score at or below this (masked positions carry about -1e4).
MASKED_SCORE_THRESHOLD = -1e2


def layer_mapping(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layer g(m) for student layers m = 0..M: g(m) = floor(m * N / M), so g(0) = 0 and g(M) = N.

    Index 0 is the embedding output; m >= 1 is the output (or attention) of transformer layer m, 1-based.
    When N is a multiple of M this is the paper's uniform g(m) = m * N / M. Otherwise floor is used, e.g.
    6 teacher / 4 student layers -> [0, 1, 3, 4, 6]: the map stays strictly increasing and ends on the last layer.
    """
    if student_layers < 1 or teacher_layers < 1:
        raise UserError(f"layer counts must be positive (student {student_layers}, teacher {teacher_layers})")
    if student_layers > teacher_layers:
        raise UserError(f"the student has {student_layers} layers but the teacher only {teacher_layers}; "
                        "pick a student with at most as many layers as the teacher")
    return [(m * teacher_layers) // student_layers for m in range(student_layers + 1)]


def attention_loss(student_scores: list[torch.Tensor], teacher_scores: list[torch.Tensor], mapping: list[int]) -> torch.Tensor:
    """Sum over student layers m of MSE(A_S^m, A_T^g(m)) on pre-softmax scores, masked scores replaced by 0.

    `student_scores[m-1]` / `teacher_scores[n-1]` are (batch, heads, seq, seq) scores of layer m / n.
    """
    total = student_scores[0].new_zeros(())
    for m, student in enumerate(student_scores, start=1):
        teacher = teacher_scores[mapping[m] - 1]
        if student.shape != teacher.shape:
            raise UserError(f"attention shapes differ (student {tuple(student.shape)}, teacher {tuple(teacher.shape)}); "
                            "the student needs as many attention heads as the teacher")
        student = student.masked_fill(student <= MASKED_SCORE_THRESHOLD, 0.0)
        teacher = teacher.masked_fill(teacher <= MASKED_SCORE_THRESHOLD, 0.0)
        total = total + F.mse_loss(student, teacher)
    return total


def hidden_loss(student_hidden: list[torch.Tensor], teacher_hidden: list[torch.Tensor], mapping: list[int],
                projection: nn.Module) -> torch.Tensor:
    """Sum over m = 0..M of MSE(H_S^m W_h, H_T^g(m)); index 0 is the embedding output of each model."""
    total = student_hidden[0].new_zeros(())
    for m, student in enumerate(student_hidden):
        total = total + F.mse_loss(projection(student), teacher_hidden[mapping[m]])
    return total


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over rows of -softmax(z_T / t) . log_softmax(z_S / t), as in the official code."""
    targets = F.softmax(teacher_logits / temperature, dim=-1)
    return (-targets * F.log_softmax(student_logits / temperature, dim=-1)).sum(dim=-1).mean()


def prediction_loss(student_logits: tuple[torch.Tensor, ...], teacher_logits: tuple[torch.Tensor, ...],
                    temperature: float = 1.0) -> torch.Tensor:
    """Soft cross-entropy of the task outputs: one logits tensor (classification) or the mean over start and end (QA)."""
    losses = [soft_cross_entropy(s, t, temperature) for s, t in zip(student_logits, teacher_logits, strict=True)]
    return sum(losses) / len(losses)
