"""The student's embeddings start as the teacher's, projected onto their principal directions."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from distill.embedding_init import principal_basis, project_teacher_embeddings
from mobile_app.runtime.errors import UserError


def _bert(hidden: int, vocab: int = 50, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(BertConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=20, type_vocab_size=2))


def test_basis_is_orthonormal_and_keeps_the_most_variance():
    torch.manual_seed(1)
    # rows vary mostly along two known directions, plus a little noise
    directions = torch.linalg.qr(torch.randn(6, 2))[0]
    table = torch.randn(200, 2) * torch.tensor([5.0, 3.0]) @ directions.T + 0.01 * torch.randn(200, 6)
    basis = principal_basis(table, 2)
    assert torch.allclose(basis.T @ basis, torch.eye(2), atol=1e-5)
    # the basis spans the two directions: projecting them onto it loses (almost) nothing
    assert torch.allclose(basis @ basis.T @ directions, directions, atol=1e-2)
    with pytest.raises(UserError, match="wider"):
        principal_basis(table, 7)


def test_projected_tables_reconstruct_the_teacher_through_w_h():
    teacher, student = _bert(hidden=8), _bert(hidden=8, seed=3)
    projection = torch.nn.Linear(8, 8)
    info = project_teacher_embeddings(student, teacher, projection)
    assert info["basis_width"] == 8
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        source = getattr(teacher.embeddings, name).weight
        rebuilt = projection(getattr(student.embeddings, name).weight)  # full width: W_h undoes the rotation exactly
        assert torch.allclose(rebuilt, source, atol=1e-5), name


def test_a_narrower_student_keeps_neighbours_and_refuses_another_vocabulary():
    teacher, student = _bert(hidden=16), _bert(hidden=8, seed=3)
    before = student.embeddings.word_embeddings.weight.clone()
    project_teacher_embeddings(student, teacher)
    after = student.embeddings.word_embeddings.weight
    assert not torch.equal(before, after)
    teacher_table = teacher.embeddings.word_embeddings.weight.detach()
    t_dist, s_dist = torch.cdist(teacher_table, teacher_table), torch.cdist(after.detach(), after.detach())
    # distances shrink (a projection) but stay strongly correlated with the teacher's
    assert (s_dist <= t_dist + 1e-3).all()
    corr = torch.corrcoef(torch.stack([t_dist.flatten(), s_dist.flatten()]))[0, 1]
    assert corr > 0.7
    with pytest.raises(UserError, match="vocabulary"):
        project_teacher_embeddings(_bert(hidden=8, vocab=40), teacher)
