"""Start a student's embeddings from the teacher's, compressed to the student's width by PCA.

TinyBERT learns the student's embedding tables from scratch during general distillation on a large corpus.
With a tiny corpus most rows of the word table (two thirds of a 4-layer 312-wide student) are never seen.
Projecting the teacher's tables onto the top principal directions of its word embeddings keeps every row's
geometry from the start; the hidden-state projection W_h starts as the inverse map (the same basis), so the
layer-0 loss begins near the PCA reconstruction error. `general_embedding_init=teacher-pca`; the medium preset
uses it with the word table kept fixed (`student_freeze_word_embeddings`), so words the small corpus never shows
keep the teacher's geometry and each step skips the table's gradient. Quick keeps the paper's random start (no
gain at its scale: docs/sentiment-ladder.md, docs/qa-student-start.md).
"""
from __future__ import annotations

import torch
from torch import nn

from mobile_app.runtime.errors import UserError
from distill.attention_scores import encoder_of


def principal_basis(table: torch.Tensor, width: int) -> torch.Tensor:
    """(teacher_width, width) orthonormal columns: the top `width` principal directions of the table's rows."""
    if width > table.shape[1]:
        raise UserError(f"the student is wider ({width}) than the teacher ({table.shape[1]}); "
                        "teacher-pca embeddings need a student at most as wide as the teacher (--set general_embedding_init=random)")
    centred = table.double() - table.double().mean(dim=0, keepdim=True)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)
    return right[:width].T.to(table.dtype)


@torch.no_grad()
def project_teacher_embeddings(student: nn.Module, teacher: nn.Module, projection: nn.Linear | None = None) -> dict:
    """Copy the teacher's word, position and token-type tables into the student through one PCA basis.

    When `projection` (W_h: student width -> teacher width) is given it starts as the basis, mapping back.
    """
    s_emb, t_emb = encoder_of(student).embeddings, encoder_of(teacher).embeddings
    basis = principal_basis(t_emb.word_embeddings.weight, s_emb.word_embeddings.weight.shape[1])
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        if not hasattr(t_emb, name):  # a DistilBERT teacher has no token type table: the student keeps its own start
            continue
        source, target = getattr(t_emb, name).weight, getattr(s_emb, name).weight
        if source.shape[0] != target.shape[0]:
            raise UserError(f"student and teacher {name} have {target.shape[0]} and {source.shape[0]} rows; they must share the vocabulary")
        target.copy_(source @ basis)
    if projection is not None:
        projection.weight.copy_(basis)
        projection.bias.zero_()
    return {"embeddings": "teacher PCA", "basis_width": basis.shape[1]}
